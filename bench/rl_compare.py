"""RL comparison at equal rollout budget: every method trained from the demo policy, then compared.

Each run is the product's own trainer in a subprocess (`python train.py --recipe M
--seed S --max-rollout-tokens B ...`), single-threaded, stopped by the trainer
at the first step whose sampled tokens (every training completion, reset
continuations and self-localisation answers included) reach the budget B;
`--steps` is only a cap. Shared hyper-parameters are whatever the trainer's
defaults are (`TrainConfig`; no --config file, so the ACPO switches of
`configs/demo_cpu.yaml` stay out of the other methods) plus each method's
preset; `--extra "--lr 1e-4"` passes flags to every run.

Reads each run's metrics.jsonl and reports: held-out pass@1 curves (greedy and
sampled, 95% t-interval over seeds) against rollout tokens ("per rollout") and
against cumulative training seconds, the sum of `time_s`, which includes probe
forwards and reset continuations but not evaluation ("per compute"); final
pass@1 per method; the rollout tokens each method needs to reach GRPO's final
greedy pass@1; entropy at the start and the end; ACPO's stage switch.

    python bench/rl_compare.py                         # 7 methods + 7 ACPO ablations, 3 seeds, --jobs 2
    python bench/rl_compare.py --suite methods --srpo  # methods only, with srpo
    python bench/rl_compare.py --quick                 # CI smoke: 2 steps' worth of tokens, 1 seed, tiny eval
    python bench/rl_compare.py --report-only --out DIR # tables and figures from runs made elsewhere
    python bench/rl_compare.py --suite testbed --seeds 10 --target-sampled 0.6   # the testbed policy (below)

`--suite testbed` trains the testbed policy (`assets/testbed-policy`, `acpo.testbed`: long
`running_total` chains whose failures are one planted borrow slip) with grpo, grpo with the
mean_logprob, verified_steps and mc_reset credits, acpo and hapo; `--target-sampled` names the sampled
pass@1 whose rollout tokens are compared, and every method is compared with grpo paired by seed.

The default is 42 runs (14 variants x 3 seeds) of 180,000 sampled tokens each. On the
current demo policy a run takes about 2 min on one core (two side by side): the 21 runs
of `--suite methods` took 21.3 min with --jobs 2 on the 2-core development machine, so
the whole bench takes about 45 min.

An interrupted bench resumes where it stopped: a run whose folder has
summary.json is skipped, a run stopped by Ctrl-C goes on from the checkpoint
the trainer saved, any other unfinished run folder is deleted and run again.
Finished runs trained with another config (say, new defaults) are an error, not mixed in.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# 180,000 sampled tokens: about 100 acpo steps of the default config (8 problems x 8 samples, dynamic
# sampling's re-draws included) and about 120 grpo steps on the current demo policy (2026-11-25).
DEFAULT_BUDGET = 180_000
STEP_CAP = 10_000  # --steps of every run: the token budget stops it long before
QUICK_BUDGET = 320  # 2 problems x 4 samples x ~28 tokens a step: grpo's second step passes it
QUICK_FLAGS = ("--eval-problems", "8", "--trace-problems", "1", "--prompts-per-step", "2", "--group-size", "4",
               "--max-new-tokens", "32")
COLLAPSE_RATIO = 0.5  # entropy "collapsed" when its end value is below this fraction of its start value
SMOOTH_STEPS = 5  # entropy: mean of the first / last this many steps, and the curves' rolling window


@dataclass(frozen=True)
class Variant:
    """One line of the comparison: a name (run folders are `<name>-s<seed>`) and its train.py flags."""

    name: str
    flags: tuple[str, ...]


METHODS = [Variant(m, ("--recipe", m))
           for m in ("grpo", "dr_grpo", "entropy_mask", "hapo", "acpo", "rrpo", "attr_reset")]
SRPO = Variant("srpo", ("--recipe", "srpo"))  # optional: the demo policy cannot name its wrong step
CREDITS = [  # other registered credits, and the information gain's readings, in the trainer's loss
    Variant("grpo-mean_logprob", ("--recipe", "grpo", "--credit", "mean_logprob")),
    Variant("acpo-contrast", ("--recipe", "acpo", "--acpo-target", "contrast")),
]
ABLATIONS = [
    Variant("acpo-seg-lines", ("--recipe", "acpo", "--segmentation", "lines")),
    Variant("acpo-seg-entropy", ("--recipe", "acpo", "--segmentation", "entropy")),
    Variant("acpo-additive", ("--recipe", "acpo", "--composition", "additive")),
    Variant("acpo-no-entropy-bonus", ("--recipe", "acpo", "--entropy-bonus", "false")),
    Variant("acpo-one-stage", ("--recipe", "acpo", "--two-stage", "false")),
    Variant("acpo-no-curriculum", ("--recipe", "acpo", "--curriculum", "false")),
    Variant("acpo-conf-0.5", ("--recipe", "acpo", "--conf-gamma", "0.5")),  # METHODS.md's confidence reward
]
TESTBED = [Variant("grpo", ("--recipe", "grpo")),
           Variant("grpo-mean_logprob", ("--recipe", "grpo", "--credit", "mean_logprob")),
           Variant("grpo-verified_steps", ("--recipe", "grpo", "--credit", "verified_steps")),
           Variant("acpo", ("--recipe", "acpo")),
           Variant("hapo", ("--recipe", "hapo")),
           # the expensive oracle: M continuations after every step boundary of every completion; its
           # continuation tokens are not in the budget (logged as credit_rollout_tokens, reported beside)
           Variant("grpo-mc_reset", ("--recipe", "grpo", "--credit", "mc_reset"))]
SUITE_FLAGS = {"testbed": ("--model", "assets/testbed-policy", "--tasks", "running_total:1", "--max-new-tokens", "128",
                           "--segmentation", "lines")}  # steps are lines there, as the localisation table measures
"""Flags every run of a suite gets before --extra (the testbed's policy, task, completion length and steps)."""
ORDER = ([v.name for v in METHODS] + [SRPO.name] + [v.name for v in ABLATIONS] + [v.name for v in CREDITS]
         + [v.name for v in TESTBED if v.name not in {"grpo", "acpo", "hapo", "grpo-mean_logprob"}])


def select_variants(suite: str, srpo: bool, names: list[str] | None) -> list[Variant]:
    """The variants of a suite ('methods', 'ablations', 'all', 'testbed'), optionally only the named ones."""
    methods = METHODS + ([SRPO] if srpo else [])
    acpo = [v for v in METHODS if v.name == "acpo"]
    chosen = {"methods": methods, "ablations": acpo + ABLATIONS, "all": methods + ABLATIONS, "testbed": TESTBED}[suite]
    if names:
        known = {v.name: v for v in METHODS + [SRPO] + ABLATIONS + CREDITS + TESTBED}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"rl_compare.py: unknown --methods {unknown}; valid: {', '.join(known)}")
        chosen = [known[n] for n in names]
    return chosen


