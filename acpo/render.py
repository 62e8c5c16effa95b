"""Heatmap HTML of a ``Trace``: the one renderer behind ``Trace.show()``, notebooks and the app.

Colour convention (as inseq's heatmaps): a diverging scale centred at 0,
blue for credit that raised the reward, red for blame; each view scales its
credits by their largest magnitude so the strongest step is fully saturated.
Everything here is pure (strings in, HTML out), so it is testable without a
model or a browser.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

import pandas as pd

POSITIVE_RGB = (33, 102, 172)  # blue: the step raised the answer's probability / reward
NEGATIVE_RGB = (178, 24, 43)  # red: the step lowered it
ENTROPY_RGB = (230, 110, 0)  # orange: sequential scale for entropy
WHITE = (255, 255, 255)


# --- colours -------------------------------------------------------------------


def scale_credits(values: Sequence[float]) -> list[float]:
    """Credits divided by their largest magnitude: in [-1, 1], sign kept, 0 stays 0.

    All-zero (or empty) input gives zeros; NaN counts as 0.

    >>> scale_credits([0.5, -1.0, 0.0])
    [0.5, -1.0, 0.0]
    >>> scale_credits([0.0, 0.0])
    [0.0, 0.0]
    """
    clean = [0.0 if v is None or math.isnan(float(v)) else float(v) for v in values]
    top = max((abs(v) for v in clean), default=0.0)
    if top == 0.0:
        return [0.0 for _ in clean]
    return [v / top for v in clean]


def _mix(rgb: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    w = min(1.0, max(0.0, weight))
    return tuple(round(a + (b - a) * w) for a, b in zip(WHITE, rgb))


def credit_color(scaled: float) -> str:
    """CSS colour of a scaled credit in [-1, 1]: white at 0, blue up to +1, red down to -1.

    >>> credit_color(0.0), credit_color(1.0), credit_color(-1.0)
    ('rgb(255, 255, 255)', 'rgb(33, 102, 172)', 'rgb(178, 24, 43)')
    """
    rgb = _mix(POSITIVE_RGB if scaled >= 0 else NEGATIVE_RGB, abs(scaled))
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def entropy_color(fraction: float) -> str:
    """CSS colour of an entropy as a fraction of the view's maximum (0 white, 1 orange)."""
    rgb = _mix(ENTROPY_RGB, fraction)
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def _text_color(weight: float) -> str:
    return "#ffffff" if abs(weight) > 0.6 else "#111111"


# --- heatmaps (HTML) -------------------------------------------------------------

_BOX = (
    "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 15px; "
    "line-height: 2.0; white-space: pre-wrap; word-break: break-word; padding: 12px 14px; "
    "border: 1px solid #d0d7de; border-radius: 8px; background: #ffffff; color: #111111;"
)
_MONO = "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;"
_SPAN = _MONO + " border-radius: 4px; padding: 2px 1px;"
_BADGE = (
    "display: inline-block; font-family: system-ui, sans-serif; font-size: 11px; line-height: 1.4; "
    "padding: 0 5px; margin: 0 2px; border-radius: 8px; vertical-align: middle; white-space: nowrap;"
)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "n/a" if math.isnan(f) else f"{f:+.{digits}g}"


def _legend(low: str, high: str, left: str, right: str) -> str:
    bar = f"background: linear-gradient(90deg, {left}, #ffffff, {right});" if right else ""
    if not right:
        bar = f"background: linear-gradient(90deg, #ffffff, {left});"
    return (
        '<div style="display:flex; align-items:center; gap:8px; font: 12px system-ui, sans-serif; '
        'color:#57606a; margin: 6px 0 2px 0;">'
        f"<span>{html.escape(low)}</span>"
        f'<span style="display:inline-block; width:160px; height:10px; border-radius:5px; '
        f'border:1px solid #d0d7de; {bar}"></span>'
        f"<span>{html.escape(high)}</span></div>"
    )


def credit_legend() -> str:
    return _legend("blame (-1)", "credit (+1)", credit_color(-1.0), credit_color(1.0))


def _prompt_block(prompt: str | None) -> str:
    if not prompt:
        return ""
    return (
        f'<div style="{_BOX} background:#f6f8fa; color:#57606a; margin-bottom:6px; line-height:1.6;">'
        f"{html.escape(prompt)}</div>"
    )


