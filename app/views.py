"""View builders: step tables and Plotly figures from the core's numbers.

Everything here is presentation. The numbers come from ``acpo`` (a ``Trace``,
its ``to_frame()``, a run's ``metrics.jsonl``); these functions only order
columns and lay out figures, so they are pure and testable without a server
or a model. Heatmap HTML lives in the core (``acpo.render``), so a notebook
and the app draw the same picture.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from acpo.render import credit_color
from acpo.verdict import blamed_step, hit_mark, hit_or_miss  # noqa: F401  (the app's verdicts)

TOP_FRACTION = 0.3  # share of steps shaded as "top attribution" (METHODS.md §5's f)

# The step table: these columns first (when present), then every other column of Trace.to_frame().
LEADING_COLUMNS = ["step", "text", "n_tokens", "entropy_mean", "entropy_max"]
TRAILING_LEADERS = ["credit_info_gain", "answer_logprob", "reward"]


# --- the step table --------------------------------------------------------------


def step_table(frame: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """``Trace.to_frame()`` with the columns a reader wants first; no value is changed.

    Order: step, the chosen method's credit (beside the step, so a long step's
    text never pushes it off screen), text, tokens, mean/max entropy, the other
    credits, information gain (``credit_info_gain``) and ACPO's v_k
    (``answer_logprob``), reward, then every other column (spans, ids, token
    advantages).
    """
    leaders = list(LEADING_COLUMNS)
    if method is not None:
        leaders.insert(1, f"credit_{method}")
    leaders += [c for c in frame.columns if c.startswith("credit_")]
    leaders += TRAILING_LEADERS
    order = []
    for c in leaders:
        if c in frame.columns and c not in order:
            order.append(c)
    order += [c for c in frame.columns if c not in order]
    return frame[order]


HIDDEN_COLUMNS = ["run", "checkpoint", "prompt_id", "completion_id", "token_start", "token_end", "char_start",
                  "char_end"]


def hide_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The table on screen without span and id columns (the CSV download keeps them)."""
    return frame.drop(columns=[c for c in HIDDEN_COLUMNS if c in frame.columns])


def display_table(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The table as shown on screen: floats to ``digits`` significant digits (the CSV keeps them all)."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [float(f"{v:.{digits}g}") if pd.notna(v) else v for v in out[col]]
    return out


def top_steps(credits: Sequence[float], fraction: float = TOP_FRACTION) -> list[int]:
    """Indices of the ``ceil(fraction * K)`` steps with the largest |credit| (none if all are 0)."""
    if not credits or all(float(c) == 0.0 for c in credits):
        return []
    k = max(1, math.ceil(fraction * len(credits)))
    ranked = sorted(range(len(credits)), key=lambda i: -abs(float(credits[i])))
    return sorted(ranked[:k])


# --- figures --------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=14)),
        template="plotly_white",
        height=height,
        margin=dict(l=50, r=20, t=50, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
        hovermode="x unified",
    )
    return fig


def entropy_figure(
    entropies: Sequence[float],
    tokens: Sequence[str],
    frame: pd.DataFrame,
    credit_column: str | None = None,
    fraction: float = TOP_FRACTION,
) -> go.Figure:
    """Per-token entropy along the completion; step boundaries as dashed lines;
    the top-|credit| steps shaded (blue for credit, red for blame)."""
    x = list(range(len(entropies)))
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=[float(e) for e in entropies],
            mode="lines+markers",
            marker=dict(size=4),
            line=dict(color="#e66e00", width=1.5),
            name="entropy (nats)",
            customdata=[repr(t) for t in tokens],
            hovertemplate="token %{x} %{customdata}<br>entropy %{y:.3f}<extra></extra>",
        )
    )
    for start in frame["token_start"].iloc[1:]:
        fig.add_vline(x=float(start) - 0.5, line=dict(color="#8c959f", width=1, dash="dot"))
    if credit_column is not None and credit_column in frame.columns:
        credits = [float(c) for c in frame[credit_column]]
        for i in top_steps(credits, fraction):
            row = frame.iloc[i]
            fig.add_vrect(
                x0=float(row["token_start"]) - 0.5,
                x1=float(row["token_end"]) - 0.5,
                fillcolor=credit_color(1.0 if credits[i] >= 0 else -1.0),
                opacity=0.12,
                line_width=0,
                layer="below",
            )
    fig.update_xaxes(title_text="token")
    fig.update_yaxes(title_text="entropy (nats)", rangemode="tozero")
    shaded = f"; shaded: top {fraction:.0%} steps by |{credit_column}|" if credit_column else ""
    return _layout(fig, f"Entropy per token (dotted: step boundaries{shaded})")


