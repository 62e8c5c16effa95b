"""Heatmap HTML of a ``Trace``: the one renderer behind ``Trace.show()``, notebooks and the app.

Colour convention (as inseq's heatmaps): signed credits on a diverging scale
centred at 0, blue for credit that raised the reward, red for blame; one-sided
scores (a step's mean log-prob, entropy, the share of tokens kept) on a
sequential scale. Each view draws its largest magnitude at full colour and
prints that magnitude, with its unit, in the legend.
Everything here is pure (strings in, HTML out), so it is testable without a
model or a browser.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from acpo.verdict import blamed_step

POSITIVE_RGB = (33, 102, 172)  # blue: the step raised the answer's probability / reward
NEGATIVE_RGB = (178, 24, 43)  # red: the step lowered it
ENTROPY_RGB = (230, 110, 0)  # orange: sequential scale for entropy
SEQUENTIAL_RGB = (84, 39, 143)  # purple: one-sided scores (a step's mean log-prob, share of tokens kept)
WHITE = (255, 255, 255)


# --- colours -------------------------------------------------------------------


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


def sequential_color(fraction: float) -> str:
    """CSS colour of a one-sided score as a fraction of the view's largest (0 white, 1 deep purple)."""
    rgb = _mix(SEQUENTIAL_RGB, fraction)
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


def _legend(low: str, high: str, left: str, right: str, middle: str = "", meaning: str = "") -> str:
    """A colour bar from ``left`` to ``right`` (through white when ``middle`` names the centre), and what the
    number means under it."""
    bar = f"linear-gradient(90deg, {left}, #ffffff, {right})" if middle else f"linear-gradient(90deg, {left}, {right})"
    centre = f"<span>{html.escape(middle)}</span>" if middle else ""
    return (
        '<div class="acpo-legend" style="display:flex; align-items:center; gap:8px; font: 12px system-ui, '
        'sans-serif; color:#57606a; margin: 6px 0 2px 0; flex-wrap: wrap;">'
        f"<span>{html.escape(low)}</span>"
        f'<span style="display:inline-block; width:160px; height:10px; border-radius:5px; '
        f'border:1px solid #d0d7de; background: {bar};"></span>'
        f"{centre}<span>{html.escape(high)}</span>"
        + (f'<span class="acpo-meaning" style="flex-basis:100%;">{html.escape(meaning)}</span>' if meaning else "")
        + "</div>"
    )


@dataclass(frozen=True)
class ColourScale:
    """How credits become colours: ``signed`` credits on the diverging blue/red map, centred at 0,
    others on a sequential map by magnitude; ``top`` is the magnitude drawn at full colour."""

    signed: bool
    top: float
    unit: str = ""
    label: str = "credit"
    meaning: str = ""  # what the number says (the credit method's ``meaning``), printed under the bar
    ends: tuple[str, str] = ("blame", "credit")  # what the red and the blue end of a signed scale mean

    def weight(self, value: float) -> float:
        """Signed: value / top in [-1, 1]. Sequential: |value| / top in [0, 1]. NaN counts as 0."""
        v = 0.0 if value is None or math.isnan(float(value)) else float(value)
        if self.top == 0:
            return 0.0
        w = v / self.top if self.signed else abs(v) / self.top
        return max(-1.0, min(1.0, w))

    def colour(self, value: float) -> str:
        w = self.weight(value)
        return credit_color(w) if self.signed else sequential_color(w)

    def legend(self, negative: bool = True) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.signed:
            return _legend(f"−{self.top:.3g}{unit} ({self.ends[0]})", f"+{self.top:.3g}{unit} ({self.ends[1]})",
                           credit_color(-1.0), credit_color(1.0), middle="0", meaning=self.meaning)
        far = f"{'−' if negative and self.top else ''}{self.top:.3g}{unit}"
        return _legend(f"{self.label} 0", far, sequential_color(0.0), sequential_color(1.0), meaning=self.meaning)


def credit_scale(credit_column: str, values: Sequence[float], top: float | None = None) -> ColourScale:
    """The colour scale of a credit column: signed or not, and its unit, from the registered method;
    ``top`` defaults to the largest magnitude in ``values`` (pass one value to share a scale)."""
    from acpo.credit import CREDIT_METHODS

    method = CREDIT_METHODS.get(credit_column.removeprefix("credit_"))
    clean = [abs(float(v)) for v in values if v is not None and not math.isnan(float(v))]
    top = max(clean, default=0.0) if top is None else float(top)
    return ColourScale(getattr(method, "signed", True), top, getattr(method, "unit", ""), credit_column,
                       getattr(method, "meaning", ""))


