"""What an anonymous caller of the app cannot make the server read, or hold: adapter chains, costly requests,
long answers. Each case failed before the guard it tests (see docs/SECURITY.md)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import torch

from conftest import char_tokenizer, tiny_llama

from acpo.models import ModelLoadError, load_policy


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``inside/``: a model and an adapter on it; ``outside/``: a model the app must never read."""
    torch.set_num_threads(1)
    inside, outside = tmp_path_factory.mktemp("inside"), tmp_path_factory.mktemp("outside")
    tok = char_tokenizer()
    for folder, seed in [(inside / "base", 0), (outside / "model", 1)]:
        tiny_llama(len(tok), seed=seed, context=64).save_pretrained(folder)
        tok.save_pretrained(folder)
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny_llama(len(tok), seed=0, context=64),
                          LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(inside / "lora")
    return dict(inside=inside, outside=outside, lora=inside / "lora")


def adapter(models, name: str, base) -> str:
    """A copy of the fixture's adapter at ``inside/name`` whose base is ``base``."""
    folder = models["inside"] / name
    if not folder.exists():
        shutil.copytree(models["lora"], folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return str(folder)


def test_every_link_of_an_adapter_chain_is_checked_against_the_allowed_folders(models, monkeypatch):
    from app.models import ModelCache
    from app.pathguard import InputError, PathGuard

    evil = adapter(models, "lora-evil", models["outside"] / "model")
    chain = adapter(models, "lora-chain", evil)
    read = []
    import transformers

    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, *a, **k: read.append(str(path)) or real(path, *a, **k))
    cache = ModelCache(PathGuard([models["inside"]]))
    for name in (chain, evil):
        with pytest.raises(InputError, match="the adapter's base model '.*' is outside the folders this app may read"):
            cache.get(name)
    assert read == []  # the outside model was never loaded
    good = adapter(models, "lora-good", adapter(models, "lora-mid", models["inside"] / "base"))
    model, _ = cache.get(good)  # two adapters on an allowed model load
    assert model.name_or_path == good


@pytest.mark.parametrize("case", ["self", "pair", "deep"])
def test_adapter_cycles_and_deep_chains_are_refused_in_one_line(models, case):
    a, b, c = (str(models["inside"] / f"{case}-{x}") for x in "abc")
    if case == "self":
        adapter(models, f"{case}-a", a)
        expected = "is based on itself"
    elif case == "pair":
        adapter(models, f"{case}-a", b)
        adapter(models, f"{case}-b", a)
        expected = "is based on itself"
    else:
        adapter(models, f"{case}-c", models["inside"] / "base")
        adapter(models, f"{case}-b", c)
        adapter(models, f"{case}-a", b)
        expected = "chain of more than 2 adapters"
    with pytest.raises(ModelLoadError, match=expected) as err:
        load_policy(a)
    assert "\n" not in str(err.value)


