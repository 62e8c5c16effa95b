"""The RL loop: rollout -> reward -> segment -> credit -> advantage -> loss -> step -> log.

Read ``Trainer.train`` top to bottom: one optimizer step per iteration (a new
batch of rollouts every ``num_iterations`` steps), every number coming from the
shared core (``acpo.stats``, ``acpo.segment``, ``acpo.credit``,
``acpo.advantage``), so what the app shows is what trains. Metrics carry TRL's
names with TRL's meanings (docs/METHODS.md, "TRL's names").
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from acpo.advantage import AdvantageConfig, broadcast_steps, normalize_step_credits
from acpo.checkpoint import complete_checkpoints, newest_checkpoint, rng_state, set_rng_state, write_checkpoint
from acpo.config import (CREDIT_CONFIG_FIELDS, CREDIT_OF_METHOD, RESET_BOUNDARY_CREDIT, RESET_CONTINUATION_CREDIT,
                         TRACED_CREDITS, TrainConfig, to_yaml)
from acpo.credit import CreditBatch, credit_name, get_credit_method
from acpo.credit.mc_reset import parse_self_localisation, self_localisation_prompt
from acpo.curriculum import Curriculum
from acpo.explain import explain_batch
from acpo.pipeline import assign_credit, make_credit
from acpo.loss import policy_loss
from acpo.models import load_policy
from acpo.prompts import PromptStyle, answer_probe, render_prompt
from acpo.rewards import get_reward, reward_name
from acpo.rollout import Sample, make_engine
from acpo.runs import (
    CHECKPOINTS, CONFIG, SUMMARY, TRACES, RunFinished, append_metrics, empty_folder, eval_at, finished_at,
    lock_run_folder, read_metrics, run_dir_problem, truncate_metrics, write_atomic, write_summary, write_text_atomic,
)
from acpo.segment import SegmentConfig
from acpo.stats import completion_stats, scored_stats
from acpo.tasks import (
    DEFAULT_TRAIN_MIX, RL_SEED_OFFSET, TASKS, Problem, first_error_step, get_task, heldout_problems, make_problems,
)
from acpo.tokens import encode_prompt, pad_batch


@dataclass
class Scored:
    """A credit batch with what the loss needs: token advantages and step credits.

    ``old_logprobs``: the log-probs of the policy that sampled the batch, kept
    from its first optimizer step for the next ``num_iterations - 1``.
    ``shaped``: ``batch.rewards`` are stage 2's confidence-weighted rewards, not the raw ones.
    """

    batch: CreditBatch
    token_adv: torch.Tensor
    step_credits: list[torch.Tensor]
    old_logprobs: torch.Tensor | None = None
    shaped: bool = False


def parse_mix(spec: str) -> list[tuple[str, int]]:
    """'default' or 'family:level,...' -> (family, level) pairs, checked against the tasks."""
    if spec == "default":
        return list(DEFAULT_TRAIN_MIX)
    pairs = []
    for part in spec.split(","):
        name, _, level = part.strip().partition(":")
        task = get_task(name)
        levels = [int(level)] if level else list(task.levels)
        for lv in levels:
            task._require_level(lv)
            pairs.append((name, lv))
    return pairs


class Trainer:
    def __init__(self, cfg: TrainConfig, accelerator=None):
        from accelerate import Accelerator

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar is the one to watch
        self.cfg = cfg
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        if cfg.prompts_per_step % self.world:
            raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must divide evenly over {self.world} processes")
        self.seed_everything(cfg.seed + self.rank)

        # the run folder (named and checked by the main process, so every rank agrees)
        self.run_dir = self.claim_run_dir()

        # the policy, its optimizer and the rollout engine
        model, self.tokenizer = load_policy(cfg.model, cfg.trust_remote_code, dtype=cfg.dtype)
        small = sum(p.numel() for p in model.parameters()) < 20_000_000
        if cfg.threads or (small and not torch.cuda.is_available()):
            torch.set_num_threads(cfg.threads or 1)  # thread sync costs more than tiny matmuls save
        if cfg.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else cfg.lora_targets.split(",")
            model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=targets,
                                                     task_type="CAUSAL_LM"))
        model.config.use_cache = True
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        # not prepared: accelerate steps a prepared scheduler once per process at every optimizer step
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.policy = self.acc.unwrap_model(self.model)
        self.engine = make_engine(cfg.rollout, self.policy, self.tokenizer, cfg.model, cfg)
        self.prompt_style = PromptStyle(cfg.chat_template, cfg.system_prompt, cfg.instruction, cfg.answer_format)
        self.credit_name = credit_of(cfg)
        self.probe = self.resolve_probe()
        self.credit = get_credit_method(self.credit_name, **credit_options(cfg, self.probe))
        self.seg_cfg = SegmentConfig(entropy_quantile=cfg.entropy_quantile, min_step_tokens=cfg.min_step_tokens,
                                     max_steps=cfg.max_reasoning_steps)
        self.reward_fns = reward_functions(cfg)
        self.reward_names = [reward_name(fn) for fn in self.reward_fns]
        self.reward_weights = torch.tensor(cfg.reward_weights or [1.0] * len(self.reward_fns))
        self.adv_cfg = AdvantageConfig(outcome=cfg.outcome, composition=cfg.composition,
                                       credit_scale=cfg.credit_scale, w_min=cfg.w_min, w_max=cfg.w_max)

        # problems: the training pool (curriculum) and the held-out evaluation set
        self.pool, self.eval_set, start_levels = self.load_problems()
        self.curriculum = Curriculum(self.pool, start_levels, cfg.curriculum, cfg.curriculum_eps,
                                     cfg.unlock_threshold, seed=cfg.seed + self.rank)
        self.check_inputs()  # before the run folder exists: fixing a typo must not need --overwrite

        # state that a checkpoint carries
        self.step, self.stage = 0, 1
        self.entropy_coef = cfg.entropy_coef if cfg.entropy_bonus else 0.0
        self.entropy_target = cfg.entropy_target
        self.best_eval, self.evals_since_best = -1.0, 0
        self.rollout_tokens = 0  # completion tokens sampled by this process (resets and probes included)
        self.num_tokens = 0  # TRL's num_tokens: prompt + completion tokens trained on, every process
        self.timings: dict[str, float] = {}  # seconds per phase of the current step (time/*)
        self.rollout_metrics: dict[str, float] = {}  # TRL's reward and completion metrics of the batch in training
        self.scored: Scored | None = None  # the batch of rollouts the next optimizer step trains on
        self.last_sampled = float("nan")
        self.ref_model = None
        self.resumed_from = None
        self.lock = self.lock_run_dir()  # one writer per run folder, from here until train() returns
        try:
            if cfg.resume:
                self.load_checkpoint()
                self.engine.sync_weights(self.policy)  # a separate engine (vLLM) started from cfg.model
            elif self.acc.is_main_process:
                if cfg.overwrite:  # only now, after the model loaded (it may even live in the old run folder)
                    empty_folder(self.run_dir)
                (self.run_dir / CHECKPOINTS).mkdir(exist_ok=True)
                (self.run_dir / TRACES).mkdir(exist_ok=True)
                # saved without --overwrite, so that `--resume` of this folder does not ask to wipe it
                write_text_atomic(self.run_dir / CONFIG, to_yaml(dataclasses.replace(cfg, overwrite=False)),
                                  "config.yaml")
            self.acc.wait_for_everyone()
            self.start_trackers()
        except BaseException:
            self.release()
            raise

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        previous_handlers = self.catch_stop_signals()
        try:
            return self.train_loop()
        finally:
            restore_signal_handlers(previous_handlers)
            for tracker in self.acc.trackers:
                tracker.finish()
            self.acc.trackers.clear()
            self.release()

    def release(self) -> None:
        """Let another process write the run folder (the lock also goes when this process exits)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def train_loop(self) -> dict:
        cfg = self.cfg
        start_time = time.time()
        last_eval = self.evaluate() if self.step == 0 else eval_at(read_metrics(self.run_dir), "last")
        stopped_by = None
        bar = tqdm(range(self.step, cfg.steps), desc=f"{cfg.method}", initial=self.step, total=cfg.steps,
                   disable=not self.acc.is_main_process, dynamic_ncols=True)
        for step in bar:
            t0 = time.time()
            self.timings = dict.fromkeys(("rollout", "score", "credit", "update"), 0.0)
            if self.scored is None or step % cfg.num_iterations == 0:  # (after a resume inside a block: new rollouts)
                # 1. rollout + reward: G completions per problem, equal-reward groups re-drawn
                problems, samples, rewards = self.sample_groups(cfg.prompts_per_step // self.world)
                # 2. token statistics, segmentation, step credits -> token advantages
                self.scored = self.score(problems, samples, rewards)
                # 3. resets: continuations from a step prefix of failed completions join as new groups
                if cfg.is_reset:
                    self.scored = self.add_reset_groups(self.scored, problems, samples, rewards)
                self.count_tokens(self.scored.batch)
                for i, p in enumerate(problems):
                    self.curriculum.update(p, known(rewards[i * cfg.group_size : (i + 1) * cfg.group_size]))
            # 4. loss and optimizer step (the batch's num_iterations-th one last)
            metrics = self.optimize(self.scored)
            # 5. bookkeeping: entropy coefficient, evaluation, stage switch, logs, checkpoints
            self.step = step + 1
            self.adapt_entropy_coef(metrics["entropy"])
            metrics.update(self.rollout_metrics)
            metrics.update(self.reduce({"time_s": time.time() - t0,
                                        **{f"time/{k}": v for k, v in self.timings.items()}}))
            metrics.update(step=self.step, stage=self.stage, entropy_coef=self.entropy_coef,
                           num_tokens=self.num_tokens,
                           rollout_tokens=self.rollout_tokens)
            last = self.step == cfg.steps or self.budget_spent()
            if self.step % cfg.eval_every == 0 or last:
                t_eval = time.time()
                last_eval = self.evaluate(metrics)
                metrics["time/eval"] = time.time() - t_eval
                self.maybe_switch_stage(last_eval)
            self.log(metrics)
            saved = (cfg.save_every and self.step % cfg.save_every == 0) or last
            if saved:
                self.save_checkpoint()
            bar.set_postfix(reward=f"{metrics['reward']:.2f}", pass1=f"{last_eval:.2f}",
                            entropy=f"{metrics['entropy']:.2f}", stage=self.stage)
            if last:
                break
            # 6. Ctrl-C / SIGTERM: stop after this step, on every process, with a checkpoint to resume from
            if self.any_process(self.stop_signal is not None):
                if not saved:
                    self.save_checkpoint()
                stopped_by = self.stop_signal or "a signal to another process"
                break
        bar.close()
        logged = read_metrics(self.run_dir)  # the run's true start, also after a resume: its step-0 evaluation
        summary = {"run_dir": str(self.run_dir), "start_pass@1": eval_at(logged, "first"), "end_pass@1": last_eval,
                   "start_pass@1_sampled": eval_at(logged, "first", "eval/pass@1_sampled"),
                   "end_pass@1_sampled": self.last_sampled, "resumed_from_step": self.resumed_from,
                   "wall_s": time.time() - start_time, "steps": self.step, "processes": self.world,
                   "param_checksums": self.param_checksums()}
        if len(set(summary["param_checksums"])) > 1:
            raise RuntimeError(f"processes ended with different weights: {summary['param_checksums']}")
        if self.acc.is_main_process and stopped_by is None:  # summary.json marks a finished run
            write_summary(self.run_dir, summary)
        summary.update(stopped_by=stopped_by, checkpoint=str(self.run_dir / CHECKPOINTS / f"step-{self.step}"),
                       resume_command=self.resume_command(), is_main=self.acc.is_main_process)
        return summary

    def param_checksums(self) -> list[str]:
        """A hash of the policy's weights from every process (DDP must keep them identical)."""
        import hashlib

        h = hashlib.sha256()
        for name, p in sorted(self.policy.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        digest = h.hexdigest()[:16]
        return [digest] if self.world == 1 else gather_objects(digest)

    # ------------------------------------------------------------------ 1. rollout and reward
    def sample_groups(self, n_problems: int) -> tuple[list[Problem], list[Sample], torch.Tensor]:
        """Sample problems and G completions each; with dynamic sampling, re-draw all-equal groups.

        Returns the problems, the samples and their rewards (NaN where every
        reward function returned None); sets ``rollout_metrics`` of the batch.
        """
        cfg, g = self.cfg, self.cfg.group_size
        problems = self.curriculum.sample(n_problems)
        samples = self.generate(problems, n=g)
        columns = self.reward_columns(problems, samples)
        for _ in range(cfg.max_resample if cfg.dynamic_sampling else 0):
            rewards = self.total_reward(columns)
            flat = [i for i in range(len(problems)) if nanstd(rewards[i * g : (i + 1) * g]) == 0]
            if not flat:
                break
            for i in flat:  # the equal-reward group still teaches the curriculum its pass rate
                self.curriculum.update(problems[i], known(rewards[i * g : (i + 1) * g]))
            fresh = self.curriculum.sample(len(flat))
            new = self.generate(fresh, n=g)
            new_columns = self.reward_columns(fresh, new)
            for j, i in enumerate(flat):
                problems[i] = fresh[j]
                samples[i * g : (i + 1) * g] = new[j * g : (j + 1) * g]
                columns[i * g : (i + 1) * g] = new_columns[j * g : (j + 1) * g]
        rewards = self.total_reward(columns)
        self.rollout_metrics = self.batch_metrics(samples, rewards, columns)
        return problems, samples, rewards

    def batch_metrics(self, samples: list[Sample], rewards: torch.Tensor, columns: torch.Tensor) -> dict[str, float]:
        """TRL's reward and completion metrics, over the completions of every process.

        ``reward`` and ``reward_std``: mean and (sample) std of the raw summed
        reward over the batch, NaN rewards left out; ``frac_reward_zero_std``: the
        share of groups whose rewards are all equal; ``completions/clipped_ratio``:
        the share that hit ``max_new_tokens`` without an end-of-sequence token.
        """
        stop = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *getattr(self.engine, "eos_ids", ())}
        lengths = torch.tensor([len(s.completion_ids) for s in samples], dtype=torch.float32)
        clipped = torch.tensor([bool(s.completion_ids) and s.completion_ids[-1] not in stop for s in samples],
                               dtype=torch.float32)
        if self.world > 1:
            rewards, columns, lengths, clipped = (self.acc.gather(t.to(self.acc.device)).cpu()
                                                  for t in (rewards, columns, lengths, clipped))
        group_std = nanstd(rewards.view(-1, self.cfg.group_size), dim=1)
        metrics = {"reward": float(rewards.nanmean()), "reward_std": float(nanstd(rewards)),
                   "frac_reward_zero_std": float(torch.isclose(group_std, torch.zeros(())).float().mean()),
                   "completions/mean_length": float(lengths.mean()), "completions/min_length": float(lengths.min()),
                   "completions/max_length": float(lengths.max()), "completions/clipped_ratio": float(clipped.mean())}
        for j, name in enumerate(self.reward_names):
            metrics[f"rewards/{name}/mean"] = float(columns[:, j].nanmean())
            metrics[f"rewards/{name}/std"] = float(nanstd(columns[:, j]))
        return metrics

    def prompt_of(self, problem: Problem):
        """What the policy is sent for ``problem``: its plain prompt, or chat messages (PromptStyle)."""
        return self.prompt_style.prompt_for(self.tokenizer, problem)

    def prompt_ids(self, problems: list[Problem]) -> list[list[int]]:
        """The token ids the policy is conditioned on for each problem."""
        return [encode_prompt(self.tokenizer, self.prompt_of(p), self.cfg.chat_template) for p in problems]

    def generate(self, problems: list[Problem], n: int = 1, greedy: bool = False) -> list[Sample]:
        """``n`` completions of each problem from the rollout engine (timed as ``time/rollout``)."""
        ids = self.prompt_ids(problems)
        with self.timed("rollout"):
            return self.engine.generate(ids, n=n, greedy=greedy)

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Add the seconds spent inside to ``time/<phase>`` of the current step."""
        t0 = time.time()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.time() - t0

    def reward_columns(self, problems: list[Problem], samples: list[Sample]) -> torch.Tensor:
        """(samples, reward functions) rewards of the samples (``problems[i // G]`` owns sample i); counts tokens."""
        self.rollout_tokens += sum(len(s.completion_ids) for s in samples)
        per = len(samples) // len(problems)
        owners = [problems[i // per] for i in range(len(samples))]
        return self.reward_table(owners, [s.text for s in samples], [s.completion_ids for s in samples])

    def reward_table(self, problems: list[Problem], texts: list[str], completion_ids: list[list[int]] | None = None,
                     first_only: bool = False) -> torch.Tensor:
        """Every reward function on (problem, completion) pairs, called as TRL calls them; None -> NaN.

        Keywords: ``prompts``, ``completions``, ``completion_ids``, the dataset
        row's other columns, and ``answer``: the gold answer read from the
        answer column (GSM8K's ``... #### 72`` arrives as ``72``).
        """
        keys = dict.fromkeys(k for p in problems for k in p.columns)
        kwargs = {k: [p.columns.get(k) for p in problems] for k in keys}
        kwargs["answer"] = [p.answer for p in problems]
        prompts = [self.prompt_of(p) for p in problems]
        n_fns = 1 if first_only else len(self.reward_fns)
        table = torch.empty(len(texts), n_fns)
        for j, (fn, name) in enumerate(zip(self.reward_fns[:n_fns], self.reward_names)):
            values = fn(prompts=prompts, completions=texts, completion_ids=completion_ids, **kwargs)
            if len(values) != len(texts):
                raise ValueError(f"reward function {name!r} returned {len(values)} rewards for {len(texts)} "
                                 "completions; it must return one per completion (None for 'no reward')")
            table[:, j] = torch.tensor([math.nan if v is None else float(v) for v in values])
        return table

    def total_reward(self, columns: torch.Tensor) -> torch.Tensor:
        """The weighted sum over reward functions (a None counts 0), NaN where every function returned None."""
        total = (columns * self.reward_weights).nansum(dim=1)
        return torch.where(columns.isnan().all(dim=1), math.nan, total)

    def correct(self, problems: list[Problem], samples: list[Sample]) -> float:
        """How many samples the first reward function scores as right (its sum; None counts 0): pass@1's count."""
        return float(self.reward_table(problems, [s.text for s in samples], first_only=True).nansum())

    # ------------------------------------------------------------------ 2. credit
    def score(self, problems: list[Problem], samples: list[Sample], rewards: torch.Tensor,
              group_ids: torch.Tensor | None = None, credit=None) -> Scored:
        """Token stats (old policy), steps, outcome advantages and token advantages of a batch
        (``acpo.pipeline.assign_credit``, as ``explain`` and the TRL plug-in)."""
        cfg = self.cfg
        per = len(samples) // len(problems)
        tensors = pad_batch([s.prompt_ids for s in samples], [s.completion_ids for s in samples],
                            self.tokenizer.pad_token_id)
        credit = credit or self.credit
        if group_ids is None:
            group_ids = torch.arange(len(samples)) // per
        shaped = self.stage == 2 and cfg.conf_gamma > 0
        stats = None
        with self.timed("score"):
            if shaped:  # the reward reads the old policy's log-probs: score first, then credit with the same stats
                stats = scored_stats(self.policy, *tensors, batch_size=cfg.micro_batch_size)
                rewards = self.confidence_weighted(rewards, samples, stats[0])
            credited = assign_credit(
                self.policy, self.tokenizer, *tensors, [s.text for s in samples], [s.offsets for s in samples],
                {credit.name: credit}, group_ids=group_ids, rewards=rewards, outcome=cfg.outcome,
                answers=[problems[i // per].answer for i in range(len(samples))], segmentation=cfg.segmentation,
                segment_config=self.seg_cfg, advantage_config=self.adv_cfg, batch_size=cfg.micro_batch_size,
                stats=stats, score_tokens=self.needs_old_stats(credit))
        seconds = credited.seconds[credit.name]  # credit time, reported as its own phase
        self.timings["score"] -= seconds
        self.timings["credit"] = self.timings.get("credit", 0.0) + seconds
        result = credited.results[credit.name]
        return Scored(credited.batch, credited.token_advantages[credit.name], result.step_credits, shaped=shaped)

    def needs_old_stats(self, credit) -> bool:
        """Whether anything reads token statistics before the loss.

        At a batch's first optimizer step the old policy is the policy, so the
        training forward's own log-probs, detached, are the old log-probs (as in
        TRL; kept for the batch's later ``num_iterations`` steps) and a separate
        no-grad forward is needed only for step credits that read it or the
        steps cut with it (``needs_stats``, ``needs_steps``: all but ``uniform``), reset boundaries, and
        stage 2's confidence-weighted reward.
        """
        return (credit.needs_stats or credit.needs_steps or self.cfg.is_reset
                or (self.stage == 2 and self.cfg.conf_gamma > 0))

    def confidence_weighted(self, rewards: torch.Tensor, samples: list[Sample], logprobs: torch.Tensor) -> torch.Tensor:
        """Stage 2 [ours]: r' = r (1 + g (1 - conf)) - (1 - r) g conf, conf = geo-mean prob of the answer tokens."""
        gamma = self.cfg.conf_gamma
        conf = torch.zeros(len(samples))
        for i, s in enumerate(samples):
            m = re.search(r"####\s*(\S.*)$", s.text, re.MULTILINE)
            if not m:
                continue
            toks = [j for j, (a, b) in enumerate(s.offsets) if b > m.start(1) and a < m.end(1)]
            if toks:
                conf[i] = float(torch.exp(logprobs[i, toks].mean()))
        return rewards * (1 + gamma * (1 - conf)) - (1 - rewards) * gamma * conf

    # ------------------------------------------------------------------ 3. resets
    def add_reset_groups(self, scored: Scored, problems, samples, rewards) -> Scored:
        """RRPO / SRPO / attr_reset: M continuations from a step prefix of failed completions (METHODS.md §3.4)."""
        cfg, g, batch = self.cfg, self.cfg.group_size, scored.batch
        failed = [i for i in range(len(samples)) if rewards[i] < 1 and len(batch.steps[i]) >= 2]
        random.shuffle(failed)
        failed = failed[: cfg.resets_per_step]
        if not failed:
            return scored
        prefixes, owners = [], []
        for i in failed:
            k = self.reset_boundary(i, batch, problems[i // g], samples[i])
            end = batch.steps[i][k - 1].token_end if k > 0 else 0
            prefixes.append(samples[i].prompt_ids + samples[i].completion_ids[:end])
            owners.append((i, samples[i].text[: batch.steps[i][k - 1].char_end] if k > 0 else ""))
        with self.timed("rollout"):
            cont = self.engine.generate(prefixes, n=cfg.reset_samples)
        m = cfg.reset_samples
        new_problems = [problems[i // g] for i, _ in owners]
        texts = [owners[j // m][1] + c.text for j, c in enumerate(cont)]
        self.rollout_tokens += sum(len(c.completion_ids) for c in cont)
        owners_per_sample = [new_problems[j // m] for j in range(len(cont))]
        cont_rewards = self.total_reward(self.reward_table(owners_per_sample, texts, [c.completion_ids for c in cont]))
        # continuations: prompt = prompt + prefix (no gradient), completion = the suffix only
        group_ids = torch.arange(len(cont)) // m + int(batch.group_ids.max()) + 1
        extra = self.score(new_problems, cont, cont_rewards, group_ids,
                           credit=get_credit_method(RESET_CONTINUATION_CREDIT))
        return concat_scored(scored, extra)

    def reset_boundary(self, i: int, batch: CreditBatch, problem: Problem, sample: Sample) -> int:
        """Number of steps kept as the prefix: rrpo random, srpo self-named error, attr_reset lowest ACPO credit."""
        k_steps = len(batch.steps[i])
        if self.cfg.method == "rrpo":
            return random.randrange(1, k_steps)
        if self.cfg.method == "srpo":
            return self.self_localise(sample.text, batch.steps[i]) - 1
        one = CreditBatch(*(t[i : i + 1] for t in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                                   batch.completion_mask, batch.logprobs, batch.entropy)),
                          steps=[batch.steps[i]], advantages=batch.advantages[i : i + 1],
                          group_ids=torch.zeros(1, dtype=torch.long), answers=[problem.answer], model=self.policy,
                          tokenizer=self.tokenizer)
        with self.timed("credit"):
            credits = make_credit(RESET_BOUNDARY_CREDIT, probe=self.probe).credits(one).step_credits[0]
        return int(torch.argmin(credits))  # keep the steps before the blamed one

    def self_localise(self, text: str, steps) -> int:
        """SRPO: ask the policy which step is first wrong (see ``parse_self_localisation``)."""
        prompt = self_localisation_prompt([s.text for s in steps])
        ids = encode_prompt(self.tokenizer, prompt, self.cfg.chat_template)
        with self.timed("rollout"):
            out = self.engine.generate([ids], n=1, greedy=True)[0]
        self.rollout_tokens += len(out.completion_ids)
        return parse_self_localisation(out.text, len(steps))[0]

    # ------------------------------------------------------------------ 4. loss and step
    def optimize(self, scored: Scored) -> dict:
        with self.timed("update"):
            return self.update(scored)

    def update(self, scored: Scored) -> dict:
        """One optimizer step on the batch: micro-batch losses, clipping, step; returns the step's metrics.

        Gradients add up over the micro-batches; accelerate's ``no_sync`` keeps
        DDP from averaging them across processes until the last one's backward.
        """
        cfg, batch = self.cfg, scored.batch
        self.model.train()
        adv = scored.token_adv
        mask = batch.completion_mask
        ent_weight = self.entropy_weights(scored) if (self.stage == 1 and self.entropy_coef > 0) else None
        ref_lp = None
        if self.stage == 2 and self.ref_model is not None and cfg.kl_coef > 0:
            ref_lp, _ = scored_stats(self.ref_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                     batch.completion_mask, batch_size=cfg.micro_batch_size)
        old_logprobs = scored.old_logprobs if scored.old_logprobs is not None else batch.logprobs
        first_logprobs = []  # this first step's detached log-probs: the old ones of the batch's later steps
        n_seq, n_tok = len(mask), int(mask.sum())
        mb, device = cfg.micro_batch_size, self.acc.device
        loss_sum = 0.0
        sums = {"entropy": 0.0, "clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 0.0,
                "clip_ratio/region_mean": 0.0, "kl": 0.0}  # over tokens, then divided by the token count
        self.optimizer.zero_grad(set_to_none=True)
        for b0 in range(0, n_seq, mb):
            sl = slice(b0, b0 + mb)
            t = [x[sl].to(device) for x in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, mask)]
            last = b0 + mb >= n_seq
            with contextlib.nullcontext() if last else self.acc.no_sync(self.model):
                lp, ent = completion_stats(self.model, *t)
                old_lp = lp.detach() if old_logprobs is None else old_logprobs[sl].to(device)
                if old_logprobs is None and cfg.num_iterations > 1:
                    first_logprobs.append(old_lp.cpu())
                loss, metrics = policy_loss(
                    lp, old_lp, adv[sl].to(device), t[3], cfg.eps_low, cfg.eps_high,
                    cfg.aggregation, cfg.max_new_tokens, entropy=ent,
                    entropy_weight=None if ent_weight is None else ent_weight[sl].to(device),
                    ref_logprobs=None if ref_lp is None else ref_lp[sl].to(device), kl_coef=cfg.kl_coef,
                )
                # micro-batch losses add up to the whole batch's aggregate
                share = {"token_mean": int(t[3].sum()) / max(1, n_tok)}.get(cfg.aggregation, len(t[0]) / n_seq)
                self.acc.backward(loss * share)
            loss_sum += float(loss.detach()) * share
            tokens = float(t[3].sum())
            sums["entropy"] += float((ent.detach() * t[3]).sum())
            for k, v in metrics.items():
                sums[k] += v * tokens
        if first_logprobs:
            scored.old_logprobs = torch.cat(first_logprobs)
        grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.check_finite(loss_sum, grad_norm)  # before the step: a NaN must not reach the weights
        learning_rate = self.scheduler.get_last_lr()[0]  # the one this step uses, as transformers' Trainer logs it
        self.optimizer.step()
        self.check_weights_finite()  # an inf learning rate or a NaN clipping norm gets past the check above
        self.scheduler.step()
        self.engine.sync_weights(self.policy)
        # token means over every process's tokens, as TRL's: sums and counts reduced, then divided
        totals = self.reduce({**sums, "tokens": float(n_tok)}, op="sum")
        logs = {k: v / max(1.0, totals["tokens"]) for k, v in totals.items() if k != "tokens"}
        if batch.entropy is not None:  # the sampling policy's entropy (the batch's scored statistics)
            m = mask.bool()
            logs["entropy"] = self.reduce({"e": float(batch.entropy[m].sum())}, op="sum")["e"] / max(
                1.0, totals["tokens"])
        credits = torch.cat(scored.step_credits)
        logs.update(self.reduce({
            "loss": loss_sum, "credit/mean": float(credits.mean()),
            "credit/std": float(credits.std()) if credits.numel() > 1 else 0.0,
            **self.credit.batch_metrics(adv, batch),
            **({"shaped_reward": float(batch.rewards[: self.main_rows()].nanmean())} if scored.shaped else {}),
        }))
        logs["grad_norm"] = float(grad_norm) if grad_norm is not None else math.nan  # before clipping, as TRL's
        logs["learning_rate"] = learning_rate
        if self.ref_model is None:
            logs.pop("kl")
        return logs

    def main_rows(self) -> int:
        """Completions of the sampled groups on this process (reset continuations come after them)."""
        return self.cfg.prompts_per_step // self.world * self.cfg.group_size

    def count_tokens(self, batch: CreditBatch) -> None:
        """TRL's ``num_tokens``: prompt and completion tokens of the batches trained on, every process, so far."""
        local = float(batch.prompt_mask.sum() + batch.completion_mask.sum())
        self.num_tokens += int(self.reduce({"tokens": local}, op="sum")["tokens"])

    def entropy_weights(self, scored: Scored) -> torch.Tensor:
        """beta on the tokens of the top-|c_hat| fraction f of steps, 0 elsewhere (METHODS.md §5)."""
        batch = scored.batch
        hat = normalize_step_credits(scored.step_credits, batch.group_ids)
        flat = torch.cat(hat).abs()
        k = max(1, math.ceil(self.cfg.entropy_top_frac * flat.numel()))
        thr = torch.topk(flat, k).values.min()
        chosen = [(h.abs() >= thr).float() for h in hat]
        return self.entropy_coef * broadcast_steps(chosen, batch.step_index, batch.completion_mask)

    def check_finite(self, loss: float, grad_norm: torch.Tensor | None) -> None:
        """Stop the run (NonFiniteLossError) if any process has a NaN/inf loss or gradient norm."""
        norm = 0.0 if grad_norm is None else float(grad_norm)  # DeepSpeed clips inside and returns None
        bad = not (math.isfinite(loss) and math.isfinite(norm))
        if not self.any_process(bad):
            return
        if not math.isfinite(loss):
            what = f"loss is {'NaN' if math.isnan(loss) else loss}"
        elif not math.isfinite(norm):
            what = f"gradient norm is {'NaN' if math.isnan(norm) else norm}"
        else:
            what = "loss is NaN/inf on another process"
        raise NonFiniteLossError(f"{what} at step {self.step + 1}; the optimizer step was not taken; "
                                 f"{self.last_good_checkpoint()}")

    def check_weights_finite(self) -> None:
        """Stop the run (NonFiniteLossError) if the optimizer step made any trained weight NaN/inf."""
        bad = next((n for n, p in self.policy.named_parameters() if p.requires_grad and not torch.isfinite(p).all()),
                   None)
        if not self.any_process(bad is not None):
            return
        cfg = self.cfg
        raise NonFiniteLossError(
            f"weights became NaN/inf in the optimizer step of step {self.step + 1} ({bad or 'on another process'}; "
            f"lr={cfg.lr}, max_grad_norm={cfg.max_grad_norm}); nothing of this step was saved; "
            f"{self.last_good_checkpoint()}")

    def last_good_checkpoint(self) -> str:
        good = complete_checkpoints(self.run_dir, self.cfg.lora_r > 0)
        return (f"the last good checkpoint is {good[-1]} (resume with: {self.resume_command()})" if good else
                "no checkpoint was written yet (--save-every N writes one every N steps)")

    # ------------------------------------------------------------------ 5. bookkeeping
    def adapt_entropy_coef(self, mean_entropy: float) -> None:
        """beta <- clip(beta * exp(eta (H* - H)), beta_min, beta_max); H* = first batch's entropy unless set."""
        cfg = self.cfg
        if not cfg.entropy_bonus or self.stage != 1:
            return
        if self.entropy_target <= 0:
            self.entropy_target = mean_entropy
        beta = self.entropy_coef * math.exp(cfg.entropy_eta * (self.entropy_target - mean_entropy))
        self.entropy_coef = min(cfg.entropy_coef_max, max(cfg.entropy_coef_min, beta))

    def budget_spent(self) -> bool:
        """max_rollout_tokens sampled, counted over every process (so all of them stop at the same step)."""
        if not self.cfg.max_rollout_tokens:
            return False
        return self.reduce({"tokens": self.rollout_tokens}, op="sum")["tokens"] >= self.cfg.max_rollout_tokens

    def maybe_switch_stage(self, pass_at_1: float) -> None:
        """Stage 2 after stage1_steps, or when held-out pass@1 stalled for `patience` evaluations."""
        cfg = self.cfg
        if pass_at_1 > self.best_eval:
            self.best_eval, self.evals_since_best = pass_at_1, 0
        else:
            self.evals_since_best += 1
        if not cfg.two_stage or self.stage == 2:
            return
        if self.step >= cfg.stage1_steps or self.evals_since_best >= cfg.patience:
            self.stage = 2
            self.ref_model = copy.deepcopy(self.policy).eval().requires_grad_(False)

    @torch.no_grad()
    def evaluate(self, metrics: dict | None = None) -> float:
        """Held-out pass@1, greedy and sampled (sharded over processes); writes traces/step-N.parquet.

        The sampled figure (one completion per problem at the training
        temperature, seeded per step) runs on its own RNG state, so the
        training stream does not depend on how often we evaluate.
        """
        shard = self.eval_set[self.rank :: self.world]
        prompts = self.prompt_ids(shard)
        greedy = self.engine.generate(prompts, n=1, greedy=True)
        rng = torch.get_rng_state()
        torch.manual_seed(self.cfg.seed * 100_003 + self.step)
        sampled = self.engine.generate(prompts, n=1)
        torch.set_rng_state(rng)
        counts = {"greedy": self.correct(shard, greedy), "sampled": self.correct(shard, sampled),
                  "n": float(len(shard))}
        total = self.reduce(counts, op="sum")
        pass_at_1 = total["greedy"] / max(1.0, total["n"])
        found = {"eval/pass@1": pass_at_1, "eval/pass@1_sampled": total["sampled"] / max(1.0, total["n"])}
        if metrics is not None:
            metrics.update(found)
        elif self.acc.is_main_process:
            self.log({"step": self.step, **found, "stage": self.stage, "rollout_tokens": self.rollout_tokens})
        self.last_sampled = found["eval/pass@1_sampled"]
        if self.acc.is_main_process and self.cfg.trace_problems > 0:
            self.write_traces(self.eval_set[: self.cfg.trace_problems])
        return pass_at_1

    def write_traces(self, problems: list[Problem]) -> None:
        prompts = [render_prompt(self.tokenizer, self.prompt_of(p), self.cfg.chat_template) for p in problems]
        ids = [encode_prompt(self.tokenizer, x, self.cfg.chat_template) for x in prompts]
        samples = self.engine.generate(ids, n=1, greedy=True)
        keep = [(p, x, s) for p, x, s in zip(problems, prompts, samples) if s.text.strip()]
        if not keep:
            return
        methods = list(dict.fromkeys([self.credit_name, *TRACED_CREDITS]))
        rewards = self.total_reward(self.reward_table([p for p, _, _ in keep], [s.text for _, _, s in keep])).tolist()
        traces = explain_batch(
            self.policy, self.tokenizer, [x for _, x, _ in keep], [s.text for _, _, s in keep], method=methods,
            segmentation=self.cfg.segmentation, answers=[p.answer for p, _, _ in keep], rewards=rewards,
            group_ids=list(range(len(keep))), probe=self.probe, segment_config=self.seg_cfg,
            chat_template=self.cfg.chat_template,
            meta=[{"run": self.run_dir.name, "checkpoint": f"step-{self.step}", "prompt_id": p.id,
                   "completion_id": f"{p.id}/greedy"} for p, _, _ in keep],
        )
        frames = []
        for (p, _, _), tr in zip(keep, traces):
            df = tr.to_frame()
            first = first_error_step(get_task(p.family).check(p, tr.completion), tr.steps) if p.family in TASKS else None
            df["prompt"], df["completion"], df["answer"] = tr.prompt, tr.completion, p.answer
            df["first_error_step"] = -1 if first is None else first
            df["method"] = self.cfg.method
            frames.append(df)
        frame = pd.concat(frames, ignore_index=True)
        write_atomic(self.run_dir / TRACES / f"step-{self.step}.parquet",
                     lambda tmp: frame.to_parquet(tmp, index=False), f"traces of step {self.step}")

    def log(self, metrics: dict) -> None:
        """One line of metrics.jsonl (what the app reads), and the same numbers to the trackers of --report-to."""
        if not self.acc.is_main_process:
            return
        append_metrics(self.run_dir, metrics)
        self.acc.log({k: v for k, v in metrics.items() if k != "step"}, step=metrics["step"])

    def start_trackers(self) -> None:
        """accelerate's trackers for --report-to: tensorboard in the run folder, trackio / wandb runs named after it.

        They are made here, once the run folder is known, and handed to
        accelerate as its own; ``Accelerator.log`` then writes to each.
        """
        from accelerate.tracking import TensorBoardTracker, TrackioTracker, WandBTracker

        project = os.environ.get("ACPO_PROJECT", "acpo")
        make = {"tensorboard": lambda: TensorBoardTracker("tensorboard", str(self.run_dir)),
                "trackio": lambda: TrackioTracker(project, name=self.run_dir.name),
                "wandb": lambda: WandBTracker(project, name=self.run_dir.name,
                                              resume="allow" if self.cfg.resume else None)}
        names = [n for n in self.cfg.report_to if n != "none"]
        if not names:
            return
        self.acc.log_with = [make[n]() for n in names]
        config = {k: ",".join(map(str, v)) if isinstance(v, list) else v
                  for k, v in dataclasses.asdict(self.cfg).items()}
        self.acc.init_trackers(project, config=config)

    def reduce(self, values: dict, op: str = "mean") -> dict:
        """Average (or sum) scalar metrics across processes."""
        if self.world == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], device=self.acc.device)
        t = self.acc.reduce(t, op)
        return dict(zip(keys, t.tolist()))

    # ------------------------------------------------------------------ 6. stopping on a signal
    def catch_stop_signals(self) -> dict:
        """Ctrl-C / SIGTERM set a flag the loop reads after each step; a second one aborts at once.

        Returns the handlers it replaced. Python only lets the main thread set
        handlers, so elsewhere (a Gradio worker thread) signals keep their defaults.
        """
        self.stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self.on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_stop_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is not None:
            raise KeyboardInterrupt(f"second stop signal ({name})")
        self.stop_signal = name
        if self.acc.is_main_process:
            # os.write, not print: printing while tqdm writes to stderr can raise "reentrant call"
            say(f"\n{name}: finishing step {self.step + 1}, then writing a checkpoint "
                "(press Ctrl-C again to abort at once)\n")

    def any_process(self, flag: bool) -> bool:
        """True if ``flag`` is true on any process; every process must call it, and all get the same answer."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.acc.device)
        return bool(self.acc.reduce(t, "sum").item() > 0)

    def resume_command(self) -> str:
        launcher = "python" if self.world == 1 else f"accelerate launch --num_processes {self.world}"
        return f"{launcher} train.py --resume {shlex.quote(str(self.run_dir))}"

    # ------------------------------------------------------------------ checkpoints (acpo.checkpoint)
    def save_checkpoint(self) -> None:
        """checkpoints/step-N: weights (adapter for LoRA), tokenizer, optimizer/scheduler/RNG/curriculum state."""
        rank_state = {"rng": rng_state(), "curriculum": self.curriculum.state_dict()}
        ranks = [rank_state] if self.world == 1 else gather_objects(rank_state)
        failed = None
        if self.acc.is_main_process:
            state = {
                "step": self.step, "stage": self.stage, "entropy_coef": self.entropy_coef,
                "entropy_target": self.entropy_target, "best_eval": self.best_eval,
                "evals_since_best": self.evals_since_best, "rollout_tokens": self.rollout_tokens,
                "num_tokens": self.num_tokens,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "ref_model": None if self.ref_model is None else self.ref_model.state_dict(), "ranks": ranks,
            }
            try:
                write_checkpoint(self.run_dir, self.step, self.policy, self.tokenizer, state)
            except (OSError, ValueError) as err:
                failed = err
        if self.any_process(failed is not None):  # every process stops, not only the one that wrote
            raise failed or RuntimeError(f"the main process could not write checkpoint step-{self.step}")

    def load_checkpoint(self) -> None:
        """Weights and state from the newest readable checkpoint; the metrics logged after it are dropped."""
        ck, state_dict, state = newest_checkpoint(self.run_dir, self.cfg.lora_r > 0, warn=self.acc.is_main_process)
        if self.cfg.lora_r > 0:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.policy, state_dict)
        else:
            missing, unexpected = self.policy.load_state_dict(state_dict, strict=False)
            if unexpected or [k for k in missing if "lm_head" not in k]:
                raise ValueError(f"checkpoint {ck} does not match the model: missing {missing}, unexpected {unexpected}")
            if "lm_head.weight" in missing and getattr(self.policy.config, "tie_word_embeddings", False):
                self.policy.tie_weights()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.stage = state["step"], state["stage"]
        self.entropy_coef, self.entropy_target = state["entropy_coef"], state["entropy_target"]
        self.best_eval, self.evals_since_best = state["best_eval"], state["evals_since_best"]
        self.rollout_tokens = state["rollout_tokens"]
        self.num_tokens = state.get("num_tokens", 0)  # absent from checkpoints written before it was counted
        self.resumed_from = self.step
        if state["ref_model"] is not None:
            self.ref_model = copy.deepcopy(self.policy).eval().requires_grad_(False)
            self.ref_model.load_state_dict(state["ref_model"])
        ranks = state["ranks"]
        if len(ranks) != self.world:
            raise ValueError(f"checkpoint {ck} was written by {len(ranks)} processes; resume it with as many")
        set_rng_state(ranks[self.rank]["rng"])
        self.curriculum.load_state_dict(ranks[self.rank]["curriculum"])
        if self.acc.is_main_process:
            # metrics logged after this checkpoint belong to the lost future (and a torn last line goes too)
            truncate_metrics(self.run_dir, self.step)
            (self.run_dir / SUMMARY).unlink(missing_ok=True)  # training further: not finished any more

    # ------------------------------------------------------------------ setup helpers
    def claim_run_dir(self) -> Path:
        """--resume's folder, or output_dir/run_name: new, empty, or (with --overwrite) a run to start afresh.

        The main process names and checks it and tells the others, so every rank
        agrees; with --overwrite the old contents go later, once the model loaded.
        """
        cfg = self.cfg
        if cfg.resume:
            if cfg.overwrite:
                raise ValueError(f"--resume '{cfg.resume}' continues that run and --overwrite deletes it: pass one")
            done = finished_at(Path(cfg.resume))
            if done is not None and cfg.steps <= done:
                raise RunFinished(f"run '{cfg.resume}' finished at step {done} (it has summary.json): nothing to "
                                  f"resume, nothing changed; to train it further pass --steps N with N > {done}")
            return Path(cfg.resume)
        found = [cfg.run_name or f"{cfg.method}-{datetime.now():%Y%m%d-%H%M%S}", None]
        if self.acc.is_main_process:
            found[1] = run_dir_problem(Path(cfg.output_dir) / found[0], cfg.overwrite)
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(found)
        if found[1]:
            raise ValueError(found[1])
        return Path(cfg.output_dir) / found[0]

    def lock_run_dir(self):
        """The main process, the one writer, locks the run folder (making a fresh run's); others get None.

        A fresh run's folder is checked again under the lock: another run may
        have claimed the name since ``claim_run_dir`` looked.
        """
        lock, error = None, [None]
        if self.acc.is_main_process:
            try:
                lock = lock_run_folder(self.run_dir, fresh=not self.cfg.resume, overwrite=self.cfg.overwrite)
            except (ValueError, OSError) as err:
                error[0] = err
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            message = [None if error[0] is None else str(error[0])]
            broadcast_object_list(message)
            if message[0] and error[0] is None:
                raise ValueError(message[0])
        if error[0] is not None:
            raise error[0]
        return lock

    def check_inputs(self) -> None:
        """What the config cannot check alone: trackers are installed, the probe tokenizes, and every prompt
        leaves room to answer."""
        import importlib.util

        for tracker in self.cfg.report_to:
            module = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}.get(tracker)
            if module and importlib.util.find_spec(module) is None:
                raise ValueError(f"--report-to {tracker} needs the {module} package, which is not installed: "
                                 f"`pip install {module}`, or leave {tracker} out")
        if hasattr(self.credit, "probe") and not self.tokenizer(self.probe, add_special_tokens=False)["input_ids"]:
            raise ValueError(f"probe {self.probe!r} is no token for this tokenizer; pass a non-empty --probe")
        context = getattr(self.policy.config, "max_position_embeddings", None)
        if not context:
            return
        budget = context - self.cfg.max_new_tokens
        problems = [*self.pool, *self.eval_set]
        long = [(p.id, len(ids)) for p, ids in zip(problems, self.prompt_ids(problems)) if len(ids) > budget]
        if long:
            shown = ", ".join(f"{pid} ({n} tokens)" for pid, n in long[:3])
            raise ValueError(
                f"{len(long)} problem(s) leave no room to answer in the model's context of {context} tokens with "
                f"--max-new-tokens {self.cfg.max_new_tokens}: {shown}; drop those rows, shorten them, or lower "
                "--max-new-tokens")

    def load_problems(self) -> tuple[list[Problem], list[Problem], dict[str, set[int]]]:
        return load_problem_sets(self.cfg)

    def resolve_probe(self) -> str:
        return resolve_probe(self.cfg)

    @staticmethod
    def seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def load_problem_sets(cfg: TrainConfig) -> tuple[list[Problem], list[Problem], dict[str, set[int]]]:
    """The training pool, the held-out evaluation set and each family's starting levels (any backend)."""
    if cfg.dataset:
        from acpo.data import load_problems

        problems = load_problems(cfg.dataset, question_field=cfg.question_field, answer_field=cfg.answer_field,
                                 split=cfg.dataset_split, config=cfg.dataset_config)
        rng = random.Random(cfg.seed)
        shuffled = problems[:]
        rng.shuffle(shuffled)
        n_eval = min(cfg.eval_problems, max(1, len(shuffled) // 5))
        return shuffled[n_eval:] or shuffled, shuffled[:n_eval], {p.family: {p.level} for p in shuffled}
    mix = parse_mix(cfg.tasks)
    families = sorted({f for f, _ in mix})
    pool = make_problems(families=families, levels=None, n=cfg.pool_size, seed=RL_SEED_OFFSET + cfg.seed)
    start: dict[str, set[int]] = {}
    for f, lv in mix:
        start.setdefault(f, set()).add(lv)
    if not cfg.curriculum:  # without the curriculum, train on exactly the mix
        pool = [p for p in pool if p.level in start[p.family]]
    eval_set = heldout_problems(min(cfg.eval_problems, 600), tuple(mix))
    evaluated = {p.prompt for p in eval_set}  # make_problems leaves out the default mix's held-out pool only
    return [p for p in pool if p.prompt not in evaluated], eval_set, start


def credit_of(cfg: TrainConfig) -> str:
    """The credit a run trains with: ``--credit``, or its method's own (any backend)."""
    return CREDIT_OF_METHOD[cfg.method] if cfg.credit == "auto" else credit_name(cfg.credit)


def credit_options(cfg: TrainConfig, probe: str) -> dict:
    """Constructor options of ``credit_of(cfg)`` from the config (``CREDIT_CONFIG_FIELDS``), and the answer probe
    for a credit that takes one (any backend)."""
    credit = credit_of(cfg)
    options = {arg: getattr(cfg, fld) for arg, fld in CREDIT_CONFIG_FIELDS.get(credit, {}).items()}
    return {"probe": probe, **options} if hasattr(make_credit(credit, probe=probe), "probe") else options


def reward_functions(cfg: TrainConfig) -> list:
    """``--reward``'s functions; ``auto`` is the synthetic tasks' ``####`` check (their checker's verdict), else
    ``answer`` (any backend)."""
    auto = "answer" if cfg.dataset else "hash_answer"
    return [get_reward(auto if spec == "auto" else spec) for spec in cfg.reward]


def resolve_probe(cfg: TrainConfig) -> str:
    """ACPO's answer probe: --probe, or the task's ('#### '), or the answer format's for datasets."""
    if cfg.probe != "auto":
        return cfg.probe
    return TASKS[parse_mix(cfg.tasks)[0][0]].answer_probe if not cfg.dataset else answer_probe(cfg.answer_format)


def concat_scored(a: Scored, b: Scored) -> Scored:
    """One scored batch from two (prompt and completion widths re-padded)."""
    x, y = a.batch, b.batch

    def rows(batch):
        return [(batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist(),
                 batch.completion_ids[i][batch.completion_mask[i].bool()].tolist()) for i in range(len(batch.steps))]

    both = rows(x) + rows(y)
    tensors = pad_batch([p for p, _ in both], [c for _, c in both], x.tokenizer.pad_token_id)
    width = tensors[2].shape[1]

    def cat(u, v):
        return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in (u, v)])

    batch = CreditBatch(*tensors, logprobs=cat(x.logprobs, y.logprobs), entropy=cat(x.entropy, y.entropy),
                        steps=x.steps + y.steps, advantages=torch.cat([x.advantages, y.advantages]),
                        group_ids=torch.cat([x.group_ids, y.group_ids]), rewards=torch.cat([x.rewards, y.rewards]),
                        answers=x.answers + y.answers, texts=x.texts + y.texts, model=x.model, tokenizer=x.tokenizer)
    return Scored(batch, cat(a.token_adv, b.token_adv), a.step_credits + b.step_credits, shaped=a.shaped)


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sample standard deviation over the non-NaN values (NaN for fewer than two), as TRL's ``nanstd``."""
    mean = x.nanmean(dim=dim, keepdim=True) if dim is not None else x.nanmean()
    count = (~x.isnan()).sum(dim=dim) if dim is not None else (~x.isnan()).sum()
    squares = ((x - mean) ** 2).nansum(dim=dim) if dim is not None else ((x - mean) ** 2).nansum()
    return torch.where(count > 1, (squares / (count - 1).clamp(min=1)).sqrt(), math.nan)


def known(rewards: torch.Tensor) -> list[float]:
    """The rewards that are not NaN (a reward function's None), as floats."""
    return [float(r) for r in rewards if not torch.isnan(r)]


class NonFiniteLossError(RuntimeError):
    """The loss, the gradient or the weights went NaN/inf; the run stopped, and nothing non-finite was saved."""


def restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def say(text: str) -> None:
    """Write to stderr without Python's buffered stream (safe inside a signal handler)."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured by pytest)
        pass


def gather_objects(obj) -> list:
    from accelerate.utils import gather_object

    return gather_object([obj])


def run(cfg: TrainConfig) -> dict:
    """Train and return the summary (start/end held-out pass@1, wall time, run folder)."""
    if cfg.backend == "trl":  # TRL's GRPOTrainer with our step credit (acpo.integrations.trl)
        from acpo.integrations.trl import run_trl

        return run_trl(cfg)
    trainer = Trainer(cfg)
    try:
        return trainer.train()
    finally:
        # Tear the process group down before the interpreter exits: gloo's threads
        # otherwise abort the process ("terminate called without an active exception").
        trainer.acc.end_training()
