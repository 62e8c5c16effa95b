"""Credit methods: ACPO probes (KV cache, packed) vs naive forwards, HAPO by hand, MC values, registry."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import acpo
from acpo.credit import answer_values, answer_values_naive, get_credit_method, hapo_token_advantages, mc_step_credits
from acpo.credit.base import CreditBatch
from acpo.credit.entropy_mask import top_entropy_mask
from acpo.credit.hapo import hapo_quadrants
from acpo.credit.info_gain import ProbeRow, answer_values_packed
from acpo.segment import Step
from acpo.tokens import encode_probe, pad_batch

COMPLETIONS = [
    "3*4=12\n7-12=-5\n-5+2=-3\n#### -3",
    "Step 1: add. Step 2: check.\nThe answer is 42",
    "first we compute the sum\nthen the product\n\nso the answer is 7.",
]


def rows_for(tok, probe="\nThe answer is ", answer="-3"):
    rows = []
    for text in COMPLETIONS:
        prompt = tok("Q: 7-3*4+2=?\n")["input_ids"]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ends = sorted({*range(3, len(ids), 5), len(ids)})  # steps of 5 tokens, last one ragged
        probe_ids, n_answer = encode_probe(tok, probe, answer)
        rows.append(ProbeRow(prompt, ids, ends, probe_ids, n_answer))
    return rows


@pytest.mark.parametrize("values", [answer_values, answer_values_packed], ids=["kv_cache", "packed"])
def test_probes_equal_naive_forwards(model_and_tok, values):
    model, tok = model_and_tok
    rows = rows_for(tok)
    got = values(model, rows, batch_size=2)  # 2 rows per forward: padding inside a micro-batch
    naive = answer_values_naive(model, rows)
    for p, n, r in zip(got, naive, rows):
        assert p.shape == (len(r.step_ends) + 1,)
        assert torch.allclose(p, n, atol=1e-4), (p - n).abs().max()


def naive_answer_logprob(model, ids: list[int], n_answer: int) -> float:
    """log pi(last n_answer ids | the ids before), float64 log-softmax of one plain forward."""
    logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits[-n_answer - 1 : -1], dim=-1)
    return float(logp.gather(-1, torch.tensor(ids[-n_answer:])[:, None]).sum())


@pytest.mark.parametrize("n_steps", [1, 32])
def test_acpo_credit_from_kv_cache_equals_naive_forwards_in_a_padded_batch(model_and_tok, n_steps):
    """Prompts of different lengths (left-padded), completions of different lengths (right-padded)."""
    model, tok = model_and_tok
    prompts = [tok(q)["input_ids"] for q in ("Q: 7-3*4+2=?\n", "Q: 1+1=?\n", "Q: what is 6*7? think.\n")]
    completions = [tok(t * 3, add_special_tokens=False)["input_ids"] for t in COMPLETIONS]
    completions[1] = completions[1][: len(completions[1]) - 5]
    assert all(len(c) >= n_steps for c in completions)
    steps = []
    for c in completions:  # n_steps spans of (nearly) equal length
        ends = [round(len(c) * (k + 1) / n_steps) for k in range(n_steps)]
        steps.append([Step(k, s, e, 0, 0, "") for k, (s, e) in enumerate(zip([0, *ends[:-1]], ends))])
    answers = ["-3", "42", "7"]
    batch = CreditBatch(*pad_batch(prompts, completions, tok.pad_token_id), logprobs=None, entropy=None, steps=steps,
                        advantages=torch.zeros(3), group_ids=torch.zeros(3, dtype=torch.long), answers=answers,
                        model=model, tokenizer=tok)
    result = get_credit_method("info_gain", batch_size=2).credits(batch)
    for i in range(3):
        probe, n_answer = encode_probe(tok, "\nThe answer is ", answers[i])
        v = torch.tensor([naive_answer_logprob(model, prompts[i] + completions[i][: s.token_end] + probe, n_answer)
                          for s in [Step(0, 0, 0, 0, 0, ""), *steps[i]]], dtype=torch.float64)
        assert result.step_credits[i].shape == (n_steps,)
        assert torch.allclose(result.extras["answer_logprob"][i].double(), v[1:], atol=1e-4)
        assert torch.allclose(result.step_credits[i].double(), v[1:] - v[:-1], atol=1e-4)


def test_acpo_contrast_and_length_readings_equal_naive_forwards(model_and_tok):
    """contrast: credit toward the reference minus credit toward the completion's own (different) answer;
    a completion whose own answer is the reference keeps the plain reading; length: per token of the step."""
    model, tok = model_and_tok
    prompt = tok("Q: 7-3*4+2=?\n")["input_ids"]
    texts = ["3*4=12\n7-12=-5\n-5+2=-3\n#### -3", "3*4=12\n7-12=5\n5+2=7\n#### 7"]
    completions = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    steps = [[Step(k, s, e, 0, 0, "") for k, (s, e) in enumerate(zip([0, 4, 9], [4, 9, len(c)]))] for c in completions]
    batch = CreditBatch(*pad_batch([prompt, prompt], completions, tok.pad_token_id), logprobs=None, entropy=None,
                        steps=steps, advantages=torch.zeros(2), group_ids=torch.zeros(2, dtype=torch.long),
                        answers=["-3", "-3"], texts=texts, model=model, tokenizer=tok)

    def gains(i, answer):
        probe, n_answer = encode_probe(tok, "\nThe answer is ", answer)
        v = torch.tensor([naive_answer_logprob(model, prompt + completions[i][:end] + probe, n_answer)
                          for end in (0, 4, 9, len(completions[i]))], dtype=torch.float64)
        return v[1:] - v[:-1]

    contrast = get_credit_method("info_gain", target="contrast").credits(batch).step_credits
    assert torch.allclose(contrast[0].double(), gains(0, "-3"), atol=1e-4)  # own answer right: plain reading
    assert torch.allclose(contrast[1].double(), gains(1, "-3") - gains(1, "7"), atol=1e-4)
    per_token = get_credit_method("info_gain", length_normalise=True).credits(batch).step_credits
    lengths = torch.tensor([4, 5, len(completions[1]) - 9], dtype=torch.float64)
    assert torch.allclose(per_token[1].double(), gains(1, "-3") / lengths, atol=1e-4)
    with pytest.raises(ValueError, match="texts"):
        get_credit_method("info_gain", target="contrast").credits(dataclasses.replace(batch, texts=[]))


def test_kv_cache_probes_work_through_a_lora_adapter(char_tok):
    from peft import LoraConfig, get_peft_model

    from conftest import tiny_llama

    model = get_peft_model(tiny_llama(len(char_tok)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  init_lora_weights=False)).eval()
    rows = rows_for(char_tok)
    for p, n in zip(answer_values(model, rows), answer_values_naive(model, rows)):
        assert torch.allclose(p, n, atol=1e-4), (p - n).abs().max()


def test_acpo_credits_telescope_to_last_minus_first_value(model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, "Q: 7-3*4+2=?\n", COMPLETIONS[0], method="info_gain", segmentation="lines", answer="-3")
    v = trace.extras["answer_logprob"]  # v_1..v_K
    credit = trace.credits["info_gain"]
    v0 = v[0] - credit[0]
    assert torch.allclose(credit.sum(), v[-1] - v0, atol=1e-5)
    assert torch.allclose(credit[1:], v[1:] - v[:-1], atol=1e-6)


def test_hapo_matches_hand_computed_example():
    # one completion, entropies 1,2,3 -> z = -1, 0, 1 (sample std = 1); A = 0.4; bound = 0.2
    adv = hapo_token_advantages(torch.tensor([0.4]), torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3), alpha=0.5, phi=2)
    assert torch.allclose(adv, torch.tensor([[0.4 - 0.5 * 0.2, 0.4, 0.4 + 0.5 * 0.2]]), atol=1e-5)
    # negative advantage: the sign flips the reallocation, high entropy gets more blame
    adv = hapo_token_advantages(torch.tensor([-2.0]), torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3), alpha=0.2, phi=2)
    assert torch.allclose(adv, torch.tensor([[-2.0 + 0.2, -2.0, -2.0 - 0.2]]), atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=4),
    ent=st.lists(st.floats(0, 10, allow_nan=False), min_size=6, max_size=6),
    alpha=st.floats(0.01, 1.0),
    phi=st.floats(1.0, 4.0),
)
def test_hapo_never_flips_a_sign(a, ent, alpha, phi):
    adv = torch.tensor(a)
    entropy = torch.tensor(ent).repeat(len(a), 1)
    out = hapo_token_advantages(adv, entropy, torch.ones_like(entropy), alpha, phi)
    base = adv[:, None].expand_as(out)
    assert (out * base >= 0).all()
    assert (out.abs() >= (1 - alpha / phi) * base.abs() - 1e-5).all()


def test_hapo_quadrants_shares_sum_to_one():
    adv = torch.tensor([[1.0, 1.0, -2.0, -4.0]])
    ent = torch.tensor([[0.0, 5.0, 0.0, 5.0]])
    q = hapo_quadrants(adv, ent, torch.ones(1, 4))
    assert q == pytest.approx({"pos_high": 1 / 8, "pos_low": 1 / 8, "neg_high": 4 / 8, "neg_low": 2 / 8})


def test_mc_credits_from_continuation_values():
    # V0 = 0.5 (group mean), V1 = 1.0, V2 = 0.25, V3 = r = 0
    c = mc_step_credits(3, 0.5, 0.0, {1: [1.0, 1.0], 2: [0.0, 0.5]})
    assert c.tolist() == pytest.approx([0.5, -0.75, -0.25])
    # one sampled boundary (RRPO): the change before it spreads over steps 1..2
    c = mc_step_credits(4, 0.5, 1.0, {2: [0.0]})
    assert c.tolist() == pytest.approx([-0.25, -0.25, 0.5, 0.5])
    assert float(c.sum()) == pytest.approx(1.0 - 0.5)
    with pytest.raises(ValueError, match="outside 1..3"):
        mc_step_credits(4, 0.5, 1.0, {4: [1.0]})


def test_entropy_mask_keeps_top_fraction_of_batch():
    ent = torch.tensor([[5.0, 1.0, 2.0, 0.0], [4.0, 3.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])  # the padded 9.0 must not be picked
    keep = top_entropy_mask(ent, mask, rho=0.3)  # ceil(0.3 * 7) = 3 tokens: 9, 5, 4
    assert keep.tolist() == [[True, False, False, False], [True, False, True, False]]


def test_unknown_credit_method_lists_valid_names():
    with pytest.raises(ValueError, match="valid: entropy_mask, hapo, info_gain, mc_reset, mean_logprob, result_logprob, "
                                         "uniform, verified_steps"):
        get_credit_method("vineppo")


def test_old_credit_name_acpo_is_the_information_gain_and_warns_once():
    import acpo.credit.base as base

    base._warned.discard("acpo")
    with pytest.warns(DeprecationWarning, match="'acpo' is now called 'info_gain'"):
        method = get_credit_method("acpo", probe="#### ")
    assert type(method).__name__ == "InfoGainCredit" and method.name == "info_gain" and method.probe == "#### "
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second use says nothing
        get_credit_method("acpo")


def test_acpo_refuses_a_probe_with_no_text_before_the_answer(char_tok):
    from conftest import tiny_llama

    prompt, completion = char_tok("Q: 1+1=?\n")["input_ids"], char_tok("2", add_special_tokens=False)["input_ids"]
    batch = CreditBatch(*pad_batch([prompt], [completion], 0), logprobs=None, entropy=None,
                        steps=[[Step(0, 0, 1, 0, 1, "2")]], advantages=torch.zeros(1),
                        group_ids=torch.zeros(1, dtype=torch.long), answers=["2"],
                        model=tiny_llama(len(char_tok)), tokenizer=char_tok)
    with pytest.raises(ValueError, match="no token of its own before the answer"):
        get_credit_method("info_gain", probe="").credits(batch)


def test_explain_runs_the_probes_on_the_scoring_forwards_cache_and_equals_naive_forwards(model_and_tok, monkeypatch):
    """Prompts of different lengths (left padding in the shared cache); the cache is left as found."""
    from acpo.credit import info_gain
    from acpo.explain import explain_batch
    from acpo.tokens import encode_prompt

    model, tok = model_and_tok
    prompts = ["Q: 7-3*4+2=?\n", "Q: 1+1=?\n", "Q: what is 6*7? think.\n"]
    answers = ["-3", "42", "7"]
    caches = []
    real = info_gain.answer_values
    monkeypatch.setattr(info_gain, "answer_values", lambda *a, **k: caches.append(a[3]) or real(*a, **k))
    traces = explain_batch(model, tok, prompts, COMPLETIONS, method=["info_gain", "hapo"], segmentation="lines",
                           answers=answers, probe="\nThe answer is ", batch_size=8)
    assert caches and caches[0] is not None  # the scoring forward's cache reached the probes
    for prompt, answer, trace in zip(prompts, answers, traces):
        probe, n_answer = encode_probe(tok, "\nThe answer is ", answer)
        ids = encode_prompt(tok, prompt) + list(trace.token_ids)
        n_prompt = len(ids) - len(trace.token_ids)
        v = torch.tensor([naive_answer_logprob(model, ids[: n_prompt + end] + probe, n_answer)
                          for end in [0, *(s.token_end for s in trace.steps)]], dtype=torch.float64)
        assert torch.allclose(trace.extras["answer_logprob"].double(), v[1:], atol=1e-4)
        assert torch.allclose(trace.credits["info_gain"].double(), v[1:] - v[:-1], atol=1e-4)


WRONG = "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"


def test_mean_logprob_is_each_steps_mean_token_logprob(model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, "Q: 7-3*4+2=?\n", WRONG, method="mean_logprob", segmentation="lines")
    # by hand: log-softmax of one plain forward over prompt + completion, in float64
    prompt = tok("Q: 7-3*4+2=?\n")["input_ids"]
    ids = prompt + trace.token_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0][len(prompt) - 1 :]
    expected = [float(lp[s.token_start : s.token_end].mean()) for s in trace.steps]
    assert trace.credits["mean_logprob"].tolist() == pytest.approx(expected, abs=1e-4)
    assert trace.lowest_credit_step("mean_logprob") == min(range(len(expected)), key=expected.__getitem__)


def test_mc_reset_samples_every_boundary_and_matches_a_brute_force_computation(char_tok):
    from acpo.rollout import HFEngine
    from acpo.tasks.base import answers_match, extract_final_answer

    from conftest import tiny_llama

    model, tok = tiny_llama(len(char_tok), seed=3), char_tok
    prompt, answer, m, seed = "Q: 7-3*4+2=?\n", "-3", 4, 11
    opts = {"samples": m, "temperature": 1.0, "batch_size": 64, "max_new_tokens": 12, "seed": seed}
    trace = acpo.explain(model, tok, prompt, WRONG, method="mc_reset", segmentation="lines", answer=answer,
                         reward=0.0, method_options={"mc_reset": opts})

    # brute force: every prefix by hand, one generate call with the same seed, rewards scored by hand
    steps = trace.steps
    p_ids = tok(prompt)["input_ids"]
    prefixes = [p_ids + trace.token_ids[: (steps[k - 1].token_end if k else 0)] for k in range(len(steps))]
    heads = [WRONG[: steps[k - 1].char_end] if k else "" for k in range(len(steps))]
    torch.manual_seed(seed)
    samples = HFEngine(model, tok, 12, 1.0, 64).generate(prefixes, n=m)
    values = []
    for k in range(len(steps)):
        texts = [heads[k] + s.text for s in samples[k * m : (k + 1) * m]]
        values.append(sum(float(answers_match(extract_final_answer(t), answer)) for t in texts) / m)
    values.append(0.0)  # V_K: the completion's own reward
    expected = [values[k + 1] - values[k] for k in range(len(steps))]
    assert trace.credits["mc_reset"].tolist() == pytest.approx(expected, abs=1e-6)
    assert trace.seconds["mc_reset"] > 0


def test_mc_reset_counts_its_tokens_and_leaves_the_callers_random_stream_alone(char_tok, monkeypatch):
    import importlib

    from conftest import tiny_llama

    explain_module = importlib.import_module("acpo.explain")  # the module (acpo.explain is also its function)
    made, real = [], explain_module.make_credit
    monkeypatch.setattr(explain_module, "make_credit", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    model, tok = tiny_llama(len(char_tok), seed=3), char_tok
    torch.manual_seed(123)
    expected_next = torch.rand(3)  # what the caller's stream gives next without the credit in between
    torch.manual_seed(123)
    trace = acpo.explain(model, tok, "Q: 7-3*4+2=?\n", WRONG, method="mc_reset", segmentation="lines", answer="-3",
                         reward=0.0, method_options={"mc_reset": {"samples": 2, "max_new_tokens": 6, "seed": 5}})
    assert torch.equal(torch.rand(3), expected_next)
    (credit,) = made
    # 4 boundaries (the prompt alone and after each of the first 3 lines) x 2 continuations of 1 to 6 tokens
    assert len(trace.steps) == 4 and 8 <= credit.sampled_tokens <= 4 * 2 * 6


def test_mc_reset_scores_prefix_plus_continuation_and_telescopes(char_tok):
    from conftest import tiny_llama

    model, tok = tiny_llama(len(char_tok), seed=3), char_tok
    right_step = "7-12=-5\n"
    completion = "3*4=12\n" + right_step + "#### -3"
    seen = []

    def score(i, text):  # 1 once the prefix holds the right middle step: V = 0, 0, 1 and r = 1
        seen.append(text)
        return float(text.startswith("3*4=12\n" + right_step))

    trace = acpo.explain(model, tok, "Q: 7-3*4+2=?\n", completion, method="mc_reset", segmentation="lines",
                         reward=1.0, method_options={"mc_reset": {"samples": 3, "max_new_tokens": 4, "score": score}})
    assert trace.credits["mc_reset"].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert len(seen) == 3 * 3  # K = 3 boundaries (the prompt alone, after step 0, after step 1), M = 3 each


def test_mc_reset_without_a_way_to_score_says_what_to_pass(model_and_tok):
    model, tok = model_and_tok
    with pytest.raises(ValueError, match="reference answer, or a scorer"):
        acpo.explain(model, tok, "Q: 1+1=?\n", "1+1=2\n#### 2", method="mc_reset")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        get_credit_method("mc_reset", temperature=0)


def test_mc_reset_progress_reports_and_can_cancel(char_tok):
    from acpo.credit.mc_reset import Cancelled
    from conftest import tiny_llama

    model, tok = tiny_llama(len(char_tok), seed=3), char_tok
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done > 0:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        acpo.explain(model, tok, "Q: 7-3*4+2=?\n", WRONG, method="mc_reset", segmentation="lines", answer="-3",
                     method_options={"mc_reset": {"samples": 2, "batch_size": 2, "max_new_tokens": 3,
                                                  "progress": progress}})
    # 4 boundaries x 2 samples; the first token of the first call reports its share (2 sequences x 1/3 of
    # their 3 tokens) and the raise stops the sampling there
    assert calls == [(0, 8), (pytest.approx(2 / 3), 8)]


def char_batch(tok, prompt: str, steps: list[str], logprobs: list[float]) -> CreditBatch:
    """A one-completion batch over given steps (character tokens), with hand-set token log-probs."""
    from acpo.segment import given_steps, join_steps
    from acpo.tokens import encode_with_offsets

    text, starts = join_steps(steps)
    ids, offsets = encode_with_offsets(tok, text)
    assert len(ids) == len(text) == len(logprobs)
    tensors = pad_batch([tok(prompt, add_special_tokens=False)["input_ids"]], [ids], tok.pad_token_id)
    return CreditBatch(*tensors, logprobs=torch.tensor([logprobs]), entropy=torch.zeros(1, len(ids)),
                       steps=[given_steps(text, offsets, starts)], advantages=torch.zeros(1),
                       group_ids=torch.zeros(1, dtype=torch.long), texts=[text], tokenizer=tok)


def test_result_logprob_is_the_mean_logprob_of_the_stated_results(char_tok):
    steps = ["3*4=12", "so 7-12=-5", "#### -5"]  # text "3*4=12\nso 7-12=-5\n#### -5"
    lps = [-0.1 * (j + 1) for j in range(len("\n".join(steps)))]  # token j has log-prob -0.1 (j + 1)
    batch = char_batch(char_tok, "Q: 7-3*4=?\n", steps, lps)
    credit = get_credit_method("result_logprob").credits(batch).step_credits[0]
    # step 0: "12" at characters 4, 5; step 1: "-5" at 15, 16; step 2 states no result: its mean (chars 18..24)
    expected = [(lps[4] + lps[5]) / 2, (lps[15] + lps[16]) / 2, sum(lps[18:25]) / 7]
    assert credit.tolist() == pytest.approx(expected)


def test_verified_steps_blames_a_false_equation_then_an_operand_from_nowhere():
    from acpo.credit.verified_steps import step_verdicts

    problem = "Natalia sold 48 clips in April and half as many in May. How many in all?"
    assert step_verdicts(problem, ["48/2 = 24 in May.", "48 + 24 = 73 in all.", "#### 73"]) == ["ok", "wrong", "ok"]
    # 17 is neither in the problem nor found earlier: copied wrong; 2 is a common constant, 24 was found
    assert step_verdicts(problem, ["48/2 = 24.", "17 + 24 = 41.", "41 * 2 = 82."]) == ["ok", "unsupported", "ok"]
    # a chain's running value is known to its next link
    assert step_verdicts(problem, ["48 / 2 = 24 + 48 = 72"]) == ["ok"]


def test_verified_steps_credit_is_the_level_plus_the_squashed_model_signal(char_tok):
    steps = ["8/2=4", "8+4=13", "#### 13"]
    lps = [-1.0] * len("\n".join(steps))
    batch = char_batch(char_tok, "Q: 8 and half of 8?\n", steps, lps)
    credit = get_credit_method("verified_steps").credits(batch).step_credits[0]
    # every result token has log-prob -1: squashed -1 / (1 + 1) = -0.5; step 1 states 8 + 4 = 13 (false): -4
    assert credit.tolist() == pytest.approx([-0.5, -4.5, -0.5])
    alone = get_credit_method("verified_steps", model_fallback=False).credits(batch).step_credits[0]
    assert alone.tolist() == [0.0, -4.0, 0.0]


def test_verified_steps_reads_percentages_and_number_words_of_the_problem():
    from acpo.credit.verified_steps import step_verdicts

    problem = "A shirt costs $40 and is 25% off. Twenty people buy one."
    # 0.75 is 100% - 25%, 20 is "twenty": both stated by the problem
    assert step_verdicts(problem, ["40 * 0.75 = 30", "30 * 20 = 600"]) == ["ok", "ok"]
    assert step_verdicts(problem, ["40 * 0.65 = 26"]) == ["unsupported"]  # 35% off is nowhere in the problem


def test_result_logprob_reads_sampled_ids_that_are_not_the_texts_own_tokenization(bpe_tok):
    from acpo.segment import Step

    text = "3*4=12\n#### 12"
    ids = [i for ch in text for i in bpe_tok(ch, add_special_tokens=False)["input_ids"]]  # one id per character
    assert ids != bpe_tok(text, add_special_tokens=False)["input_ids"] and bpe_tok.decode(ids) == text
    n = len(ids)
    tensors = pad_batch([[0]], [ids], bpe_tok.pad_token_id)
    lps = torch.tensor([[-0.1 * (j + 1) for j in range(n)]])
    steps = [Step(0, 0, 7, 0, 7, text[:7]), Step(1, 7, n, 7, n, text[7:])]
    batch = CreditBatch(*tensors, logprobs=lps, entropy=torch.zeros(1, n), steps=[steps], advantages=torch.zeros(1),
                        group_ids=torch.zeros(1, dtype=torch.long), texts=[text], tokenizer=bpe_tok)
    credit = get_credit_method("result_logprob").credits(batch).step_credits[0]
    # step 0's result "12" is characters (= ids) 4 and 5; step 1 states no "= result": its mean
    assert credit.tolist() == pytest.approx([float(lps[0, 4:6].mean()), float(lps[0, 7:].mean())])
