"""The public API end to end on tiny Llama / GPT-2 models, and its error messages."""

import copy

import pandas as pd
import pytest
import torch

import acpo
from acpo.trace import BASE_COLUMNS

PROMPT = "Q: 7-3*4+2=?\n"
WRONG = "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"
RIGHT = "3*4=12\n7-12=-5\n-5+2=-3\n#### -3"


def test_explain_returns_a_step_table(model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method=["info_gain", "hapo"], segmentation="lines", answer="-3", reward=0.0)
    df = trace.to_frame()
    assert list(df.columns[: len(BASE_COLUMNS)]) == BASE_COLUMNS
    assert {"credit_info_gain", "credit_hapo", "answer_logprob", "adv_mean_info_gain"} <= set(df.columns)
    assert df["text"].tolist() == ["3*4=12\n", "7-12=-4\n", "-4+2=-2\n", "#### -2"]
    assert df["token_end"].iloc[-1] == len(trace.token_ids) == len(trace.tokens)
    assert "".join(trace.tokens) == WRONG
    assert torch.isfinite(torch.tensor(df.select_dtypes("number").to_numpy(dtype=float))).all()
    # a failed completion (reward 0 alone: advantage -0.5) keeps negative advantages everywhere
    assert (trace.token_advantages["info_gain"] < 0).all()


def test_batch_equals_one_at_a_time(model_and_tok):
    model, tok = model_and_tok
    prompts = [PROMPT, PROMPT, "Q: 1+1=?\n"]
    comps = [WRONG, RIGHT, "1+1=2\n#### 2"]
    batch = acpo.explain_batch(
        model, tok, prompts, comps, method="info_gain", segmentation="lines", answers=["-3", "-3", "2"], batch_size=2
    )
    for p, c, a, t in zip(prompts, comps, ["-3", "-3", "2"], batch):
        single = acpo.explain(model, tok, p, c, method="info_gain", segmentation="lines", answer=a)
        assert torch.allclose(t.entropies, single.entropies, atol=1e-5)
        assert torch.allclose(t.logprobs, single.logprobs, atol=1e-5)
        assert torch.allclose(t.credits["info_gain"], single.credits["info_gain"], atol=1e-4)


def test_group_rewards_give_grpo_advantages_and_target_answer_from_a_correct_completion(model_and_tok):
    model, tok = model_and_tok
    traces = acpo.explain_batch(
        model, tok, [PROMPT, PROMPT], [WRONG, RIGHT], method=["uniform", "info_gain"], segmentation="lines", rewards=[0.0, 1.0]
    )
    assert [t.answer for t in traces] == ["-3", "-3"]  # taken from the correct completion's '#### -3'
    adv = [float(t.token_advantages["uniform"][0]) for t in traces]
    assert adv == pytest.approx([-0.7071, 0.7071], abs=1e-3)  # (r - 0.5) / std, std = sqrt(0.5)


def test_csv_holds_exactly_the_frame(tmp_path, model_and_tok):
    model, tok = model_and_tok
    trace = acpo.explain(model, tok, PROMPT, WRONG, method="info_gain", segmentation="hybrid", answer="-3")
    path = trace.to_csv(tmp_path / "steps.csv")
    back = pd.read_csv(path, keep_default_na=False)
    frame = trace.to_frame()
    assert list(back.columns) == list(frame.columns)
    assert back["text"].tolist() == frame["text"].tolist()
    assert back["credit_info_gain"].to_numpy() == pytest.approx(frame["credit_info_gain"].to_numpy(), abs=1e-9)
    assert not list(tmp_path.glob("*.tmp"))


def test_model_training_mode_is_restored(model_and_tok):
    model, tok = model_and_tok
    model.train()
    acpo.explain(model, tok, PROMPT, WRONG, method="uniform", segmentation="lines")
    assert model.training
    model.eval()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"completion": ""}, "completion 0 is empty"),
        ({"completion": "  \n "}, "completion 0 is empty"),
        ({"method": "magic"}, "unknown credit method 'magic'; valid: entropy_mask, hapo, info_gain"),
        ({"segmentation": "words"}, "unknown segmentation 'words'; valid: lines"),
        ({"answer": ""}, "answer '' is empty"),
        ({"completion": "1+1=2\n" * 100}, r"prompt \(\d+ tokens\) \+ completion \(600 tokens\) = \d+ tokens, longer than the model's context of 128"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, message, char_tok):
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok), context=128)
    args = {"prompt": PROMPT, "completion": WRONG, "method": "info_gain", "segmentation": "lines", "answer": "-3", **kwargs}
    with pytest.raises(ValueError, match=message):
        acpo.explain(model, char_tok, **args)


def test_tokenizer_without_pad_token_is_refused(char_tok):
    from conftest import tiny_llama

    tok = copy.deepcopy(char_tok)
    tok.pad_token = None
    with pytest.raises(ValueError, match="has no pad token; set one"):
        acpo.explain(tiny_llama(len(char_tok)), tok, PROMPT, WRONG, method="uniform")


def test_nan_logits_are_reported(char_tok):
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok))
    with torch.no_grad():
        model.lm_head.weight[5] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite logits"):
        acpo.explain(model, char_tok, PROMPT, WRONG, method="uniform")


GIVEN_STEPS = ["3*4=12", "7-12=-4 so far", "-4+2=-2", "#### -2"]


def test_given_steps_are_the_trace_steps(model_and_tok):
    model, tok = model_and_tok  # character tokens (llama) and byte-level BPE that merges newlines (gpt2)
    trace = acpo.explain(model, tok, PROMPT, GIVEN_STEPS, method="mean_logprob")
    assert trace.completion == "\n".join(GIVEN_STEPS) and trace.segmentation == "given"
    assert [s.text.removesuffix("\n") for s in trace.steps] == GIVEN_STEPS
    assert [s.char_start for s in trace.steps] == [0, 7, 22, 30]  # hand-counted starts of each given string
    # the token spans partition the tokens, in order, each step owning at least one
    spans = [(s.token_start, s.token_end) for s in trace.steps]
    assert spans[0][0] == 0 and spans[-1][1] == len(trace.token_ids)
    assert all(a < b for a, b in spans) and all(b == c for (_, b), (c, _) in zip(spans, spans[1:]))
    # tokens are scored on the joined text: the same statistics as the joined string explained by lines
    lines = acpo.explain(model, tok, PROMPT, "\n".join(GIVEN_STEPS), method="mean_logprob", segmentation="lines")
    assert torch.allclose(trace.logprobs, lines.logprobs)


def test_given_segmentation_with_step_starts_matches_step_lists(model_and_tok):
    model, tok = model_and_tok
    text = "ab cd. ef gh. ij"
    trace = acpo.explain(model, tok, PROMPT, text, method="uniform", segmentation="given", step_starts=[[0, 7, 14]])
    assert [s.text for s in trace.steps] == ["ab cd. ", "ef gh. ", "ij"]


@pytest.mark.parametrize("kwargs, message", [
    ({"completion": ["3*4=12", "  "]}, "completion 0: given step 1 is empty"),
    ({"completion": "3*4=12", "segmentation": "given"}, "segmentation='given' needs step_starts"),
    ({"completion": "3*4=12\n#### 2", "segmentation": "given", "step_starts": [[0, 3, 3]]}, "must begin at 0"),
])
def test_given_steps_errors(model_and_tok, kwargs, message):
    model, tok = model_and_tok
    args = {"prompt": PROMPT, "method": "uniform", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        acpo.explain(model, tok, **args)
