"""The report of an RL comparison (`bench/rl_compare.py`): statistics, tables and figures from run folders.

Reads each run's metrics.jsonl and reports: held-out pass@1 curves (greedy and
sampled, 95% t-interval over seeds) against rollout tokens ("per rollout") and
against cumulative training seconds, the sum of `time_s`, which includes probe
forwards and reset continuations but not evaluation ("per compute"); final
pass@1 per method; the rollout tokens each method needs to reach GRPO's final
greedy pass@1; entropy at the start and the end; ACPO's stage switch; each
method minus grpo paired by seed. While runs are unfinished it prints what is
done so far, marked partial.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.rl_runs import ORDER, logged_step, read_sessions, run_name, saved_step, session_summary, split_run_name

COLLAPSE_RATIO = 0.5  # entropy "collapsed" when its end value is below this fraction of its start value
SMOOTH_STEPS = 5  # entropy: mean of the first / last this many steps, and the curves' rolling window


# ---------------------------------------------------------------------------------------------- statistics

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (beyond: the normal 1.96).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


# One-sided 80% Student-t quantiles t_{0.80, df}, df = 1..30 (beyond: the normal 0.8416), for the power below.
T80 = [1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868, 0.866,
       0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854]


def detectable_difference(values) -> float:
    """The smallest mean paired difference a two-sided 5% paired t-test detects with 80% power, given the spread
    of the observed per-seed differences: (t_{0.975, n-1} + t_{0.80, n-1}) * sd / sqrt(n) (the usual
    approximation); NaN for n < 2.

    >>> round(detectable_difference([0.0, 0.1, 0.2, 0.1, 0.0, 0.1, 0.2, 0.1, 0.0, 0.2]), 4)  # n 10, sd 0.0816
    0.0812
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) < 2:
        return math.nan
    df = len(x) - 1
    t = (T975[df - 1] if df <= len(T975) else 1.96) + (T80[df - 1] if df <= len(T80) else 0.8416)
    return t * float(x.std(ddof=1)) / math.sqrt(len(x))


def t_interval(values) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds: mean -/+ t_{0.975, n-1} * sd / sqrt(n); NaN bounds for n < 2.

    >>> [round(v, 4) for v in t_interval([0.5, 0.6, 0.7])]  # sd 0.1, t 4.303: half-width 0.2484
    [0.6, 0.3516, 0.8484]
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, math.nan, math.nan)
    half = (T975[len(x) - 2] if len(x) - 1 <= len(T975) else 1.96) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (mean, mean - half, mean + half)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a frame, with `seconds`: cumulative training seconds (sum of time_s)."""
    from acpo.runs import read_metrics as read_rows

    path = Path(run_dir) / "metrics.jsonl"
    rows = read_rows(path)  # a torn last line (a kill, a full disk) is skipped
    if not rows:
        raise ValueError(f"'{path}' has no rows")
    df = pd.DataFrame(rows)
    for col in ("time_s", "eval/pass@1", "eval/pass@1_sampled", "entropy", "stage", "rollout_tokens",
                "credit_rollout_tokens"):
        if col not in df:
            df[col] = np.nan
    df["seconds"] = df["time_s"].fillna(0.0).cumsum()
    return df


def eval_points(df: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows: step, rollout_tokens, seconds, greedy and sampled pass@1."""
    ev = df[df["eval/pass@1"].notna()]
    return ev[["step", "rollout_tokens", "seconds", "eval/pass@1", "eval/pass@1_sampled"]].reset_index(drop=True)


def first_reaching(points: pd.DataFrame, target: float, x: str = "rollout_tokens",
                   metric: str = "eval/pass@1") -> float | None:
    """`x` at the first evaluation whose `metric` (greedy pass@1 by default) is at or above `target`; None when
    none is."""
    hit = points[points[metric] >= target - 1e-12]
    return None if hit.empty else float(hit[x].iloc[0])


def switch_step(df: pd.DataFrame) -> tuple[int, float] | None:
    """(step, rollout tokens) after which the run entered stage 2; None when it never did.

    The trainer logs a step's stage before its evaluation decides the switch, so
    the switch happened after the last stage-1 row that precedes the first stage-2 row.
    """
    stage = df["stage"].to_numpy()
    later = np.flatnonzero(stage == 2)
    if len(later) == 0 or later[0] == 0:
        return None
    row = df.iloc[later[0] - 1]
    return int(row["step"]), float(row["rollout_tokens"])


