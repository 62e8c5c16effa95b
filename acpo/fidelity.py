"""Credit fidelity: does a credit method blame the step a checker says went wrong first?

The one home of the metrics that ``bench/credit_fidelity.py`` reports for the
demo policy and the app's Batch tab reports on a user's own traces, so the two
always agree. A trace counts when it failed, shows working (two lines at
least: an answer with no working has one step and nothing to localise) and
its first wrong line has a span (``acpo.verdict.localisable``); the others are counted by
cause (``acpo.verdict.unlabelled_counts``), not silently dropped. Per method: top-1 (the
blamed step, ``acpo.verdict.blamed_step``, holds the first wrong line), the AUROC of -credit at telling
that step from the correct steps before it, both with 95% bootstrap intervals
over traces, and chance (mean 1/K).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from acpo.verdict import blamed_step

BOOTSTRAP_SEED = 0
FIDELITY_COLUMNS = ["method", "traces", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "mean_steps",
                    "chance_top1"]


def top1(scores: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    """Share of traces whose blamed step (``acpo.verdict.blamed_step``: the uniquely lowest) is the labelled one."""
    return float(np.mean([blamed_step(range(len(s)), s) == l for s, l in zip(scores, labels)]))


def auroc(scores: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    """AUROC of -score: the error step (positive) vs the steps before it (negatives), pooled; ties count 1/2."""
    pos = np.array([-s[l] for s, l in zip(scores, labels)], dtype=float)
    neg = np.concatenate([-np.asarray(s[:l], dtype=float) for s, l in zip(scores, labels)] + [np.zeros(0)])
    if len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def matched_auroc(scores, labels, strata, answer_line) -> float:
    """AUROC of -score: each wrong computation line against the *right* lines at the same step index of other
    failed traces of the same stratum (e.g. family, level and length; their first error comes later), so neither
    where a line sits nor how long the working is can separate them. Answer lines are left out on both sides."""
    negatives: dict[tuple, list[float]] = {}
    for sc, lab, st in zip(scores, labels, strata):
        for k in range(lab):
            negatives.setdefault((*st, k), []).append(-sc[k])
    greater = pairs = 0.0
    for sc, lab, st, ans in zip(scores, labels, strata, answer_line):
        if lab == ans:  # the wrong line is the answer line: no computation to compare
            continue
        neg = np.asarray(negatives.get((*st, lab), []))
        if len(neg):
            greater += (-sc[lab] > neg).sum() + 0.5 * (-sc[lab] == neg).sum()
            pairs += len(neg)
    return float(greater / pairs) if pairs else float("nan")


def bootstrap(fn, scores, labels, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of ``fn`` over ``reps`` resamples of the traces (NaN resamples dropped)."""
    n = len(scores)
    vals = []
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        vals.append(fn([scores[i] for i in idx], [labels[i] for i in idx]))
    vals = [v for v in vals if not np.isnan(v)]
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (np.nan, np.nan)


def fidelity_row(name: str, scores: Sequence[np.ndarray], labels: Sequence[int], reps: int = 1000,
                 seed: int = BOOTSTRAP_SEED) -> dict:
    """One method's row; each method's bootstrap starts from ``seed``, so a row does not depend on the others."""
    if not scores:
        raise ValueError(f"no labelled traces to score {name!r} on")
    rng = np.random.default_rng(seed)
    lo, hi = bootstrap(top1, scores, labels, reps, rng)
    alo, ahi = bootstrap(auroc, scores, labels, reps, rng)
    return {"method": name, "traces": len(scores), "top1": top1(scores, labels), "top1_lo": lo, "top1_hi": hi,
            "auroc": auroc(scores, labels), "auroc_lo": alo, "auroc_hi": ahi,
            "mean_steps": float(np.mean([len(s) for s in scores])),
            "chance_top1": float(np.mean([1 / len(s) for s in scores]))}


def fidelity_table(scores: Mapping[str, Sequence[np.ndarray]], labels: Sequence[int], reps: int = 1000,
                   seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """``fidelity_row`` for every method (method name -> per-trace step scores, lower = more blamed)."""
    return pd.DataFrame([fidelity_row(name, s, labels, reps, seed) for name, s in scores.items()],
                        columns=FIDELITY_COLUMNS)