def resample_figure(frame: pd.DataFrame, reward: float | None) -> go.Figure:
    """The resampling credit's per-boundary values: the accuracy of continuations resampled from the start of
    each step (step 0: the prompt alone), then the completion's own reward at its end (Thought Anchors' curve);
    each step's credit is the rise from its point to the next."""
    steps = frame["step"].tolist()
    xs = [f"before step {k}" for k in steps] + ["end (its reward)"]
    ys = frame["resample_accuracy"].tolist() + [reward]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name="accuracy if resampled from here",
                               hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
    fig.update_yaxes(range=[-0.05, 1.05], title="accuracy of the continuations")
    return _layout(fig, "Accuracy if resampled from here (mc_reset)", height=280)


def compare_figure(frames: Mapping[str, pd.DataFrame], credit_column: str) -> go.Figure:
    """Per-step credit and mean entropy under each checkpoint, and the credit difference
    (each checkpoint minus the first)."""
    labels = list(frames)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            f"{credit_column} per step",
            f"difference vs {labels[0]}" if labels else "difference",
            "mean entropy per step",
        ),
    )
    palette = ["#2166ac", "#e66e00", "#1a7f37", "#8250df", "#cf222e", "#57606a"]
    base = frames[labels[0]].set_index("step") if labels else None
    for i, label in enumerate(labels):
        f = frames[label].sort_values("step")
        colour = palette[i % len(palette)]
        fig.add_trace(go.Bar(x=f["step"], y=f[credit_column], name=label, marker_color=colour, legendgroup=label), 1, 1)
        if i > 0:
            diff = f.set_index("step")[credit_column] - base[credit_column]
            fig.add_trace(
                go.Bar(x=diff.index, y=diff.values, name=f"{label} - {labels[0]}", marker_color=colour,
                       legendgroup=label, showlegend=False),
                2,
                1,
            )
        fig.add_trace(
            go.Scatter(x=f["step"], y=f["entropy_mean"], mode="lines+markers", name=label, line=dict(color=colour),
                       legendgroup=label, showlegend=False),
            3,
            1,
        )
    fig.update_xaxes(title_text="step", dtick=1, row=3, col=1)
    fig.update_layout(barmode="group")
    return _layout(fig, "Checkpoints compared", height=620)


def compare_table(frames: Mapping[str, pd.DataFrame], credit_column: str) -> pd.DataFrame:
    """One row per step: its text, then credit and mean entropy under each checkpoint."""
    labels = list(frames)
    first = frames[labels[0]].sort_values("step")
    out = first[["step", "text"]].reset_index(drop=True)
    for label in labels:
        f = frames[label].sort_values("step").reset_index(drop=True)
        out[f"{credit_column} @ {label}"] = f[credit_column]
        out[f"entropy_mean @ {label}"] = f["entropy_mean"]
    for label in labels[1:]:
        out[f"diff {label} - {labels[0]}"] = out[f"{credit_column} @ {label}"] - out[f"{credit_column} @ {labels[0]}"]
    return out


# --- runs -------------------------------------------------------------------------

RUN_PANELS = [
    ("reward and pass@1", ["reward", "eval/pass@1"]),
    ("entropy (nats)", ["entropy"]),
    ("KL to reference", ["kl"]),
    ("step credit", ["credit/mean", "credit/std"]),
    ("clip ratio", ["clip_ratio/low_mean", "clip_ratio/high_mean"]),
    ("loss", ["loss"]),
    ("zero-std groups", ["frac_reward_zero_std"]),
]
HAPO_KEYS = ["hapo/pos_high", "hapo/pos_low", "hapo/neg_high", "hapo/neg_low"]


def stage_switch_step(metrics: pd.DataFrame) -> int | None:
    """The first step logged in stage 2, or None (no stage column or never switched)."""
    if "stage" not in metrics.columns or "step" not in metrics.columns:
        return None
    stage2 = metrics.loc[pd.to_numeric(metrics["stage"], errors="coerce") >= 2, "step"]
    return None if stage2.empty else int(stage2.min())


def run_figure(metrics: pd.DataFrame, title: str = "Training run") -> go.Figure:
    """One panel per metric group that the run logged (missing keys are skipped);
    the stage-1 -> stage-2 switch as a vertical line on every panel."""
    if "step" not in metrics.columns or metrics.empty:
        fig = go.Figure()
        fig.add_annotation(text="no metrics logged yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return _layout(fig, title, height=200)
    logged = [k for k in metrics.columns if metrics[k].notna().any()]
    panels = [(name, [k for k in keys if k in logged]) for name, keys in RUN_PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    cols = 2
    rows = max(1, math.ceil(len(panels) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels], shared_xaxes="all",
                        vertical_spacing=min(0.3 / rows, 0.12), horizontal_spacing=0.08)
    switch = stage_switch_step(metrics)
    for i, (name, keys) in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        for key in keys:
            sub = metrics[["step", key]].dropna()
            fig.add_trace(go.Scatter(x=sub["step"], y=sub[key], mode="lines+markers" if len(sub) < 40 else "lines",
                                     name=key, marker=dict(size=5)), r, c)
        if switch is not None:
            fig.add_vline(x=switch, line=dict(color="#cf222e", width=1, dash="dash"), row=r, col=c)
    fig.update_xaxes(title_text="step", row=rows, col=1)
    fig.update_xaxes(title_text="step", row=rows, col=2)
    note = f" (dashed: stage 2 from step {switch})" if switch is not None else ""
    _layout(fig, title + note, height=230 * rows + 140)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.35 / rows, xanchor="left", x=0),
                      margin=dict(l=50, r=20, t=60, b=90))
    return fig