def entropy_ends(df: pd.DataFrame, k: int = SMOOTH_STEPS) -> tuple[float, float]:
    """Mean entropy of the first and of the last `k` training steps."""
    ent = df["entropy"].dropna().to_numpy()
    if len(ent) == 0:
        return (math.nan, math.nan)
    return float(ent[:k].mean()), float(ent[-k:].mean())


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds' (x, y) curves, on every seed's x up to the shortest seed's last x.

    Each seed is linearly interpolated between its own points, so with one seed the line is its evaluations.
    """
    curves = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not curves:
        return pd.DataFrame(columns=["x", "mean", "lo", "hi", "n"])
    end = min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x[x <= end] for x, _ in curves]))
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    stats = [t_interval(ys[:, j]) for j in range(len(grid))]
    return pd.DataFrame({"x": grid, "mean": [s[0] for s in stats], "lo": [s[1] for s in stats],
                         "hi": [s[2] for s in stats], "n": len(curves)})


# ---------------------------------------------------------------------------------------------- report


def load_runs(runs_dir: Path) -> dict[tuple[str, int], pd.DataFrame]:
    """Finished runs (summary.json present) by (variant, seed); unfinished ones are named on stderr."""
    runs = {}
    for d in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).exists() else []:
        if not (d / "metrics.jsonl").exists():
            continue
        if not (d / "summary.json").exists():
            print(f"skipping unfinished run {d.name} (no summary.json)", file=sys.stderr)
            continue
        try:
            key = split_run_name(d.name)
        except ValueError as err:
            print(f"skipping {d}: {err}", file=sys.stderr)
            continue
        runs[key] = read_metrics(d)
    return runs


def run_table(runs: dict[tuple[str, int], pd.DataFrame], target_sampled: float | None = None) -> pd.DataFrame:
    """One row per run (rl_compare.csv), with tokens/seconds to GRPO's mean final greedy pass@1, and with
    `target_sampled` the rollout tokens to that sampled pass@1 (NaN: not reached)."""
    rows = []
    for (variant, seed), df in runs.items():
        ev = eval_points(df)
        sw = switch_step(df)
        e0, e1 = entropy_ends(df)
        rows.append({
            "method": variant, "seed": seed, "final_greedy": float(ev["eval/pass@1"].iloc[-1]),
            "final_sampled": float(ev["eval/pass@1_sampled"].iloc[-1]),
            "start_greedy": float(ev["eval/pass@1"].iloc[0]), "start_sampled": float(ev["eval/pass@1_sampled"].iloc[0]),
            "steps": int(df["step"].max()), "rollout_tokens": float(df["rollout_tokens"].max()),
            "seconds": float(df["seconds"].iloc[-1]), "entropy_start": e0, "entropy_end": e1,
            "credit_rollout_tokens": float(df["credit_rollout_tokens"].fillna(0.0).sum()),
            "tokens_to_target_sampled": reach_or_nan(ev, target_sampled),
            "switch_step": None if sw is None else sw[0], "switch_tokens": None if sw is None else sw[1],
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["order"] = [ORDER.index(m) if m in ORDER else len(ORDER) for m in table["method"]]
    table = table.sort_values(["order", "method", "seed"]).drop(columns="order").reset_index(drop=True)
    target = grpo_target(table)
    reach = [(first_reaching(eval_points(runs[(m, s)]), target), first_reaching(eval_points(runs[(m, s)]), target,
                                                                               "seconds"))
             if not math.isnan(target) else (None, None) for m, s in zip(table["method"], table["seed"])]
    table["tokens_to_grpo_final"] = [r[0] for r in reach]
    table["seconds_to_grpo_final"] = [r[1] for r in reach]
    return table


def reach_or_nan(points: pd.DataFrame, target_sampled: float | None) -> float:
    """Rollout tokens to `target_sampled` sampled pass@1, NaN when not reached (or no target)."""
    hit = None if target_sampled is None else first_reaching(points, target_sampled, metric="eval/pass@1_sampled")
    return math.nan if hit is None else hit


def paired_tables(table: pd.DataFrame, target_sampled: float | None) -> dict[str, list[dict]]:
    """Each method against grpo, paired by seed: the per-seed differences of final greedy and sampled pass@1 and
    of rollout tokens to `target_sampled` (a seed that never reaches it counts its whole budget: a lower bound
    on what it needs), each with its 95% t-interval and the smallest difference the seeds could detect (80%
    power); and the rollout tokens to the target per method, with and without a credit's own sampling."""
    t = table.copy()
    t["tokens_to_target_or_budget"] = t["tokens_to_target_sampled"].fillna(t["rollout_tokens"])
    grpo = t[t["method"] == "grpo"].set_index("seed")
    paired, reach = [], []
    for method, g in t.groupby("method", sort=False):
        hits = g["tokens_to_target_sampled"].notna()
        reach.append({"method": method, "seeds": len(g), "reached": f"{int(hits.sum())}/{len(g)}",
                      "tokens to target [95% CI]": fmt_ci(g["tokens_to_target_or_budget"], kilo),
                      "per seed": ", ".join(kilo(v) if not pd.isna(v) else "not reached"
                                            for v in g["tokens_to_target_sampled"]),
                      "rollout tokens": kilo(g["rollout_tokens"].mean()),
                      "credit's own sampled tokens": kilo(g["credit_rollout_tokens"].mean()),
                      "all sampled tokens": kilo((g["rollout_tokens"] + g["credit_rollout_tokens"]).mean())})
        if method == "grpo" or grpo.empty:
            continue
        g = g[g["seed"].isin(grpo.index)]
        row = {"method": method, "seeds paired": len(g)}
        for col, label in (("final_greedy", "greedy"), ("final_sampled", "sampled"),
                           ("tokens_to_target_or_budget", "tokens to target")):
            diff = [r[col] - grpo.loc[r["seed"], col] for _, r in g.iterrows()]
            row[f"Δ {label} [95% CI]"] = fmt_ci(diff, kilo if col.startswith("tokens") else lambda v: f"{v:+.3f}")
            mde = detectable_difference(diff)
            row[f"detectable Δ {label}"] = kilo(mde) if col.startswith("tokens") else f"{mde:.3f}"
        paired.append(row)
    if target_sampled is None:
        reach = []
    return {"paired": paired, "reach_sampled": reach}