def in_thread(fn):
    """``(result, seconds)`` of ``fn()`` run in a thread other than the main one, as a Gradio worker runs it."""
    out = {}

    def run():
        started = time.perf_counter()
        out["result"] = fn()
        out["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["result"], out["seconds"]


def test_a_long_answer_is_not_parsed_in_a_worker_thread():
    from acpo.answers import answers_equivalent, extract_answer
    from acpo.rewards import answer_reward

    hostile = "#### x" + " " * 8000 + "y"  # took 20 s in a thread: math-verify's parse grows with the square
    (equivalent, seconds) = in_thread(lambda: answers_equivalent(extract_answer(hostile), "3"))
    assert equivalent is False and seconds < 0.5
    rewards, seconds = in_thread(lambda: answer_reward(None, [hostile, "#### 3"], answer=["3", "3"]))
    assert rewards == [0.0, 1.0] and seconds < 0.5


def test_math_verify_in_a_worker_thread_is_killed_at_its_timeout(monkeypatch):
    pytest.importorskip("math_verify")
    import acpo.answers as answers

    assert in_thread(lambda: answers.symbolic_verdict("1/2", "0.5", completion=False))[0] == (True, True)
    monkeypatch.setattr(answers, "MATH_VERIFY_TIMEOUT_S", 0.5)
    slow = "x" + " " * 4000 + "y"  # about 5 s of math-verify's parse
    verdict, seconds = in_thread(lambda: answers.symbolic_verdict("3", slow, completion=False))
    assert verdict == (True, False) and seconds < 2
    monkeypatch.setattr(answers, "MATH_VERIFY_TIMEOUT_S", 30)
    assert in_thread(lambda: answers.symbolic_verdict("\\frac{1}{2}", "0.5", completion=False))[0] == (True, True)


def test_format_reward_is_linear_in_the_length_of_a_completion():
    from acpo.rewards import format_reward

    long_line = "a " * 30_000  # 60 k characters: 4.9 s when it was a backtracking pattern
    started = time.perf_counter()
    assert format_reward(None, [long_line, long_line + "\n#### 3", "1+1=2\n" * 10_000 + "#### 2"]) == [0.0, 1.0, 1.0]
    assert time.perf_counter() - started < 0.5


def test_format_reward_agrees_with_the_pattern_it_replaced():
    import random
    import re

    from acpo.rewards import step_format

    pattern = re.compile(r"(?:[^\n]*\S[^\n]*\n)+[ \t]*####[ \t]*\S[^\n]*\s*")  # the old definition, as a reference
    pieces = ["a", " ", "\t", "\n", "#", "####", "\r", "\x0b", "\u2003", "1", "#### "]
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        assert step_format(text) == (pattern.fullmatch(text) is not None), repr(text)


def test_safe_eval_checks_the_length_before_any_pattern_runs():
    from acpo.tasks.freeform import Uncheckable, safe_eval

    for hostile in ["1" * 10_000, "=" + "0" * 10_000]:  # 5.6 s each when the percent pattern ran first
        started = time.perf_counter()
        with pytest.raises(Uncheckable, match="longer than 200 characters"):
            safe_eval(hostile)
        assert time.perf_counter() - started < 0.1
    assert safe_eval("$1,200 × 3 + 50%") == 3600.5


@pytest.fixture(scope="module")
def explorer(models):
    from app.callbacks import Explorer
    from app.limits import RequestLimits

    return Explorer([models["inside"]], default_model=str(models["inside"] / "base"),
                    samples_path=models["inside"] / "no-samples.jsonl", limits=RequestLimits(seconds=30))


def explain(explorer, method="mean_logprob", mc=(8, 1.0, 64, 8), completion="2+3=5\n5*2=10\n#### 10", answer="10"):
    return explorer.explain(None, False, "Q: (2+3)*2=?\n", completion, answer, "", "none", method, "lines", "#### ",
                            "steps: credit", *mc)


@pytest.mark.parametrize("mc, expected", [
    ((256, 1.0, 1024, 1024), "continuations per boundary \\(M\\) must be a whole number from 1 to 32; got 256"),
    ((8, 1.0, 64, 1024), "continuation tokens must be a whole number from 1 to 128; got 1024"),
    ((8, 1.0, 1024, 64), "continuation batch size must be a whole number from 1 to 256; got 1024"),
])
def test_a_resampling_request_over_the_servers_caps_is_refused_before_it_runs(explorer, mc, expected):
    import gradio as gr

    started = time.perf_counter()
    with pytest.raises(gr.Error, match=expected):
        explain(explorer, "mc_reset", mc)
    assert time.perf_counter() - started < 1


def test_a_resampling_request_estimated_over_the_time_cap_is_refused_with_its_estimate(explorer, monkeypatch):
    import gradio as gr

    monkeypatch.setattr(explorer.limits, "seconds", 0.001)
    with pytest.raises(gr.Error, match=r"this resampling credit \(3 boundaries × M=8 continuations of up to 8 "
                                       r"tokens\) would take about \d+ s; this server allows 0 s per request"):
        explain(explorer, "mc_reset")


def test_resampling_runs_one_at_a_time_while_cheap_explains_go_on(explorer):
    import gradio as gr

    with explorer.limits.resampling_lane():  # another caller's resampling credit is running
        with pytest.raises(gr.Error, match="another resampling credit .* is running on this server, one at a time"):
            explain(explorer, "mc_reset")
        assert explain(explorer)[5]["trace"].steps  # a cheap explain is answered meanwhile
    assert "credit_mc_reset" in explain(explorer, "mc_reset")[5]["trace"].to_frame()  # the lane is free again


def test_the_context_is_checked_before_the_completion_is_parsed(explorer, monkeypatch):
    import gradio as gr

    import app.explore

    parsed = []
    monkeypatch.setattr(app.explore, "check_problem", lambda *a: parsed.append(a))
    with pytest.raises(gr.Error, match="longer than the model's context of 64 tokens"):
        explain(explorer, completion="1+1=2\n" * 50 + "#### " + "9" * 100)
    with pytest.raises(gr.Error, match="the completion \\(200,007 characters\\) is longer than the model's context of "
                                       "64 tokens can hold"):
        explain(explorer, completion="#### x" + " " * 200_000 + "y")
    assert parsed == []


def test_batch_rows_too_long_for_the_context_are_skipped_before_any_checker_parses_them(explorer, monkeypatch, tmp_path):
    import gradio as gr

    import app.batch

    parsed = []
    monkeypatch.setattr(app.batch, "check_row", lambda *a: parsed.append(a) or (None, None))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "Q: 1+1=?\n", "completion": "1+1=2\n#### 2", "answer": "2"}) + "\n"
                    + json.dumps({"prompt": "Q: 1+1=?\n", "completion": "1" * 100_000 + "=1\n#### 1", "answer": "1"})
                    + "\n")
    summary = explorer.batch(str(rows), "", None, False, ["uniform"], "lines", "#### ", 10,
                             "free-form computations")[0]
    assert "**1 completions**" in summary  # the row that fits is explained, the file is not refused
    assert "1 row(s) skipped" in summary and "row 1: the completion &#40;100,009 characters&#41; is longer" in summary
    assert len(parsed) == 1  # the checker read the first row only



