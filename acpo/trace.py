"""``Trace``: one explained completion, the object the app renders and the CSV exports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from acpo.segment import Step

# Column order of a step table (DESIGN.md "A trace table has one row per step").
BASE_COLUMNS = [
    "run",
    "checkpoint",
    "prompt_id",
    "completion_id",
    "step",
    "text",
    "token_start",
    "token_end",
    "char_start",
    "char_end",
    "n_tokens",
    "reward",
    "entropy_mean",
    "entropy_max",
    "logprob_mean",
]


@dataclass
class Trace:
    """Token statistics, steps and per-step credits of one completion.

    ``credits[method]`` is a (K,) tensor; ``token_advantages[method]`` a (T,)
    tensor (the advantage each token would get in training). ``extras`` holds
    method-specific per-step values such as ``answer_logprob`` (ACPO's v_k).
    """

    prompt: str
    completion: str
    token_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    logprobs: torch.Tensor
    entropies: torch.Tensor
    steps: list[Step]
    segmentation: str
    credits: dict[str, torch.Tensor] = field(default_factory=dict)
    token_advantages: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    answer: str | None = None
    reward: float | None = None
    meta: dict[str, str] = field(default_factory=dict)  # run, checkpoint, prompt_id, completion_id
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each method's credits (whole batch)

    @property
    def methods(self) -> list[str]:
        return list(self.credits)

    def to_frame(self) -> pd.DataFrame:
        """One row per step: spans, entropy, credit per method, token advantage summary."""
        rows = []
        for s in self.steps:
            ent = self.entropies[s.token_start : s.token_end]
            lp = self.logprobs[s.token_start : s.token_end]
            row = {
                "run": self.meta.get("run", ""),
                "checkpoint": self.meta.get("checkpoint", ""),
                "prompt_id": self.meta.get("prompt_id", ""),
                "completion_id": self.meta.get("completion_id", ""),
                "step": s.index,
                "text": s.text,
                "token_start": s.token_start,
                "token_end": s.token_end,
                "char_start": s.char_start,
                "char_end": s.char_end,
                "n_tokens": s.n_tokens,
                "reward": self.reward,
                "entropy_mean": float(ent.mean()),
                "entropy_max": float(ent.max()),
                "logprob_mean": float(lp.mean()),
            }
            for name, credit in self.credits.items():
                row[f"credit_{name}"] = float(credit[s.index])
            for name, values in self.extras.items():
                row[name] = float(values[s.index])
            for name, adv in self.token_advantages.items():
                a = adv[s.token_start : s.token_end]
                row[f"adv_mean_{name}"] = float(a.mean())
                row[f"adv_min_{name}"] = float(a.min())
                row[f"adv_max_{name}"] = float(a.max())
            rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path: str | Path) -> Path:
        """Write ``to_frame()`` as CSV (atomically: a temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        self.to_frame().to_csv(tmp, index=False)
        tmp.replace(path)
        return path

    def lowest_credit_step(self, method: str | None = None) -> int | None:
        """Index of the step the method blames (``acpo.verdict.blamed_step``: the uniquely lowest credit)."""
        from acpo.verdict import blamed_step

        return blamed_step([s.index for s in self.steps], self.credits[method or self.methods[0]].tolist())

    def html(self, method: str | None = None, view: str = "steps", first_error_step: int | None = None) -> str:
        """The heatmap the app shows (``acpo.render.trace_html``): steps by credit, or tokens
        by ``view="entropy"`` / ``"advantage"``."""
        from acpo.render import trace_html

        return trace_html(self, method, view, first_error_step)

    def _repr_html_(self) -> str:
        return self.html()

    def show(self, method: str | None = None, view: str = "steps", first_error_step: int | None = None) -> None:
        """Display the heatmap in a notebook (IPython); elsewhere print the text summary."""
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            get_ipython = None
        if get_ipython is not None and get_ipython() is not None:
            display(HTML(self.html(method, view, first_error_step)))
        else:
            print(repr(self))

    def __repr__(self) -> str:
        lines = [f"Trace({len(self.tokens)} tokens, {len(self.steps)} steps, methods={self.methods}, reward={self.reward})"]
        for s in self.steps:
            cr = "  ".join(f"{m}={float(c[s.index]):+.3f}" for m, c in self.credits.items())
            lines.append(f"  [{s.index:>2}] {cr}  {s.text!r}")
        return "\n".join(lines)