def hapo_figure(metrics: pd.DataFrame) -> go.Figure | None:
    """HAPO's four-quadrant shares of gradient mass over steps (stacked), or None when not logged."""
    keys = [k for k in HAPO_KEYS if k in metrics.columns and metrics[k].notna().any()]
    if not keys or "step" not in metrics.columns:
        return None
    colours = dict(zip(HAPO_KEYS, ["#2166ac", "#92c5de", "#b2182b", "#f4a582"]))
    fig = go.Figure()
    for key in keys:
        sub = metrics[["step", key]].dropna()
        fig.add_trace(go.Scatter(x=sub["step"], y=sub[key], name=key.split("/", 1)[1], stackgroup="q",
                                 line=dict(color=colours[key])))
    fig.update_yaxes(title_text="share of sum |A_t|", range=[0, 1])
    fig.update_xaxes(title_text="step")
    return _layout(fig, "HAPO quadrants: (advantage sign) x (entropy above/below median)")


def run_traces_summary(traces: pd.DataFrame, credit_column: str | None) -> pd.DataFrame:
    """One row per completion of a run's traces file: ids, reward, steps, the checker's
    first wrong step and the step with the lowest credit."""
    keys = [k for k in ("prompt_id", "completion_id") if k in traces.columns]
    rows = []
    for key, group in traces.groupby(keys, sort=False) if keys else [((), traces)]:
        group = group.sort_values("step")
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["reward"] = group["reward"].iloc[0] if "reward" in group else None
        row["steps"] = len(group)
        error = None
        if "first_error_step" in group and pd.notna(group["first_error_step"].iloc[0]):
            error = int(group["first_error_step"].iloc[0])
            row["first_error_step"] = error if error >= 0 else None
            error = row["first_error_step"]
        if credit_column and credit_column in group:
            blamed = blamed_step(group["step"].astype(int).tolist(), group[credit_column].astype(float).tolist())
            row["lowest_credit_step"] = blamed
            if "first_error_step" in group:
                row["found"] = hit_mark(blamed, error)
        if "prompt" in group:
            row["prompt"] = str(group["prompt"].iloc[0]).strip()
        rows.append(row)
    return pd.DataFrame(rows)


# --- batches ----------------------------------------------------------------------


def batch_rows(rollouts: pd.DataFrame, traces, errors, methods) -> pd.DataFrame:
    """One row per completion: ids, reward, steps, the checker's first wrong step, and per method
    the lowest-credit step and ✓/✗ (did it blame the first wrong step)."""
    rows = []
    for (r, trace, error) in zip(rollouts.itertuples(), traces, errors):
        row = {"row": r.Index, "prompt_id": r.prompt_id, "completion_id": r.completion_id, "reward": trace.reward,
               "steps": len(trace.steps), "first_wrong_step": error}
        for m in methods:
            blamed = blamed_step([s.index for s in trace.steps], trace.credits[m].tolist())
            row[f"lowest {m}"] = blamed
            row[f"found {m}"] = hit_mark(blamed, error)
        rows.append(row)
    return pd.DataFrame(rows)



def credit_histogram(table: pd.DataFrame, credit_column: str) -> go.Figure:
    """Distribution of per-step credits, split by outcome reward when it is known."""
    fig = go.Figure()
    if "reward" in table.columns and table["reward"].notna().any():
        for label, sel, colour in (
            ("reward > 0", table["reward"].astype(float) > 0, "#2166ac"),
            ("reward = 0", table["reward"].astype(float) <= 0, "#b2182b"),
            ("reward unknown", table["reward"].isna(), "#8c959f"),
        ):
            values = table.loc[sel, credit_column]
            if len(values):
                fig.add_trace(go.Histogram(x=values, name=f"{label} ({len(values)} steps)", marker_color=colour,
                                           opacity=0.65, nbinsx=40))
    else:
        fig.add_trace(go.Histogram(x=table[credit_column], name="all steps", marker_color="#2166ac", nbinsx=40))
    fig.update_layout(barmode="overlay", hovermode="closest")
    fig.update_xaxes(title_text=credit_column)
    fig.update_yaxes(title_text="steps")
    return _layout(fig, f"Distribution of {credit_column} over all steps")


# --- verdicts ---------------------------------------------------------------------

_MD_SPECIAL = {c: f"&#{ord(c)};" for c in "\\`*_{}[]()<>#+-.!|~&\"'"}


def md_escape(text: str) -> str:
    """Text shown literally inside Markdown/HTML: every markup character as an HTML entity."""
    return "".join(_MD_SPECIAL.get(c, c) for c in str(text))