def test_compare_checks_the_context_and_the_number_of_checkpoints_before_any_parsing(explorer, models, monkeypatch):
    import gradio as gr

    import app.compare

    parsed = []
    monkeypatch.setattr(app.compare, "check_problem", lambda *a: parsed.append(a))
    base = str(models["inside"] / "base")
    with pytest.raises(gr.Error, match="the completion \\(100,009 characters\\) is longer than the model's context"):
        explorer.compare([base, base], False, "Q: 1+1=?\n", "1" * 100_000 + "=1\n#### 1", "1", "uniform", "lines",
                         "#### ")
    with pytest.raises(gr.Error, match="5 checkpoints picked; this server compares at most 4 at once"):
        explorer.compare([base] * 5, False, "Q: 1+1=?\n", "1+1=2\n#### 2", "2", "uniform", "lines", "#### ")
    assert parsed == []


def test_sample_generates_at_most_the_servers_token_cap(explorer):
    import gradio as gr

    with pytest.raises(gr.Error, match="max new tokens must be a whole number from 1 to 512; got 4096"):
        explorer.sample(None, False, "Q: 1+1=?\n", 1.0, 0, 4096)


def test_a_batch_file_projected_over_the_time_cap_is_refused_after_its_first_chunk(explorer, monkeypatch, tmp_path):
    import gradio as gr

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Q: {i}+1=?\n", "completion": f"{i}+1={i + 1}\n#### {i + 1}"}) + "\n"
                            for i in range(40)))
    explained = []
    real = __import__("acpo").explain_batch

    def slow(*args, **kwargs):  # 0.05 s per row: 40 rows take about 2 s, over a 1-s cap
        explained.append(len(args[3]))
        time.sleep(0.05 * len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr("acpo.explain_batch", slow)
    monkeypatch.setattr(explorer.limits, "seconds", 1.0)
    with pytest.raises(gr.Error, match=r"explaining 40 rows \(0\.\d+ s per row\) would take about 2 s; this server "
                                       r"allows 1 s per request: lower Max rows to about \d+"):
        explorer.batch(str(rows), "", None, False, ["uniform"], "lines", "#### ", 40, "none")
    assert explained == [16]  # refused after the first chunk, not after all 40 rows