def grpo_target(table: pd.DataFrame) -> float:
    """GRPO's final greedy pass@1, mean over its seeds (NaN without grpo runs)."""
    g = table.loc[table["method"] == "grpo", "final_greedy"]
    return float(g.mean()) if len(g) else math.nan


def curves_long(runs: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """rl_curves.csv: method, seed, step, rollout_tokens, seconds, metric, value (eval and per-step metrics)."""
    frames = []
    for (variant, seed), df in runs.items():
        for metric, col in (("pass@1", "eval/pass@1"), ("pass@1_sampled", "eval/pass@1_sampled"),
                            ("entropy", "entropy"), ("reward", "reward")):
            if col not in df:
                continue
            part = df[df[col].notna()][["step", "rollout_tokens", "seconds", col]].rename(columns={col: "value"})
            frames.append(part.assign(method=variant, seed=seed, metric=metric))
    if not frames:
        return pd.DataFrame(columns=["method", "seed", "step", "rollout_tokens", "seconds", "metric", "value"])
    return pd.concat(frames, ignore_index=True)[["method", "seed", "step", "rollout_tokens", "seconds", "metric",
                                                 "value"]]


def method_curves(long: pd.DataFrame, method: str, metric: str, x: str) -> pd.DataFrame:
    """Mean and 95% band over seeds of one metric against x ('rollout_tokens' or 'seconds')."""
    part = long[(long["method"] == method) & (long["metric"] == metric)]
    curves = []
    for _, g in part.groupby("seed"):
        g = g.sort_values("step")
        y = g["value"].to_numpy()
        if metric == "entropy":  # per-step entropy is noisy: a rolling mean before averaging seeds
            y = pd.Series(y).rolling(SMOOTH_STEPS, min_periods=1).mean().to_numpy()
        curves.append((g[x].to_numpy(), y))
    return mean_curve(curves)


def fmt_ci(values, fmt=lambda v: f"{v:.3f}") -> str:
    """Mean [95% t-interval] over seeds, each number written by ``fmt`` (``kilo`` for token counts)."""
    m, lo, hi = t_interval(values)
    if math.isnan(m):
        return "n/a"
    return fmt(m) if math.isnan(lo) else f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def markdown(rows: list[dict]) -> str:
    """A Markdown table (pastes into docs/BENCHMARKS.md)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def kilo(x: float | None) -> str:
    """Token counts for tables: 300, 12.5k; a dash for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.0f}" if abs(x) < 1000 else f"{x / 1000:.1f}k"