def _prompt_block(prompt: str | None) -> str:
    if not prompt:
        return ""
    return (
        f'<div style="{_BOX} background:#f6f8fa; color:#57606a; margin-bottom:6px; line-height:1.6;">'
        f"{html.escape(prompt)}</div>"
    )


def _step_number(step: int) -> str:
    return (f'<span class="acpo-stepno" style="{_BADGE} background:#eaeef2; color:#57606a; margin-left:0;">'
            f"{step}</span>")


_ERROR_BADGE = f'<span style="{_BADGE} background:#cf222e; color:#fff;">✗ first error</span>'
_LOWEST_BADGE = f'<span style="{_BADGE} background:#24292f; color:#fff;">▼ lowest credit</span>'


def step_heatmap_html(
    frame: pd.DataFrame,
    credit_column: str,
    prompt: str | None = None,
    first_error_step: int | None = None,
    title: str | None = None,
    top: float | None = None,
    scale: ColourScale | None = None,
) -> str:
    """The completion, each step coloured by its credit and numbered; hover shows the numbers.

    ``frame`` has one row per step with ``step``, ``text`` and ``credit_column``
    (``Trace.to_frame()`` or the rows of a run's traces parquet); ``n_tokens``,
    ``entropy_mean`` and ``entropy_max`` are shown on hover when present.
    Signed credits use the diverging map, one-sided scores (``mean_logprob``,
    ``entropy_mask``) a sequential one; ``top`` fixes the magnitude drawn at
    full colour (Compare shares one across panels), the legend prints it;
    ``scale`` replaces the whole scale (a difference map's own ends and meaning).
    ``first_error_step`` (the checker's ground truth) gets a dashed outline and
    a badge; the lowest-credit step gets a badge too, so the two can be compared.
    """
    if credit_column not in frame.columns:
        raise ValueError(f"the step table has no column {credit_column!r}; columns: {list(frame.columns)}")
    frame = frame.sort_values("step")
    raw = [float(v) for v in frame[credit_column]]
    scale = scale or credit_scale(credit_column, raw, top)
    lowest = blamed_step([int(s) for s in frame["step"]], raw)
    parts = []
    for (_, row), value in zip(frame.iterrows(), raw):
        step = int(row["step"])
        w = scale.weight(value)
        tip = [f"step {step}", f"{credit_column} {_fmt(value)}"]
        if "entropy_mean" in row:
            top_e = float(row.get("entropy_max", float("nan")))
            tip.append(f"entropy mean {float(row['entropy_mean']):.3f}, max {top_e:.3f}")
        if "n_tokens" in row:
            tip.append(f"{int(row['n_tokens'])} tokens")
        if "answer_logprob" in row and pd.notna(row["answer_logprob"]):
            tip.append(f"log p(answer | steps 0..{step}) {float(row['answer_logprob']):.3f}")
        style = f"background:{scale.colour(value)}; color:{_text_color(w)}; {_SPAN}"
        badges = ""
        if step == first_error_step:
            style += " outline: 2px dashed #cf222e; outline-offset: 1px;"
            tip.append("checker: first wrong step")
            badges += _ERROR_BADGE
        if step == lowest:
            badges += _LOWEST_BADGE
        text = str(row["text"])
        tail = ""
        if text.endswith("\n"):  # keep the badge on the step's own line
            text, tail = text[:-1], "\n"
        parts.append(
            f'{_step_number(step)}<span class="acpo-step" data-step="{step}" data-credit="{value:.6g}" '
            f'title="{html.escape(" · ".join(tip))}" style="{style}">{html.escape(text)}</span>{badges}{tail}'
        )
    head = ""
    if title:
        head = (f'<div class="acpo-title" title="{html.escape(title)}" style="font: 600 13px system-ui, sans-serif; '
                f'margin: 4px 0;">{html.escape(title)}</div>')
    negative = bool(raw) and max(raw) <= 0
    return (
        f'<div class="acpo-heatmap" data-scale="{scale.top:.6g}" data-signed="{str(scale.signed).lower()}">'
        f'{head}{_prompt_block(prompt)}<div style="{_BOX}">{"".join(parts)}</div>{scale.legend(negative)}</div>'
    )