def step_heatmap_html(
    frame: pd.DataFrame,
    credit_column: str,
    prompt: str | None = None,
    first_error_step: int | None = None,
    title: str | None = None,
) -> str:
    """The completion, each step coloured by its scaled credit; hover shows the numbers.

    ``frame`` has one row per step with ``step``, ``text`` and ``credit_column``
    (``Trace.to_frame()`` or the rows of a run's traces parquet); ``n_tokens``,
    ``entropy_mean`` and ``entropy_max`` are shown on hover when present.
    ``first_error_step`` (the checker's ground truth) gets a dashed outline and
    a badge; the lowest-credit step gets a badge too, so the two can be compared.
    """
    if credit_column not in frame.columns:
        raise ValueError(f"the step table has no column {credit_column!r}; columns: {list(frame.columns)}")
    frame = frame.sort_values("step")
    raw = [float(v) for v in frame[credit_column]]
    scaled = scale_credits(raw)
    lowest = int(frame["step"].iloc[min(range(len(raw)), key=raw.__getitem__)]) if raw and any(raw) else None
    parts = []
    for (_, row), s in zip(frame.iterrows(), scaled):
        step = int(row["step"])
        tip = [f"step {step}", f"{credit_column} {_fmt(row[credit_column])} (scaled {s:+.2f})"]
        if "entropy_mean" in row:
            top = float(row.get("entropy_max", float("nan")))
            tip.append(f"entropy mean {float(row['entropy_mean']):.3f}, max {top:.3f}")
        if "n_tokens" in row:
            tip.append(f"{int(row['n_tokens'])} tokens")
        if "answer_logprob" in row and pd.notna(row["answer_logprob"]):
            tip.append(f"log p(answer | steps 0..{step}) {float(row['answer_logprob']):.3f}")
        style = f"background:{credit_color(s)}; color:{_text_color(s)}; {_SPAN}"
        badges = ""
        if step == first_error_step:
            style += " outline: 2px dashed #cf222e; outline-offset: 1px;"
            tip.append("checker: first wrong step")
            badges += f'<span style="{_BADGE} background:#cf222e; color:#fff;">✗ first error</span>'
        if step == lowest:
            badges += f'<span style="{_BADGE} background:#24292f; color:#fff;">▼ lowest credit</span>'
        text = str(row["text"])
        tail = ""
        if text.endswith("\n"):  # keep the badge on the step's own line
            text, tail = text[:-1], "\n"
        parts.append(
            f'<span class="acpo-step" data-step="{step}" title="{html.escape(" · ".join(tip))}" '
            f'style="{style}">{html.escape(text)}</span>{badges}{tail}'
        )
    head = ""
    if title:
        head = f'<div style="font: 600 13px system-ui, sans-serif; margin: 4px 0;">{html.escape(title)}</div>'
    return (
        f'<div class="acpo-heatmap">{head}{_prompt_block(prompt)}'
        f'<div style="{_BOX}">{"".join(parts)}</div>{credit_legend()}</div>'
    )


def token_heatmap_html(
    tokens: Sequence[str],
    values: Sequence[float],
    kind: str = "entropy",
    step_starts: Sequence[int] = (),
    prompt: str | None = None,
) -> str:
    """One span per token: ``kind="entropy"`` on a white-orange scale (0..max),
    ``kind="advantage"`` on the diverging credit scale. Step starts get a thin bar."""
    if len(tokens) != len(values):
        raise ValueError(f"got {len(values)} values for {len(tokens)} tokens")
    vals = [float(v) for v in values]
    starts = set(step_starts) - {0}
    if kind == "entropy":
        top = max(vals, default=0.0) or 1.0
        colours = [entropy_color(v / top) for v in vals]
        weights = [v / top for v in vals]
        legend = _legend("entropy 0", f"{top:.2f} nats", entropy_color(1.0), "")
    elif kind == "advantage":
        weights = scale_credits(vals)
        colours = [credit_color(w) for w in weights]
        legend = _legend("negative advantage", "positive advantage", credit_color(-1.0), credit_color(1.0))
    else:
        raise ValueError(f"unknown token view {kind!r}; valid: entropy, advantage")
    parts = []
    for j, (tok, v, c, w) in enumerate(zip(tokens, vals, colours, weights)):
        bar = "border-left: 2px solid #57606a;" if j in starts else ""
        tip = html.escape(f"token {j} {tok!r} · {kind} {v:+.3f}")
        parts.append(
            f'<span title="{tip}" style="background:{c}; color:{_text_color(w)}; {_MONO} {bar}">'
            f"{html.escape(tok)}</span>"
        )
    return f'<div class="acpo-heatmap">{_prompt_block(prompt)}<div style="{_BOX}">{"".join(parts)}</div>{legend}</div>'


def message_html(text: str, kind: str = "info") -> str:
    """A boxed note in place of a heatmap (nothing to show yet, or what went wrong)."""
    colour = {"info": "#57606a", "error": "#cf222e"}.get(kind, "#57606a")
    return f'<div style="{_BOX} color:{colour}; font-family: system-ui, sans-serif;">{html.escape(text)}</div>'


VIEWS = ("steps", "entropy", "advantage")


def trace_html(trace, method: str | None = None, view: str = "steps", first_error_step: int | None = None) -> str:
    """A ``Trace`` as HTML: its steps coloured by ``method``'s credit (``view="steps"``), or one
    span per token coloured by entropy or by the method's token advantage."""
    method = method or trace.methods[0]
    starts = [s.token_start for s in trace.steps]
    if view == "entropy":
        return token_heatmap_html(trace.tokens, trace.entropies.tolist(), "entropy", starts, trace.prompt)
    if view == "advantage":
        return token_heatmap_html(trace.tokens, trace.token_advantages[method].tolist(), "advantage", starts,
                                  trace.prompt)
    if view != "steps":
        raise ValueError(f"unknown view {view!r}; valid: {', '.join(VIEWS)}")
    return step_heatmap_html(trace.to_frame(), f"credit_{method}", trace.prompt, first_error_step)
