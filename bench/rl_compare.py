"""RL comparison at equal rollout budget: every method trained from the demo policy, then compared.

Each run is the product's own trainer in a subprocess (`python train.py --recipe M
--seed S --max-rollout-tokens B ...`), single-threaded, stopped by the trainer
at the first step whose sampled tokens (every training completion, reset
continuations and self-localisation answers included) reach the budget B;
`--steps` is only a cap. Shared hyper-parameters are whatever the trainer's
defaults are (`TrainConfig`; no --config file, so the ACPO switches of
`configs/demo_cpu.yaml` stay out of the other methods) plus each method's
preset; `--extra "--lr 1e-4"` passes flags to every run.

Then it reports (`bench/rl_report.py`): held-out pass@1 against rollout tokens and
against training seconds, final pass@1, tokens to GRPO's final pass@1, entropy, ACPO's
stage switch, and each method minus grpo paired by seed. The variants, run folders,
checkpoints and the session log that let a comparison outlive one sitting are in
`bench/rl_runs.py`.

    python bench/rl_compare.py                         # 7 methods + 6 ACPO ablations, 3 seeds, --jobs 2
    python bench/rl_compare.py --suite methods --srpo  # methods only, with srpo
    python bench/rl_compare.py --quick                 # CI smoke: 2 steps' worth of tokens, 1 seed, tiny eval
    python bench/rl_compare.py --report-only --out DIR # tables and figures from runs made elsewhere
    python bench/rl_compare.py --suite real-demo --out DIR  # grpo vs grpo + mean_logprob on the real model
    python bench/rl_compare.py --suite testbed --seeds 10 --target-sampled 0.6   # the testbed policy (below)

`--suite testbed` trains the testbed policy (`assets/testbed-policy`, `acpo.testbed`: long
`running_total` chains whose failures are one planted borrow slip) with grpo, grpo with the
mean_logprob, verified_steps and mc_reset credits, acpo and hapo; `--target-sampled` names the sampled
pass@1 whose rollout tokens are compared, and every method is compared with grpo paired by seed.

The default is 39 runs (13 variants x 3 seeds) of 180,000 sampled tokens each. On the
current demo policy a run takes about 2 min on one core (two side by side): the 21 runs
of `--suite methods` took 21.3 min with --jobs 2 on the 2-core development machine, so
the whole bench takes about 45 min.

An interrupted bench resumes where it stopped: a run whose folder has
summary.json is skipped, a run with a complete checkpoint (saved every
--save-every steps, or on Ctrl-C / SIGTERM) goes on from it, any other
unfinished run folder is deleted and run again. A bench killed outright
(SIGKILL, the machine going away) loses at most the steps since each run's last
checkpoint, so a comparison longer than one sitting is the same command run
again, as often as it takes. OUT/sessions.jsonl records each invocation (its
start, its last sign of life, how far the runs got) and the report counts them.
Finished runs trained with another config (say, new defaults) are an error, not mixed in.

`--suite real-demo` is the powered comparison on the real-model demo policy
(`REAL_DEMO`): grpo against grpo with the `mean_logprob` credit, the credit that
localises best on that policy's failures (docs/BENCHMARKS.md), 3 seeds x 100
steps of 2 problems x 8 samples, 200 held-out problems at steps 0, 50 and 100.
About 7 core-hours on a 2-core CPU (three 3-hour sittings here): it runs across sittings, and until every run has
finished the report prints what is done so far, marked partial.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rl_report import report  # noqa: E402  (after the path: `python bench/rl_compare.py` runs it as a script)
from bench.rl_runs import (ABLATIONS, CREDITS, ENDS_WITH_PARENT, METHODS, SRPO, TESTBED, SessionLog,  # noqa: E402
                           Variant, has_checkpoint, lock_out_folder, now_iso, run_folder_holder, run_name,
                           wait_for_run_folder)

# 180,000 sampled tokens: about 100 acpo steps of the default config (8 problems x 8 samples, dynamic
# sampling's re-draws included) and about 120 grpo steps on the current demo policy (2026-11-25).
DEFAULT_BUDGET = 180_000
STEP_CAP = 10_000  # --steps of every run: the token budget stops it long before
QUICK_BUDGET = 320  # 2 problems x 4 samples x ~28 tokens a step: grpo's second step passes it
QUICK_FLAGS = ("--eval-problems", "8", "--trace-problems", "1", "--prompts-per-step", "2", "--group-size", "4",
               "--max-new-tokens", "32")
SUITE_FLAGS = {"testbed": ("--model", "assets/testbed-policy", "--tasks", "running_total:1", "--max-new-tokens", "128",
                           "--segmentation", "lines")}  # steps are lines there, as the localisation table measures
"""Flags every run of a suite gets before --extra (the testbed's policy, task, completion length and steps)."""


@dataclass(frozen=True)
class Preset:
    """A named comparison that is one command: its variants, seeds, token budget and train.py flags."""

    variants: tuple[str, ...]
    seeds: int
    budget: int  # sampled tokens per run; 0: none, the flags' --steps ends every run
    flags: tuple[str, ...]  # before --extra, which wins
    save_every: int  # a checkpoint every this many steps: a kill loses at most these


# The real-model demo policy (SmolLM2-135M-Instruct + assets/real-demo-policy), sized for CPU: 2 problems x 8
# samples a step as in the 12-step comparison, 100 steps, and 200 held-out problems evaluated at the start, the
# middle and the end. Neither variant re-draws groups (no dynamic sampling), so at equal steps both sample the same
# number of completions (their token counts differ only by completion lengths); the budget does not bind.
REAL_DEMO = Preset(
    variants=("grpo", "grpo-mean_logprob"), seeds=3, budget=0,
    flags=("--config", str(ROOT / "configs" / "real_demo.yaml"), "--steps", "100", "--prompts-per-step", "2",
           "--group-size", "8", "--eval-problems", "200", "--eval-every", "50", "--trace-problems", "0"),
    save_every=5)
PRESETS = {"real-demo": REAL_DEMO}


def select_variants(suite: str, srpo: bool, names: list[str] | None) -> list[Variant]:
    """The variants of a suite ('methods', 'ablations', 'all', 'testbed', or a preset's), optionally only the named ones."""
    methods = METHODS + ([SRPO] if srpo else [])
    acpo = [v for v in METHODS if v.name == "acpo"]
    known = {v.name: v for v in METHODS + [SRPO] + ABLATIONS + CREDITS + TESTBED}
    if suite in PRESETS:
        chosen = [known[n] for n in PRESETS[suite].variants]
    else:
        chosen = {"methods": methods, "ablations": acpo + ABLATIONS, "all": methods + ABLATIONS,
                  "testbed": TESTBED}[suite]
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"rl_compare.py: unknown --methods {unknown}; valid: {', '.join(known)}")
        chosen = [known[n] for n in names]
    return chosen