# ---------------------------------------------------------------------------------------------- running


def run_name(variant: str, seed: int) -> str:
    return f"{variant}-s{seed}"


def split_run_name(name: str) -> tuple[str, int]:
    """'acpo-seg-lines-s2' -> ('acpo-seg-lines', 2)."""
    variant, _, seed = name.rpartition("-s")
    if not variant or not seed.isdigit():
        raise ValueError(f"run folder '{name}' is not named <method>-s<seed>")
    return variant, int(seed)


def train_argv(variant: Variant, seed: int, runs_dir: Path, budget: int, extra: list[str]) -> list[str]:
    """train.py's arguments for one run: the variant's flags, then the budget, then --extra (which wins)."""
    return [*variant.flags, "--seed", str(seed), "--run-name", run_name(variant.name, seed),
            "--output-dir", str(runs_dir), "--max-rollout-tokens", str(budget), "--steps", str(STEP_CAP),
            "--threads", "1", *extra]


IGNORED_FIELDS = {"output_dir", "run_name", "resume", "threads", "overwrite"}


def config_mismatch(run_dir: Path, argv: list[str]) -> list[str]:
    """Fields where a finished run's config.yaml differs from what `argv` would train now (e.g. new defaults)."""
    from acpo.config import load_saved_config, parse_args

    saved = load_saved_config(run_dir / "config.yaml")  # old names (method) read as today's (recipe)
    wanted = vars(parse_args(argv))
    diff = []
    for key in sorted(set(saved) & set(wanted) - IGNORED_FIELDS):
        a, b = saved[key], wanted[key]
        if key == "model" and a and b:  # an absolute path to the same folder on another machine
            a, b = Path(a).name, Path(b).name
        if a != b:
            diff.append(f"{key}: {saved[key]!r} (saved) vs {wanted[key]!r} (now)")
    return diff


