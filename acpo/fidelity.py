"""Credit fidelity: does a credit method blame the step a checker says went wrong first?

The one home of the metrics that ``bench/credit_fidelity.py`` reports for the
demo policy and the app's Batch tab reports on a user's own traces, so the two
always agree. A trace counts when it failed, shows working (two lines at
least: an answer with no working has one step and nothing to localise) and
its first wrong line has a span (``localisable``); the others are counted by
cause (``unlabelled_counts``), not silently dropped. Per method: top-1 (the
lowest-credit step holds the first wrong line), the AUROC of -credit at telling
that step from the correct steps before it, both with 95% bootstrap intervals
over traces, and chance (mean 1/K).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0
FIDELITY_COLUMNS = ["method", "traces", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "mean_steps",
                    "chance_top1"]


def localisable(check) -> bool:
    """A failed completion that shows working and whose first wrong line has a character span."""
    return unlabelled_reason(check) is None


def unlabelled_reason(check) -> str | None:
    """Why a checked completion gives no labelled trace (None: it does), so skipped traces are counted by
    cause: not checked (no checker, or no answer to check against), the answer is right, no working shown, no
    line the free-form checker can read, no false line although the answer is wrong (the error is not in the
    arithmetic), or only the answer line is missing."""
    if check is None:
        return "not checked"
    if check.answer_correct:
        return "answer right"
    if not check.shows_working:
        return "no working"
    if not getattr(check, "checkable", True):
        return "no checkable line"
    if check.first_error is None:
        return "no false line"
    if check.first_error >= len(check.step_char_spans):
        return "no answer line"
    return None


def unlabelled_counts(checks) -> dict[str, int]:
    """How many of ``checks`` each ``unlabelled_reason`` skipped, most common first."""
    counts = Counter(r for r in map(unlabelled_reason, checks) if r is not None)
    return dict(counts.most_common())


def top1(scores: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    """Share of traces whose lowest-scored step is the labelled one (ties: the first lowest)."""
    return float(np.mean([int(np.argmin(s)) == l for s, l in zip(scores, labels)]))


def auroc(scores: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    """AUROC of -score: the error step (positive) vs the steps before it (negatives), pooled; ties count 1/2."""
    pos = np.array([-s[l] for s, l in zip(scores, labels)], dtype=float)
    neg = np.concatenate([-np.asarray(s[:l], dtype=float) for s, l in zip(scores, labels)] + [np.zeros(0)])
    if len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


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