def summary_tables(table: pd.DataFrame) -> dict[str, list[dict]]:
    """The printed tables: final pass@1, tokens to GRPO's final, entropy, stage switch, ablations vs acpo."""
    target = grpo_target(table)
    final, reach, entropy, switch, ablation = [], [], [], [], []
    acpo = table[table["method"] == "acpo"].set_index("seed")
    for method, g in table.groupby("method", sort=False):
        seeds = ", ".join(f"{v:.3f}" for v in g["final_greedy"])
        final.append({"method": method, "seeds": len(g), "greedy pass@1 [95% CI]": fmt_ci(g["final_greedy"]),
                      "per seed": seeds, "sampled pass@1 [95% CI]": fmt_ci(g["final_sampled"]),
                      "per seed (sampled)": ", ".join(f"{v:.3f}" for v in g["final_sampled"]),
                      "start greedy / sampled": f"{g['start_greedy'].mean():.3f} / {g['start_sampled'].mean():.3f}",
                      "steps": f"{g['steps'].mean():.0f}", "tokens": kilo(g["rollout_tokens"].mean()),
                      "train s": f"{g['seconds'].mean():.0f}"})
        if not math.isnan(target):
            hits = g["tokens_to_grpo_final"].dropna()
            secs = g["seconds_to_grpo_final"].dropna()
            reach.append({"method": method,
                          "tokens to reach": (kilo(hits.mean()) if len(hits) == len(g)
                                              else f"not reached ({len(hits)}/{len(g)} seeds)" if len(hits) == 0
                                              else f"{kilo(hits.mean())} ({len(hits)}/{len(g)} seeds)"),
                          "per seed": ", ".join(kilo(v) if not pd.isna(v) else "not reached"
                                                for v in g["tokens_to_grpo_final"]),
                          "seconds to reach": f"{secs.mean():.0f}" if len(secs) else "—"})
        e0, e1 = g["entropy_start"].mean(), g["entropy_end"].mean()
        entropy.append({"method": method, "entropy start": f"{e0:.3f}", "entropy end": f"{e1:.3f}",
                        "end / start": f"{e1 / e0:.2f}" if e0 > 0 else "—",
                        "collapsed": "yes" if e0 > 0 and e1 < COLLAPSE_RATIO * e0 else "no"})
        if method == "acpo" or method.startswith("acpo-"):
            switch.append({"method": method,
                           "switch after step (per seed)": ", ".join("none" if pd.isna(v) else str(int(v))
                                                                     for v in g["switch_step"]),
                           "tokens at switch": ", ".join(kilo(v) if not pd.isna(v) else "—"
                                                         for v in g["switch_tokens"])})
        if method.startswith("acpo-") and len(acpo):
            paired = [row.final_greedy - acpo.loc[row.seed, "final_greedy"] for row in g.itertuples()
                      if row.seed in acpo.index]
            ablation.append({"variant": method, "greedy pass@1": fmt_ci(g["final_greedy"]),
                             "minus full acpo, paired by seed [95% CI]": fmt_ci(paired), "seeds paired": len(paired)})
    return {"final": final, "reach": reach, "entropy": entropy, "switch": switch, "ablation": ablation}


def shared_settings(runs_dir: Path, table: pd.DataFrame) -> str:
    """The hyper-parameters every run shared, read from one run's config.yaml."""
    import yaml

    if table.empty:
        return ""
    first = table.iloc[0]
    cfg = yaml.safe_load((Path(runs_dir) / run_name(first["method"], int(first["seed"])) / "config.yaml").read_text())
    keys = ("max_rollout_tokens", "lr", "prompts_per_step", "group_size", "max_new_tokens", "temperature",
            "eval_every", "eval_problems", "tasks")
    return ", ".join(f"{k} {cfg.get(k)}" for k in keys)


SUITE_FILES = {"methods": "rl_compare", "ablations": "rl_ablations"}


