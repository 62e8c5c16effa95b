"""The resampling credit (mc_reset) in the app: progress that moves within a generate call, Stop that ends the
server's sampling within a token, the per-boundary accuracy curve, and an estimate close to the real time."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import acpo.rollout  # noqa: E402
from acpo.tasks import get_task  # noqa: E402
from conftest import char_tokenizer, save, tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from app.callbacks import Explorer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mc")
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0, context=256)
    save(model, tok, root / "m")
    problem = get_task("arith").generate(1, level=2, seed=0)[0]
    return dict(model=str(root / "m"), problem=problem, explorer=Explorer([root], default_model=str(root / "m")))


def explain(world, **kw):
    p = world["problem"]
    args = dict(mc_samples=4, mc_temperature=1.0, mc_batch=64, mc_tokens=24)
    args.update(kw)
    return world["explorer"].explain(world["model"], False, p.prompt, p.solution, p.answer, "", "arith", "mc_reset",
                                     "lines", "#### ", "steps: credit", args["mc_samples"], args["mc_temperature"],
                                     args["mc_batch"], args["mc_tokens"], progress=args.get("progress"))


def test_progress_moves_within_one_generate_call_and_ends_at_the_total(world):
    seen = []
    explain(world, progress=lambda fraction, desc="": seen.append(fraction))
    # every boundary fits one call (batch 64 >= steps x 4), yet the bar moves with the tokens
    assert len(seen) > 10 and seen == sorted(seen) and seen[0] == 0 and seen[-1] == pytest.approx(1.0)


def test_the_curve_is_the_accuracy_if_resampled_from_each_step_and_the_credits_are_its_rises(world):
    heat, verdict, fig, table, csv, state, sent, curve = explain(world, progress=lambda *a, **k: None)
    trace = state["trace"]
    accuracy = trace.extras["resample_accuracy"].tolist()
    assert len(accuracy) == len(trace.steps) and all(0 <= a <= 1 for a in accuracy)
    points = accuracy + [trace.reward]  # the telescoping definition: c_k = V(after step k) - V(before step k)
    rises = [b - a for a, b in zip(points, points[1:])]
    assert trace.credits["mc_reset"].tolist() == pytest.approx(rises, abs=1e-6)
    assert curve["visible"] is True
    plotted = curve["value"].data[0].y
    assert list(plotted) == pytest.approx(points)
    import pandas as pd

    assert pd.read_csv(csv)["resample_accuracy"].tolist() == pytest.approx(accuracy)  # in the CSV too


def test_stop_ends_the_server_sampling_within_a_token_and_says_so(world):
    tokens_after_stop, stopped = [], threading.Event()
    original = acpo.rollout.HFEngine.generate

    def watched(self, prompts, n=1, greedy=False, progress=False, on_token=None):
        def hook(sequences, k):
            if stopped.is_set():
                tokens_after_stop.append(k)
            on_token(sequences, k)
        return original(self, prompts, n, greedy, progress, hook)

    def progress(fraction, desc=""):
        if fraction > 0 and not stopped.is_set():
            world["explorer"].stop()  # what the Stop button calls (no session: the API's flag)
            stopped.set()

    acpo.rollout.HFEngine.generate = watched
    try:
        started = time.perf_counter()
        # the longest run the server's request caps allow (M and tokens at their caps)
        heat, verdict, *_rest, curve = explain(world, mc_samples=32, mc_batch=16, mc_tokens=128, progress=progress)
    finally:
        acpo.rollout.HFEngine.generate = original
    assert stopped.is_set() and verdict.startswith("Stopped: the resampling credit was cancelled")
    assert "Stopped" in heat and curve == {"__type__": "update", "visible": False}
    assert len(tokens_after_stop) <= 1  # the token being generated when Stop came, then no more
    assert time.perf_counter() - started < 60


def test_the_estimate_counts_what_the_run_samples(world):
    """The estimate names the boundaries, continuations and batches the run then samples, and a positive time
    (how close that time comes to the real one is measured in bench/mc_estimate.py, not timed here)."""
    p = world["problem"]
    ex = world["explorer"]
    text = ex.estimate_resampling(world["model"], False, p.prompt, p.solution, "lines", "mc_reset", 8, 16, 24,
                                  p.answer, "arith")
    assert float(text.split("about **")[1].split(" s**")[0]) > 0
    trace = explain(world, mc_samples=8, mc_tokens=24, progress=lambda *a, **k: None)[5]["trace"]
    k = len(trace.steps)
    batches = -(-k // (16 // 8))  # 16 // 8 = 2 boundaries per generate call
    assert f"{k} boundaries × M=8 = {8 * k} continuations of up to 24 tokens in {batches} batch(es)" in text