# ---------------------------------------------------------------------------------------------- running


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
        t0 = time.time()
        with open(logs / f"{name}.log", "a") as log:
            holder = run_folder_holder(folder)
            if holder is not None:  # an earlier bench's run, told to stop, finishing its step: it will end
                log.write(f"\n[{now_iso()}] rl_compare.py: waiting for process {holder}, which holds {folder}, to "
                          "end (a run of an earlier bench finishing its step and saving)\n")
                log.flush()
                wait_for_run_folder(folder)
            if has_checkpoint(folder):  # saved every --save-every steps, or on Ctrl-C / SIGTERM: go on from it
                argv = [*argv, "--resume", str(folder)]
            else:  # never started, or killed before its first checkpoint: again from step 0
                shutil.rmtree(folder, ignore_errors=True)
            log.write(f"\n[{now_iso()}] rl_compare.py: train.py {shlex.join(argv)}\n")
            log.flush()
            cmd = [sys.executable, "-c", ENDS_WITH_PARENT, str(os.getpid()), str(ROOT / "train.py"), *argv]
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("methods", "ablations", "all", "testbed", *PRESETS), default=None,
                    help="methods: the 7 methods; ablations: ACPO variants and full acpo; all: both (the default "
                         "when training); testbed: the credits on the testbed policy (assets/testbed-policy, its "
                         "own task and length flags); real-demo: grpo vs grpo + mean_logprob on the real-model demo policy, "
                         f"{REAL_DEMO.seeds} seeds, its own flags ({shlex.join(REAL_DEMO.flags)} --save-every "
                         f"{REAL_DEMO.save_every}; --extra still wins)")
    ap.add_argument("--target-sampled", type=float,
                    help="report the rollout tokens each method needs to reach this sampled pass@1, paired by seed "
                         "with grpo (choose it before looking at the results)")
    ap.add_argument("--methods", help="only these variants, comma-separated, instead of --suite "
                    "(e.g. grpo,acpo,acpo-seg-lines)")
    ap.add_argument("--srpo", action="store_true", help="add srpo (the demo policy cannot name its wrong step)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per method (default 3)")
    ap.add_argument("--budget", type=int, default=None,
                    help=f"sampled tokens per run (default {DEFAULT_BUDGET}: about 100 grpo steps of the default "
                         "config; a preset's own, 0 for real-demo: no budget)")
    ap.add_argument("--save-every", type=int, default=None,
                    help="each run writes a checkpoint every N steps, so a bench killed outright (SIGKILL) loses at "
                         "most N steps a run (default: the trainer's, 0 = only at the end; a preset's own)")
    ap.add_argument("--extra", default="", help="flags passed to every train.py run, e.g. \"--lr 1e-4\"")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, each on one thread")
    ap.add_argument("--device", choices=("cpu", "auto"), default="cpu",
                    help="cpu: hide GPUs from the runs (seconds comparable); auto: the trainer's choice")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI smoke: {QUICK_BUDGET} tokens per run (2 steps), 1 seed, {' '.join(QUICK_FLAGS)}")
    ap.add_argument("--report-only", action="store_true", help="no training: tables and figures from OUT/runs")
    ap.add_argument("--out", type=Path, help="output folder (default: bench/out/rl_compare, or bench/out/rl_testbed "
                                             "for --suite testbed)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "bench" / "out" / ("rl_testbed" if args.suite == "testbed" else "rl_compare")
    for name in ("seeds", "budget", "save_every", "jobs"):
        value = getattr(args, name)
        if value is not None and value < (1 if name in ("seeds", "jobs") else 0):
            ap.error(f"--{name.replace('_', '-')} must be at least {1 if name in ('seeds', 'jobs') else 0}, "
                     f"got {value}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        ap.error(f"cannot make --out '{args.out}': {err.strerror or err}")
    variants, seeds, budget, extra = plan(args)
    expected = [run_name(v.name, s) for v in variants for s in seeds] if (
        args.suite or args.methods or not args.report_only) else None
    failed = []
    if not args.report_only:
        lock = lock_out_folder(args.out)
        session = SessionLog(args.out, [str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)])
        status = "interrupted"
        try:
            t0 = time.time()
            failed = run_all(variants, seeds, args.out, budget, extra, args.jobs, args.device)
            status = f"failed: {', '.join(failed)}" if failed else "finished"
            print(f"training took {(time.time() - t0) / 60:.1f} min with --jobs {args.jobs}", file=sys.stderr)
        finally:
            session.end(status)
            lock.release()
    report(args.out, expected, args.target_sampled)
    if failed:
        print(f"rl_compare.py: {len(failed)} runs failed: {', '.join(failed)} (see {args.out / 'logs'})",
              file=sys.stderr)
        return 1
    return 0


def plan(args) -> tuple[list[Variant], list[int], int, list[str]]:
    """(variants, seeds, token budget, train.py flags before each run's own) of the command line: a preset's,
    --quick's or the defaults, with the flags given on the command line winning."""
    preset = PRESETS.get(args.suite)
    seeds = args.seeds or (preset.seeds if preset else 3)
    budget = args.budget if args.budget is not None else (preset.budget if preset else DEFAULT_BUDGET)
    save_every = args.save_every if args.save_every is not None else (preset.save_every if preset else None)
    extra = [*(preset.flags if preset else SUITE_FLAGS.get(args.suite, ()))]
    if args.quick:
        seeds, budget, extra = 1, QUICK_BUDGET, [*extra, *QUICK_FLAGS]
    if save_every is not None:
        extra += ["--save-every", str(save_every)]
    extra += shlex.split(args.extra)
    variants = select_variants(args.suite or "all", args.srpo, args.methods.split(",") if args.methods else None)
    return variants, list(range(seeds)), budget, extra


if __name__ == "__main__":
    sys.exit(main())