def figure_names(methods: list[str]) -> dict[str, list[str]]:
    """Which methods go in which figure: the methods, and the ablations with full acpo as reference."""
    abl = [m for m in methods if m.startswith("acpo-")]
    main = [m for m in methods if m not in abl]
    out = {}
    if main:
        out["methods"] = main
    if abl:
        out["ablations"] = (["acpo"] if "acpo" in methods else []) + abl
    return out


PANELS = [("pass@1", "rollout_tokens", "greedy pass@1 per rollout"),
          ("pass@1_sampled", "rollout_tokens", "sampled pass@1 per rollout"),
          ("entropy", "rollout_tokens", "entropy per rollout"),
          ("pass@1", "seconds", "greedy pass@1 per compute"),
          ("pass@1_sampled", "seconds", "sampled pass@1 per compute"),
          ("entropy", "seconds", "entropy per compute")]
X_TITLE = {"rollout_tokens": "sampled tokens (rollout budget)", "seconds": "training seconds (sum of time_s)"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def write_figures(long: pd.DataFrame, methods: list[str], path_stem: Path, suite: str) -> list[Path]:
    """A 2x3 Plotly HTML figure and a 2x2 PNG of the pass@1 panels (when matplotlib imports); the files written."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[2] for p in PANELS], horizontal_spacing=0.06,
                        vertical_spacing=0.12)
    curves = {}
    for i, m in enumerate(methods):
        color = COLORS[i % len(COLORS)]
        for j, (metric, x, _) in enumerate(PANELS):
            c = method_curves(long, m, metric, x)
            curves[(m, metric, x)] = c
            if c.empty:
                continue
            row, col = j // 3 + 1, j % 3 + 1
            if c["n"].iloc[0] > 1:
                fig.add_trace(go.Scatter(x=np.r_[c["x"], c["x"][::-1]], y=np.r_[c["hi"], c["lo"][::-1]],
                                         fill="toself", fillcolor=color, opacity=0.15, line={"width": 0},
                                         hoverinfo="skip", showlegend=False, legendgroup=m), row=row, col=col)
            fig.add_trace(go.Scatter(x=c["x"], y=c["mean"], mode="lines", line={"color": color}, name=m,
                                     legendgroup=m, showlegend=j == 0), row=row, col=col)
    for j, (metric, x, _) in enumerate(PANELS):
        fig.update_xaxes(title_text=X_TITLE[x], row=j // 3 + 1, col=j % 3 + 1)
        fig.update_yaxes(title_text="entropy (nats)" if metric == "entropy" else "held-out pass@1",
                         row=j // 3 + 1, col=j % 3 + 1)
    fig.update_layout(title=f"{suite}: held-out pass@1 and entropy at equal rollout budget (mean over seeds, "
                            "95% t-band)", height=800, width=1500)
    fig.write_html(path_stem.with_suffix(".html"), include_plotlyjs="cdn")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [path_stem.with_suffix(".html")]
    axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)[1]
    for ax, (metric, x, label) in zip(axes.flat, [p for p in PANELS if p[0] != "entropy"]):
        for i, m in enumerate(methods):
            c = curves[(m, metric, x)]
            if c.empty:
                continue
            ax.plot(c["x"], c["mean"], color=COLORS[i % len(COLORS)], label=m)
            if c["n"].iloc[0] > 1:
                ax.fill_between(c["x"], c["lo"], c["hi"], color=COLORS[i % len(COLORS)], alpha=0.15, linewidth=0)
        ax.set_title(label)
        ax.set_xlabel(X_TITLE[x])
        ax.set_ylabel("held-out pass@1")
    axes.flat[0].legend(fontsize=8)
    plt.suptitle(f"{suite}: held-out pass@1 at equal rollout budget (mean over seeds, 95% t-band)")
    plt.savefig(path_stem.with_suffix(".png"), dpi=120)
    plt.close("all")
    return [path_stem.with_suffix(".html"), path_stem.with_suffix(".png")]


def run_evals(run_dir: Path) -> dict[int, tuple[float, float]]:
    """{step: (greedy, sampled) held-out pass@1} of a run's evaluations so far (finished or not)."""
    if not (Path(run_dir) / "metrics.jsonl").exists():
        return {}
    try:
        ev = eval_points(read_metrics(run_dir))
    except ValueError:  # no rows yet
        return {}
    return {int(r.step): (float(r.greedy), float(r.sampled)) for r in
            ev.rename(columns={"eval/pass@1": "greedy", "eval/pass@1_sampled": "sampled"}).itertuples()}


def progress_rows(runs_dir: Path, names: list[str]) -> list[dict]:
    """One row per run: status, steps logged and checkpointed of its total, s/step, pass@1 at each evaluation."""
    from acpo.config import read_yaml

    rows = []
    for name in names:
        d = Path(runs_dir) / name
        if not (d / "config.yaml").exists():
            rows.append({"run": name, "status": "not started", "steps (logged / saved / total)": "0 / 0 / ?",
                         "s/step": "—", "eval s": "—", "held-out pass@1 greedy / sampled, by step": "—"})
            continue
        total = read_yaml(d / "config.yaml").get("steps", "?")
        finished = (d / "summary.json").exists()
        logged = logged_step(d)
        saved = logged if finished else saved_step(d)
        df = read_metrics(d) if logged else pd.DataFrame()
        step_s = df["time_s"].dropna() if "time_s" in df else pd.Series(dtype=float)
        eval_s = df["time/eval"].dropna() if "time/eval" in df else pd.Series(dtype=float)
        evals = "; ".join(f"{k}: {g:.3f} / {v:.3f}" for k, (g, v) in sorted(run_evals(d).items()))
        rows.append({"run": name, "status": "finished" if finished else "unfinished",
                     "steps (logged / saved / total)": f"{logged} / {saved} / {total}",
                     "s/step": f"{step_s.mean():.0f}" if len(step_s) else "—",
                     "eval s": f"{eval_s.mean():.0f}" if len(eval_s) else "—",
                     "held-out pass@1 greedy / sampled, by step": evals or "—"})
    return rows


def paired_rows(runs_dir: Path, names: list[str], baseline: str = "grpo") -> list[dict]:
    """Each variant minus `baseline` at each evaluation step both reached, paired by seed (same seed: same
    problems, same initial policy, same evaluation sample), with a 95% t-interval over seeds from 2 pairs on."""
    evals = {}
    for name in names:
        try:
            evals[split_run_name(name)] = run_evals(Path(runs_dir) / name)
        except ValueError:
            continue
    rows = []
    for variant in dict.fromkeys(v for v, _ in evals):
        if variant == baseline:
            continue
        seeds = sorted(s for v, s in evals if v == variant and (baseline, s) in evals)
        steps = sorted({k for s in seeds for k in evals[(variant, s)] if k in evals[(baseline, s)]})
        for k in steps:
            pairs = [(s, evals[(variant, s)][k], evals[(baseline, s)][k]) for s in seeds
                     if k in evals[(variant, s)] and k in evals[(baseline, s)]]
            greedy = [a[0] - b[0] for _, a, b in pairs]
            sampled = [a[1] - b[1] for _, a, b in pairs]
            rows.append({"difference": f"{variant} - {baseline}", "step": k, "seeds paired": len(pairs),
                         "greedy, per seed": ", ".join(f"s{s} {d:+.3f}" for (s, _, _), d in zip(pairs, greedy)),
                         "greedy mean [95% CI]": fmt_ci(greedy),
                         "sampled, per seed": ", ".join(f"s{s} {d:+.3f}" for (s, _, _), d in zip(pairs, sampled)),
                         "sampled mean [95% CI]": fmt_ci(sampled)})
    return rows


def print_progress(out: Path, names: list[str]) -> bool:
    """The sessions so far, each run's progress and the paired differences so far; True when the comparison is
    partial (a run of `names` has not finished)."""
    runs_dir = out / "runs"
    sessions = session_summary(read_sessions(out))
    if sessions:
        print(f"{len(sessions)} sessions so far (OUT/sessions.jsonl: one per invocation that trained; a session "
              "killed outright ends at its last heartbeat)\n" + markdown(sessions) + "\n")
    progress = progress_rows(runs_dir, names)
    done = sum(r["status"] == "finished" for r in progress)
    partial = done < len(progress)
    head = (f"PARTIAL RESULTS: {done} of {len(progress)} runs finished; every number below may still change"
            if partial else f"All {len(progress)} runs finished")
    print(f"{head}\nProgress (steps after the last checkpoint are redone on resume, with the same random "
          "stream)\n" + markdown(progress) + "\n")
    paired = paired_rows(runs_dir, names)
    if paired:
        print(("PARTIAL: " if partial else "") + "Paired by seed, held-out pass@1 differences at each evaluation "
              "step both runs reached (95% t-interval over seeds from 2 pairs on)\n" + markdown(paired) + "\n")
    return partial


def report(out: Path, expected: list[str] | None = None, target_sampled: float | None = None) -> pd.DataFrame:
    """Tables on stdout, rl_compare.csv, rl_curves.csv and the figures, from the runs in OUT/runs.

    `expected`: the runs the comparison is made of (default: the run folders there). While one of them has not
    finished, the report starts with what is done so far, marked partial, and the tables after it read only the
    finished runs. `target_sampled`: report the rollout tokens to that sampled pass@1.
    """
    runs_dir = out / "runs"
    if expected:
        names = expected
    else:
        names = [d.name for d in sorted(runs_dir.iterdir()) if (d / "config.yaml").exists()
                 or (d / "metrics.jsonl").exists()] if runs_dir.is_dir() else []
    if not names:
        raise SystemExit(f"rl_compare.py: no runs in '{runs_dir}'")
    partial = print_progress(out, names)
    runs = load_runs(runs_dir)
    if expected:
        runs = {k: v for k, v in runs.items() if run_name(*k) in expected}
    if not runs:
        print("No run has finished yet: no final tables.")
        return pd.DataFrame()
    if partial:
        print("PARTIAL: the tables below read only the finished runs.\n")
    table = run_table(runs, target_sampled)
    long = curves_long(runs)
    table.to_csv(out / "rl_compare.csv", index=False)
    long.to_csv(out / "rl_curves.csv", index=False)
    tables = summary_tables(table)
    seeds = sorted(set(table["seed"]))
    print(f"RL comparison at equal rollout budget: {len(table)} runs, seeds {seeds}; "
          f"{shared_settings(out / 'runs', table)}")
    print("Per compute: seconds are the sum of each run's time_s (rollouts, probe forwards, reset continuations, "
          "optimizer; not evaluation), every run single-threaded; comparable within one bench run only.")
    print("Bands and [CI]: 95% t-interval over seeds (curves: each seed linearly interpolated between its "
          "evaluations, up to the shortest seed's end).\n")
    print("Final held-out pass@1\n" + markdown(tables["final"]) + "\n")
    target = grpo_target(table)
    if tables["reach"]:
        start = table["start_greedy"].mean()
        note = " (not above the start: every run reaches it at its first evaluation)" if target <= start else ""
        print(f"Rollout tokens to reach GRPO's final greedy pass@1 {target:.3f} (start {start:.3f}){note}: "
              "first evaluation at or above it\n" + markdown(tables["reach"]) + "\n")
    else:
        print("Rollout tokens to reach GRPO's final: no grpo runs\n")
    print(f"Entropy: mean of the first / last {SMOOTH_STEPS} steps; collapsed = end below "
          f"{COLLAPSE_RATIO:.0%} of start\n" + markdown(tables["entropy"]) + "\n")
    if tables["switch"]:
        print("ACPO stage switch (1 -> 2)\n" + markdown(tables["switch"]) + "\n")
    if tables["ablation"]:
        print("ACPO ablations vs full acpo (final greedy pass@1)\n" + markdown(tables["ablation"]) + "\n")
    paired = paired_tables(table, target_sampled)
    if paired["reach_sampled"]:
        print(f"Rollout tokens to sampled pass@1 {target_sampled:.3f} (first evaluation at or above it; a seed that "
              "never reaches it counts its whole budget, a lower bound); a credit's own sampling (mc_reset's "
              "continuations) is not in the budget and is shown beside it\n" + markdown(paired["reach_sampled"]) + "\n")
    if paired["paired"]:
        print("Paired by seed, method minus grpo (95% t-interval over seeds; detectable: the smallest mean "
              "difference a 5% two-sided paired t-test finds with 80% power at the observed spread)\n"
              + markdown(paired["paired"]) + "\n")
    files = [out / "rl_compare.csv", out / "rl_curves.csv"]
    for suite, methods in figure_names(list(dict.fromkeys(table["method"]))).items():
        files += write_figures(long, methods, out / SUITE_FILES[suite], suite)
    print("wrote " + ", ".join(str(f) for f in files))
    if not any(f.suffix == ".png" for f in files):
        print("PNG figures skipped: matplotlib is not installed (pip install matplotlib, then --report-only)")
    return table
