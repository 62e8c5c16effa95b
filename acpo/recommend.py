"""Which credit to show first, and where that choice was measured.

A credit's fidelity is measured on some traces with some labels, and need not carry over to others:
``mean_logprob`` finds the first wrong line of the demo policy's own sampled mistakes (labelled by the task's
step checker), and does not find the first wrong step of solutions other models wrote (ProcessBench, human
labels). So a recommendation here always says where it was measured (policy, traces, labels), shows the
ProcessBench row of the same credit beside it, and, when the user has labelled traces of their own (the app's
Batch tab), comes from the user's own table instead.

The numbers are read from the tables the benchmarks publish, never typed in:
``assets/credit_fidelity.csv`` (``python bench/credit_fidelity.py --publish``) and ``assets/processbench.csv``
(``python bench/processbench.py --publish``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from acpo.credit import renamed_credit_columns

from acpo.resources import ASSETS

DEMO_FIDELITY = ASSETS / "credit_fidelity.csv"
PROCESSBENCH = ASSETS / "processbench.csv"


@dataclass(frozen=True)
class Recommendation:
    """The credit to show first and a markdown paragraph saying why, with where each figure was measured."""

    method: str
    text: str


def read_table(path: Path) -> pd.DataFrame:
    """A published benchmark table, or an empty one when it was never published."""
    return renamed_credit_columns(pd.read_csv(path)) if Path(path).exists() else pd.DataFrame()  # old names read


def _pct(x) -> str:
    return f"{float(x):.0%}"


def processbench_line(method: str, processbench: pd.DataFrame) -> str:
    """The ProcessBench row of ``method``, the best credit there and the best control, in one sentence ("" when
    the table is missing)."""
    if processbench.empty or "method" not in processbench:
        return ""
    first = processbench.iloc[0]
    where = (f"ProcessBench {first.get('data', '')} (solutions written by Llama and Qwen models, human labels of "
             f"the earliest wrong step; scored by {first.get('scoring_model', '?')}; held-out half of "
             f"{int(first['solutions'])}, threshold fixed on the other half; `bench/processbench.py`, "
             f"{first.get('measured', '?')})")
    credits = processbench[processbench["kind"] == "credit"]
    mine = credits[credits["method"] == method]
    parts = []
    if len(mine):
        r = mine.iloc[0]
        parts.append(f"**{method}** gets F1 {r['f1']:.1f} and top-1 {_pct(r['top1'])} on the erroneous ones "
                     f"(chance {_pct(r['chance_top1'])})")
    if len(credits):
        best = credits.sort_values(["f1", "top1"], ascending=False).iloc[0]
        if best["method"] != method:
            parts.append(f"the best credit there is {best['method']} (F1 {best['f1']:.1f}, top-1 {_pct(best['top1'])})")
    controls = processbench[processbench["kind"] == "control"]
    if len(controls):
        c = controls.sort_values(["f1", "top1"], ascending=False).iloc[0]
        parts.append(f"the best position/text control {c['method'].removesuffix(' (control)')} gets F1 "
                     f"{c['f1']:.1f}, top-1 {_pct(c['top1'])}")
    return f"On traces nobody here made, {where}: " + "; ".join(parts) + "."


def recommend(candidates: Sequence[str], demo: pd.DataFrame, processbench: pd.DataFrame,
              own: pd.DataFrame | None = None, fallback: str = "info_gain", own_labels: str = "your labels") -> Recommendation:
    """The credit to show first among ``candidates`` and why.

    Args:
        candidates: the credits the caller can show (cheap ones: no sampling).
        demo: the published credit-fidelity table of the demo policy (``DEMO_FIDELITY``).
        processbench: the published ProcessBench table (``PROCESSBENCH``).
        own: the user's own fidelity table (``acpo.fidelity.fidelity_table`` on their labelled traces), which
            decides when it has rows.
        own_labels: what labelled the user's traces, for the text.
    """
    if own is not None and len(own):
        best = own.sort_values(["top1", "auroc"], ascending=False).iloc[0]
        text = (f"On **your** {int(best['traces'])} labelled failed traces ({own_labels}), **{best['method']}** "
                f"found the first wrong step best: top-1 {_pct(best['top1'])} (95% CI {_pct(best['top1_lo'])}–"
                f"{_pct(best['top1_hi'])}; chance {_pct(best['chance_top1'])}), AUROC {best['auroc']:.2f}. "
                "Use it for these traces; figures measured elsewhere do not carry over.")
        return Recommendation(str(best["method"]), text)
    cheap = demo[demo["credit"].isin(candidates)] if "credit" in demo else demo.iloc[:0]
    if cheap.empty:
        return Recommendation(fallback, f"No measured credit fidelity found ({DEMO_FIDELITY.name}); showing "
                                        f"{fallback}. Run `python bench/credit_fidelity.py --publish` to measure.")
    best = cheap.sort_values(["top1", "auroc"], ascending=False).iloc[0]
    policy = best["policy"] if "policy" in best and pd.notna(best["policy"]) else "the demo policy"
    when = f", {best['measured']}" if "measured" in best and pd.notna(best["measured"]) else ""
    text = (f"The first screen uses **{best['credit']}**, measured on {int(best['traces'])} failed traces that "
            f"`{policy}` sampled itself on the synthetic tasks, labelled by the task's step checker: its "
            f"lowest-credit step was the first wrong step {_pct(best['top1'])} of the time (95% CI "
            f"{_pct(best['top1_lo'])}–{_pct(best['top1_hi'])}; chance {_pct(best['chance_top1'])}), AUROC "
            f"{best['auroc']:.2f}, the best of the cheap credits there (`bench/credit_fidelity.py`{when}). "
            "That holds for this policy's own traces only.")
    line = processbench_line(str(best["credit"]), processbench)
    if line:
        text += " " + line
    text += (" For other traces, open a labelled file in the Batch tab (ProcessBench and PRM800K files carry their "
             "human labels): it recommends from your own table.")
    return Recommendation(str(best["credit"]), text)
