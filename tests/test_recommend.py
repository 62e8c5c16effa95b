"""The recommendation names where its figure was measured and prefers the user's own labelled traces."""

import pandas as pd

from acpo.recommend import recommend

DEMO = pd.DataFrame([
    {"method": "mean_logprob (lines)", "credit": "mean_logprob", "traces": 300, "top1": 0.76, "top1_lo": 0.71,
     "top1_hi": 0.80, "auroc": 0.85, "chance_top1": 0.29, "measured": "2026-12-04", "policy": "demo-policy"},
    {"method": "acpo (lines)", "credit": "info_gain", "traces": 300, "top1": 0.44, "top1_lo": 0.39, "top1_hi": 0.50,
     "auroc": 0.38, "chance_top1": 0.29, "measured": "2026-12-04", "policy": "demo-policy"},
])
BENCH = pd.DataFrame([
    {"method": "mean_logprob", "kind": "credit", "solutions": 200, "f1": 21.0, "top1": 0.2, "chance_top1": 0.21,
     "data": "gsm8k.json", "scoring_model": "smollm2", "measured": "2026-12-06"},
    {"method": "verified_steps", "kind": "credit", "solutions": 200, "f1": 33.0, "top1": 0.3, "chance_top1": 0.21,
     "data": "gsm8k.json", "scoring_model": "smollm2", "measured": "2026-12-06"},
    {"method": "first step (control)", "kind": "control", "solutions": 200, "f1": 25.0, "top1": 0.35,
     "chance_top1": 0.21, "data": "gsm8k.json", "scoring_model": "smollm2", "measured": "2026-12-06"},
])


def test_without_own_labels_it_says_where_the_figure_was_measured_and_shows_processbench_beside_it():
    rec = recommend(["mean_logprob", "info_gain"], DEMO, BENCH)
    assert rec.method == "mean_logprob"
    assert "300 failed traces that `demo-policy` sampled itself" in rec.text and "task's step checker" in rec.text
    assert "76%" in rec.text and "AUROC 0.85" in rec.text
    assert "ProcessBench gsm8k.json" in rec.text and "human labels" in rec.text
    assert "**mean_logprob** gets F1 21.0 and top-1 20%" in rec.text
    assert "the best credit there is verified_steps (F1 33.0" in rec.text
    assert "first step gets F1 25.0" in rec.text


def test_the_users_own_table_decides_when_it_has_rows():
    own = pd.DataFrame([
        {"method": "mean_logprob", "traces": 12, "top1": 0.25, "top1_lo": 0.0, "top1_hi": 0.5, "auroc": 0.4,
         "chance_top1": 0.2},
        {"method": "verified_steps", "traces": 12, "top1": 0.5, "top1_lo": 0.25, "top1_hi": 0.75, "auroc": 0.7,
         "chance_top1": 0.2},
    ])
    rec = recommend(["mean_logprob", "verified_steps"], DEMO, BENCH, own=own, own_labels="the file's human labels")
    assert rec.method == "verified_steps"
    assert "your** 12 labelled failed traces (the file's human labels)" in rec.text and "top-1 50%" in rec.text
    assert "demo-policy" not in rec.text  # the demo policy's figure is not carried over


def test_without_any_table_it_falls_back_and_says_how_to_measure():
    rec = recommend(["mean_logprob"], pd.DataFrame(), pd.DataFrame(), fallback="info_gain")
    assert rec.method == "info_gain" and "bench/credit_fidelity.py --publish" in rec.text