def run_all(variants: list[Variant], seeds: list[int], out: Path, budget: int, extra: list[str], jobs: int,
            device: str) -> list[str]:
    """Train every (variant, seed) not finished yet, `jobs` at a time; returns the names of failed runs."""
    from acpo.config import parse_args
    from tqdm.auto import tqdm

    runs_dir, logs = out / "runs", out / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    todo, done = [], 0
    for s in seeds:  # seed by seed: an interrupted bench leaves every method with the same seeds, paired
        for v in variants:
            argv = train_argv(v, s, runs_dir, budget, extra)
            try:
                parse_args(argv)  # a bad --extra fails here, once, before anything runs
            except (ValueError, SystemExit) as err:
                raise SystemExit(f"rl_compare.py: train.py would reject {shlex.join(argv)}: {err}") from err
            folder = runs_dir / run_name(v.name, s)
            if (folder / "summary.json").exists():
                diff = config_mismatch(folder, argv)
                if diff:
                    raise SystemExit(f"rl_compare.py: finished run '{folder}' was trained with another config "
                                     f"({'; '.join(diff)}); use another --out or delete that folder")
                done += 1
                continue
            todo.append((run_name(v.name, s), argv))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    resumed = sum(has_checkpoint(runs_dir / name) for name, _ in todo)
    print(f"{len(todo)} runs to train ({resumed} from a checkpoint), {done} already finished in {runs_dir} "
          f"(logs in {logs})", file=sys.stderr)

    def one(name: str, argv: list[str]) -> tuple[str, int, float]:
        folder = runs_dir / name
        if has_checkpoint(folder):  # stopped by Ctrl-C / SIGTERM: the trainer saved a step to go on from
            argv = [*argv, "--resume", str(folder)]
        else:  # never started, or killed before its first checkpoint: again from step 0
            shutil.rmtree(folder, ignore_errors=True)
        t0 = time.time()
        with open(logs / f"{name}.log", "a") as log:
            rc = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
        if rc == 0 and not (folder / "summary.json").exists():
            rc = -1  # exit 0 without summary.json: stopped by a signal, resumable
        return name, rc, time.time() - t0

    failed, stopped = [], []
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        with tqdm(total=len(todo), desc="runs", unit="run", dynamic_ncols=True) as bar:
            futures = [pool.submit(one, name, argv) for name, argv in todo]
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                name, rc, secs = fut.result()
                bar.update(1)
                bar.set_postfix_str(f"{name} {secs:.0f}s" + {0: "", -1: " stopped"}.get(rc, f" FAILED rc={rc}"))
                if rc == -1:  # Ctrl-C / SIGTERM reached the runs: start no new ones
                    stopped.append(name)
                    for f in futures:
                        f.cancel()
                elif rc != 0:
                    failed.append(name)
                    tail = (logs / f"{name}.log").read_text()[-1500:]
                    tqdm.write(f"run {name} did not finish (exit {rc}); last lines of {logs / (name + '.log')}:"
                               f"\n{tail}", file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C reached the runs too: each finishes its step and saves a checkpoint
        stopped.append("this bench")
        pool.shutdown(wait=True, cancel_futures=True)
    pool.shutdown()
    if stopped:
        raise SystemExit(f"rl_compare.py: interrupted ({', '.join(stopped)}); run the same command again to resume "
                         "(finished runs are skipped, stopped ones go on from their checkpoint)")
    return failed


def has_checkpoint(run_dir: Path) -> bool:
    """A complete checkpoint (weights, trainer and per-process state) that `train.py --resume` can go on from."""
    from acpo.checkpoint import complete_checkpoints

    return bool(complete_checkpoints(run_dir, lora=False))


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


def report(out: Path, target_sampled: float | None = None) -> pd.DataFrame:
    """Tables on stdout, rl_compare.csv, rl_curves.csv and the figures, from the runs in OUT/runs."""
    runs = load_runs(out / "runs")
    if not runs:
        raise SystemExit(f"rl_compare.py: no finished runs in '{out / 'runs'}'")
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("methods", "ablations", "all", "testbed"), default="all",
                    help="methods: the 7 methods; ablations: ACPO variants and full acpo; all: both; testbed: the "
                         "credits on the testbed policy (assets/testbed-policy, its own task and length flags)")
    ap.add_argument("--target-sampled", type=float,
                    help="report the rollout tokens each method needs to reach this sampled pass@1, paired by seed "
                         "with grpo (choose it before looking at the results)")
    ap.add_argument("--methods", help="only these variants, comma-separated, instead of --suite "
                    "(e.g. grpo,acpo,acpo-seg-lines)")
    ap.add_argument("--srpo", action="store_true", help="add srpo (the demo policy cannot name its wrong step)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method")
    ap.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                    help="sampled tokens per run (%(default)s: about 100 grpo steps of the default config)")
    ap.add_argument("--extra", default="", help="flags passed to every train.py run, e.g. \"--lr 1e-4\"")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, each on one thread")
    ap.add_argument("--device", choices=("cpu", "auto"), default="cpu",
                    help="cpu: hide GPUs from the runs (seconds comparable); auto: the trainer's choice")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI smoke: {QUICK_BUDGET} tokens per run (2 steps), 1 seed, {' '.join(QUICK_FLAGS)}")
    ap.add_argument("--report-only", action="store_true", help="no training: tables and figures from OUT/runs")
    ap.add_argument("--out", type=Path, help="output folder (default: bench/out/rl_compare, or bench/out/rl_testbed "
                                             "for --suite testbed)")
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "bench" / "out" / ("rl_testbed" if args.suite == "testbed" else "rl_compare")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.report_only:
        extra = [*SUITE_FLAGS.get(args.suite, ()), *shlex.split(args.extra)]
        if args.quick:
            args.seeds, args.budget, extra = 1, QUICK_BUDGET, [*QUICK_FLAGS, *extra]
        variants = select_variants(args.suite, args.srpo, args.methods.split(",") if args.methods else None)
        t0 = time.time()
        failed = run_all(variants, list(range(args.seeds)), args.out, args.budget, extra, args.jobs, args.device)
        print(f"training took {(time.time() - t0) / 60:.1f} min with --jobs {args.jobs}", file=sys.stderr)
    report(args.out, args.target_sampled)
    if failed:
        print(f"rl_compare.py: {len(failed)} runs failed: {', '.join(failed)} (see {args.out / 'logs'})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