def token_heatmap_html(
    tokens: Sequence[str],
    values: Sequence[float],
    kind: str = "entropy",
    step_starts: Sequence[int] = (),
    prompt: str | None = None,
    error_step: int | None = None,
    lowest_step: int | None = None,
    unit: str = "",
) -> str:
    """One span per token: ``kind="entropy"`` on the sequential scale (0..max nats),
    ``kind="advantage"`` on the diverging scale (±max). Each step starts with its
    number; the checker's first wrong step is underlined, the lowest-credit step badged."""
    if len(tokens) != len(values):
        raise ValueError(f"got {len(values)} values for {len(tokens)} tokens")
    vals = [float(v) for v in values]
    if kind == "entropy":
        scale = ColourScale(False, max(vals, default=0.0), "nats", "entropy")
        colours = [entropy_color(scale.weight(v)) for v in vals]
        legend = _legend("entropy 0", f"{scale.top:.3g} nats", entropy_color(0.0), entropy_color(1.0))
    elif kind == "advantage":
        scale = ColourScale(True, max((abs(v) for v in vals), default=0.0), unit or "advantage")
        colours = [scale.colour(v) for v in vals]
        legend = scale.legend()
    else:
        raise ValueError(f"unknown token view {kind!r}; valid: entropy, advantage")
    starts = sorted(set(step_starts) | ({0} if step_starts else set()))
    step_of = {start: k for k, start in enumerate(starts)}
    current = None
    parts = []
    for j, (tok, v, c) in enumerate(zip(tokens, vals, colours)):
        w = scale.weight(v)
        if j in step_of:
            current = step_of[j]
            parts.append(_step_number(current))
            if current == error_step:
                parts.append(_ERROR_BADGE)
            if current == lowest_step:
                parts.append(_LOWEST_BADGE)
        bar = "border-left: 2px solid #57606a;" if j in step_of and j > 0 else ""
        mark = " text-decoration: underline wavy #cf222e;" if current is not None and current == error_step else ""
        tip = html.escape(f"token {j} {tok!r} · {kind} {v:+.3f}" + (f" · step {current}" if current is not None else ""))
        parts.append(
            f'<span title="{tip}" style="background:{c}; color:{_text_color(w)}; {_MONO} {bar}{mark}">'
            f"{html.escape(tok)}</span>"
        )
    return (f'<div class="acpo-heatmap" data-scale="{scale.top:.6g}">{_prompt_block(prompt)}'
            f'<div style="{_BOX}">{"".join(parts)}</div>{legend}</div>')


def message_html(text: str, kind: str = "info") -> str:
    """A boxed note in place of a heatmap (nothing to show yet, or what went wrong)."""
    colour = {"info": "#57606a", "error": "#cf222e"}.get(kind, "#57606a")
    return (f'<div class="acpo-message" style="{_BOX} color:{colour}; font-family: system-ui, sans-serif;">'
            f"{html.escape(text)}</div>")


VIEWS = ("steps", "entropy", "advantage")


def trace_html(trace, method: str | None = None, view: str = "steps", first_error_step: int | None = None,
               top: float | None = None) -> str:
    """A ``Trace`` as HTML: its steps coloured by ``method``'s credit (``view="steps"``, ``top`` at full colour,
    default the largest), or one span per token coloured by entropy or by the method's token advantage."""
    method = method or trace.methods[0]
    starts = [s.token_start for s in trace.steps]
    lowest = blamed_step([s.index for s in trace.steps], trace.credits[method].tolist())
    if view == "entropy":
        return token_heatmap_html(trace.tokens, trace.entropies.tolist(), "entropy", starts, trace.prompt,
                                  first_error_step, lowest)
    if view == "advantage":
        return token_heatmap_html(trace.tokens, trace.token_advantages[method].tolist(), "advantage", starts,
                                  trace.prompt, first_error_step, lowest)
    if view != "steps":
        raise ValueError(f"unknown view {view!r}; valid: {', '.join(VIEWS)}")
    return step_heatmap_html(trace.to_frame(), f"credit_{method}", trace.prompt, first_error_step, top=top)
