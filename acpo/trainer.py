"""The RL loop: rollout -> reward -> segment -> credit -> advantage -> loss -> step -> log.

Read top to bottom: ``__init__`` builds the run (``acpo.recipe``); ``train`` evaluates, logs and checkpoints
around ``step``, one optimizer step, whose phases follow in order. Every number comes from the shared core
(``acpo.stats``, ``acpo.segment``, ``acpo.credit``, ``acpo.advantage``), so what the app shows is what trains.
Metrics carry TRL's names with TRL's meanings (docs/METHODS.md, "TRL's names").
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import datetime

import torch
from tqdm.auto import tqdm

from acpo.advantage import AdvantageConfig
from acpo.checkpoint import TrainState, complete_checkpoints, load_training, save_training
from acpo.config import RESET_CONTINUATION_CREDIT, TRACED_CREDITS, TrainConfig, to_yaml
from acpo.credit import CreditBatch
from acpo.curriculum import Curriculum, redraw_equal_groups
from acpo.distributed import (
    StopSignals, any_process, end_processes, from_main, gather_objects, gather_tensors, reduce_values, weights_digest,
)
from acpo.evaluation import heldout_counts, write_traces
from acpo.loss import accumulate_gradients, check_finite, check_weights_finite
from acpo.pipeline import assign_credit, make_credit
from acpo.prompts import PromptStyle, render_prompt
from acpo.recipe import (
    check_inputs, credit_of, credit_options, load_problem_sets, optimizer_and_schedule, resolve_probe,
    reward_functions, seed_everything, trainable_policy,
)
from acpo.regulation import confidence_weighted, note_evaluation
from acpo.resets import concat_batches, pad_cat, reset_groups
from acpo.reward_table import Rewards, batch_metrics, known, total_reward
from acpo.rollout import Sample, make_engine
from acpo.runs import (
    CHECKPOINTS, SUMMARY, append_metrics, claim_run_folder, eval_at, lock_shared, read_metrics, resume_command,
    run_summary, start_run_folder, start_trackers, truncate_metrics, write_summary,
)
from acpo.segment import SegmentConfig
from acpo.stats import scored_stats
from acpo.tasks import Problem
from acpo.tokens import encode_prompt, pad_batch


@dataclass
class Scored:
    """A credit batch with what the loss needs: token advantages and step credits. ``old_logprobs``: the sampling
    policy's, kept from the batch's first optimizer step; ``shaped``: the rewards are stage 2's weighted ones;
    ``rollout_logprobs``: each token's log-prob under the engine that sampled it, (batch, time) like the batch."""

    batch: CreditBatch
    token_adv: torch.Tensor
    step_credits: list[torch.Tensor]
    old_logprobs: torch.Tensor | None = None
    shaped: bool = False
    rollout_logprobs: torch.Tensor | None = None  # the rollout engine's, where it is not the trained model (vLLM)


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
        seed_everything(cfg.seed + self.rank)
        main = self.acc.is_main_process
        share = lambda value: from_main(self.acc, value)  # noqa: E731  the main process's verdict, on every process
        self.run_dir = claim_run_folder(cfg.output_dir, cfg.run_name or f"{cfg.recipe}-{datetime.now():%Y%m%d-%H%M%S}",
                                        cfg.resume, cfg.overwrite, cfg.steps, main, share)

        # the policy, its optimizer and the rollout engine
        model, self.tokenizer = trainable_policy(cfg)
        optimizer, self.scheduler = optimizer_and_schedule(cfg, model)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.policy = self.acc.unwrap_model(self.model)
        self.engine = make_engine(cfg.rollout_engine, self.policy, self.tokenizer, cfg.model, cfg)

        # prompts, rewards, credit
        self.prompt_style = PromptStyle(cfg.chat_template, cfg.system_prompt, cfg.instruction, cfg.answer_format)
        self.credit_name, self.probe = credit_of(cfg), resolve_probe(cfg)
        self.credit = make_credit(self.credit_name, credit_options(cfg, self.probe))
        self.seg_cfg = SegmentConfig(entropy_quantile=cfg.entropy_quantile, min_step_tokens=cfg.min_step_tokens,
                                     max_reasoning_steps=cfg.max_reasoning_steps)
        self.rewards = Rewards(reward_functions(cfg), cfg.reward_weights, self.prompt_of)
        self.adv_cfg = AdvantageConfig(outcome=cfg.outcome, composition=cfg.composition,
                                       credit_scale=cfg.credit_scale, w_min=cfg.w_min, w_max=cfg.w_max)

        # problems: the training pool (curriculum) and the held-out evaluation set
        self.pool, self.eval_set, start_levels = load_problem_sets(cfg)
        self.curriculum = Curriculum(self.pool, start_levels, cfg.curriculum, cfg.curriculum_eps,
                                     cfg.unlock_threshold, seed=cfg.seed + self.rank)
        problems = [*self.pool, *self.eval_set]  # checked before the run folder exists: a typo needs no --overwrite
        check_inputs(cfg, self.tokenizer, self.policy, problems, self.prompt_ids, self.credit_name, self.probe)

        # state: what a checkpoint carries, and the batch in training
        self.state = TrainState()
        self.timings: dict[str, float] = {}  # seconds per phase of the current step (time/*)
        self.rollout_metrics: dict[str, float] = {}  # TRL's reward and completion metrics of the batch in training
        self.scored: Scored | None = None  # the batch of rollouts the next optimizer step trains on
        self.last_sampled = float("nan")
        self.ref_model = None
        self.resumed_from = None
        self.lock = lock_shared(self.run_dir, not cfg.resume, cfg.overwrite, main, share)  # held until train() ends
        try:
            if cfg.resume:
                self.load_checkpoint()
                self.engine.sync_weights(self.policy)  # a separate engine (vLLM) started from cfg.model
            elif main:  # emptied only now, after the model loaded (it may even live in the old run folder)
                # saved without --overwrite, so that `--resume` of this folder does not ask to wipe it
                start_run_folder(self.run_dir, to_yaml(dataclasses.replace(cfg, overwrite=False)), cfg.overwrite)
            self.acc.wait_for_everyone()
            start_trackers(self.acc, cfg.report_to, self.run_dir, bool(cfg.resume), dataclasses.asdict(cfg))
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    # ------------------------------------------------------------------ the run: steps, evaluations, logs, checkpoints
    def train(self) -> dict:
        """Train to ``cfg.steps`` (or the rollout budget, or a stop signal); the summary ``train.py`` prints."""
        signals = StopSignals(self.acc.is_main_process, lambda: self.state.step + 1)
        try:
            return self.train_loop(signals)
        finally:
            signals.restore()
            for tracker in self.acc.trackers:
                tracker.finish()
            self.acc.trackers.clear()
            if self.lock is not None:  # another process may write the run folder now
                self.lock.release()

    def train_loop(self, signals: StopSignals) -> dict:
        cfg, main = self.cfg, self.acc.is_main_process
        start_time = time.time()
        last_eval = self.evaluate() if self.state.step == 0 else eval_at(read_metrics(self.run_dir), "last")
        stopped_by = None
        tqdm.monitor_interval = 0  # no monitor thread: nothing of ours may run on while the interpreter exits
        bar = tqdm(desc=cfg.recipe, initial=self.state.step, total=cfg.steps, disable=not main, dynamic_ncols=True)
        while self.state.step < cfg.steps:
            metrics = self.step()
            last = self.state.step == cfg.steps or (cfg.max_rollout_tokens > 0 and self.reduce(  # the budget spent
                {"tokens": self.state.rollout_tokens}, op="sum")["tokens"] >= cfg.max_rollout_tokens)
            if self.state.step % cfg.eval_every == 0 or last:
                t_eval = time.time()
                last_eval = self.evaluate(metrics)
                metrics["time/eval"] = time.time() - t_eval
                if note_evaluation(self.state, last_eval, cfg.two_stage, cfg.stage1_steps, cfg.patience):
                    self.ref_model = copy.deepcopy(self.policy).eval().requires_grad_(False)  # stage 2's reference
            self.log(metrics)
            saved = (cfg.save_every and self.state.step % cfg.save_every == 0) or last
            if saved:
                self.save_checkpoint()
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward']:.2f}", pass1=f"{last_eval:.2f}",
                            entropy=f"{metrics['entropy']:.2f}", stage=self.state.stage)
            if last:
                break
            # Ctrl-C / SIGTERM: stop after this step, on every process, with a checkpoint to resume from
            if any_process(self.acc, signals.received is not None):
                if not saved:
                    self.save_checkpoint()
                stopped_by = signals.received or "a signal to another process"
                break
        bar.close()
        checksums = gather_objects(self.acc, weights_digest(self.policy))  # DDP must keep the weights identical
        if len(set(checksums)) > 1:
            raise RuntimeError(f"processes ended with different weights: {checksums}")
        summary = run_summary(self.run_dir, last_eval, self.last_sampled, self.resumed_from, time.time() - start_time,
                              self.state.step, self.world, checksums)
        if main and stopped_by is None:  # summary.json marks a finished run
            write_summary(self.run_dir, summary)
        return {**summary, "stopped_by": stopped_by, "is_main": main,
                "checkpoint": str(self.run_dir / CHECKPOINTS / f"step-{self.state.step}"),
                "resume_command": resume_command(self.run_dir, self.world)}

    def step(self) -> dict:
        """One optimizer step: rollout -> reward -> score -> update (new rollouts every ``num_iterations`` steps);
        the step's metrics, the same on every process. Evaluation, logs and checkpoints are ``train``'s."""
        cfg, g = self.cfg, self.cfg.group_size
        t0 = time.time()
        self.timings = dict.fromkeys(("rollout", "score", "credit", "update"), 0.0)
        credit_tokens = 0  # tokens the credit itself sampled for this step's new rollouts (mc_reset's continuations)
        if self.scored is None or self.state.step % cfg.num_iterations == 0:  # (resumed inside a block: new ones)
            # 1. rollout + reward: G completions per problem, equal-reward groups re-drawn
            problems, samples, rewards = self.sample_groups(cfg.prompts_per_step // self.world)
            # 2. token statistics, segmentation, step credits -> token advantages
            self.scored = self.score(problems, samples, rewards)
            credit_tokens = getattr(self.credit, "sampled_tokens", 0)
            # 3. resets: continuations from a step prefix of failed completions join as new groups
            if cfg.is_reset:
                self.scored = self.add_reset_groups(self.scored, problems, samples, rewards)
            batch = self.scored.batch  # TRL's num_tokens: prompt + completion tokens trained on, every process
            local = float(batch.prompt_mask.sum() + batch.completion_mask.sum())
            self.state.num_tokens += int(self.reduce({"tokens": local}, op="sum")["tokens"])
            for i, p in enumerate(problems):
                self.curriculum.update(p, known(rewards[i * g : (i + 1) * g]))
        # 4. loss and optimizer step (the batch's num_iterations-th one last)
        with self.timed("update"):
            metrics = self.update(self.scored)
        # 5. the step's metrics
        self.state.step += 1
        metrics.update(self.rollout_metrics)
        if self.credit.samples_continuations:  # a resampling credit's own sampling: not in rollout_tokens, logged beside
            metrics["credit_rollout_tokens"] = self.reduce({"t": float(credit_tokens)}, op="sum")["t"]
        metrics.update(self.reduce({"time_s": time.time() - t0, **{f"time/{k}": v for k, v in self.timings.items()}}))
        metrics.update(step=self.state.step, stage=self.state.stage, num_tokens=self.state.num_tokens, rollout_tokens=self.state.rollout_tokens)
        return metrics

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Add the seconds spent inside to ``time/<phase>`` of the current step."""
        t0 = time.time()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.time() - t0

    @property
    def stage(self) -> int:
        return self.state.stage

    def reduce(self, values: dict, op: str = "mean") -> dict:
        return reduce_values(self.acc, values, op)

    # ------------------------------------------------------------------ 1. rollout and reward
    def sample_groups(self, n_problems: int) -> tuple[list[Problem], list[Sample], torch.Tensor]:
        """Problems, G completions of each and their rewards (NaN: every function said None); with dynamic sampling
        equal-reward groups are re-drawn. Sets ``rollout_metrics``, TRL's metrics of the batch."""
        cfg, g = self.cfg, self.cfg.group_size
        problems = self.curriculum.sample(n_problems)
        samples, columns = self.draw(problems)
        if cfg.dynamic_sampling:  # re-draw equal-reward groups (DAPO)
            redraw_equal_groups(problems, samples, columns, self.rewards.weights, self.curriculum, self.draw,
                                cfg.max_resample, g)
        rewards = total_reward(columns, self.rewards.weights)
        stop = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *getattr(self.engine, "eos_ids", ())}
        self.rollout_metrics = batch_metrics(samples, rewards, columns, self.rewards.names, g, stop,
                                             lambda *t: gather_tensors(self.acc, *t))
        return problems, samples, rewards

    def prompt_of(self, problem: Problem):
        """What the policy is sent for ``problem``: its plain prompt, or chat messages (PromptStyle)."""
        return self.prompt_style.prompt_for(self.tokenizer, problem)

    def prompt_ids(self, problems: list[Problem]) -> list[list[int]]:
        """The token ids the policy is conditioned on for each problem."""
        return [encode_prompt(self.tokenizer, self.prompt_of(p), self.cfg.chat_template) for p in problems]

    def generate_ids(self, prompt_ids: list[list[int]], n: int = 1, greedy: bool = False) -> list[Sample]:
        """``n`` completions of each prompt from the rollout engine (timed as ``time/rollout``, tokens counted)."""
        with self.timed("rollout"):
            samples = self.engine.generate(prompt_ids, n=n, greedy=greedy)
        self.state.rollout_tokens += sum(len(s.completion_ids) for s in samples)
        return samples

    def draw(self, problems: list[Problem]) -> tuple[list[Sample], torch.Tensor]:
        """G sampled completions of each problem, and their (samples, reward functions) rewards."""
        samples = self.generate_ids(self.prompt_ids(problems), n=self.cfg.group_size)
        owners = [problems[i // self.cfg.group_size] for i in range(len(samples))]
        return samples, self.rewards.table(owners, [s.text for s in samples], [s.completion_ids for s in samples])

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
        return Scored(credited.batch, credited.token_advantages[credit.name], result.step_credits, shaped=shaped,
                      rollout_logprobs=rollout_logprobs(samples, tensors[2].shape[1]))

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
        """Stage 2's confidence-weighted reward (``acpo.regulation.confidence_weighted``)."""
        return confidence_weighted(rewards, [s.text for s in samples], [s.offsets for s in samples], logprobs,
                                   self.cfg.conf_gamma)

    # ------------------------------------------------------------------ 3. resets (rrpo / srpo / attr_reset)
    def add_reset_groups(self, scored: Scored, problems, samples, rewards) -> Scored:
        """The batch with reset continuations as new groups, scored with ``RESET_CONTINUATION_CREDIT`` (uniform:
        their outcome alone; ``acpo.resets``)."""
        cfg = self.cfg
        found = reset_groups(cfg.recipe, scored.batch, problems, samples, rewards, group_size=cfg.group_size,
                             resets=cfg.resets_per_step, per_reset=cfg.reset_samples, generate=self.generate_ids,
                             reward_of=self.rewards.total, probe=self.probe,
                             encode=lambda text: encode_prompt(self.tokenizer, text, cfg.chat_template))
        if found is None:
            return scored
        owners, continuations, _, cont_rewards, group_ids = found
        extra = self.score(owners, continuations, cont_rewards, group_ids, credit=make_credit(RESET_CONTINUATION_CREDIT))
        batch = concat_batches(scored.batch, extra.batch)
        width = batch.completion_ids.shape[1]
        token_adv = pad_cat(scored.token_adv, extra.token_adv, width)
        engine_lp = (pad_cat(scored.rollout_logprobs, extra.rollout_logprobs, width)
                     if scored.rollout_logprobs is not None and extra.rollout_logprobs is not None else None)
        return Scored(batch, token_adv, scored.step_credits + extra.step_credits, shaped=scored.shaped,
                      rollout_logprobs=engine_lp)

    # ------------------------------------------------------------------ 4. loss and optimizer step
    def update(self, scored: Scored) -> dict:
        """One optimizer step on the batch: micro-batch backward passes, clipping, step; the step's metrics."""
        cfg, batch, mask = self.cfg, scored.batch, scored.batch.completion_mask
        self.model.train()
        ref_lp = None
        if self.stage == 2 and self.ref_model is not None and cfg.kl_coef > 0:
            ref_lp, _ = scored_stats(self.ref_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                     mask, batch_size=cfg.micro_batch_size)
        old_logprobs = scored.old_logprobs if scored.old_logprobs is not None else batch.logprobs
        self.optimizer.zero_grad(set_to_none=True)
        loss, sums, first_logprobs = accumulate_gradients(
            self.model, self.acc, batch, scored.token_adv, old_logprobs, cfg, ref_lp,
            rollout_logprobs=scored.rollout_logprobs, is_cap=cfg.rollout_is_cap if cfg.rollout_is_correction else None)
        if first_logprobs is not None:  # the old log-probs of the batch's later optimizer steps
            scored.old_logprobs = first_logprobs
        grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        check_finite(self.acc, loss, grad_norm, self.state.step + 1, self.last_good_checkpoint)  # before the step
        learning_rate = self.scheduler.get_last_lr()[0]  # the one this step uses, as transformers' Trainer logs it
        self.optimizer.step()
        # an inf learning rate or a NaN clipping norm gets past the check above
        check_weights_finite(self.acc, self.policy, self.state.step + 1, cfg.lr, cfg.max_grad_norm,
                             self.last_good_checkpoint)
        self.scheduler.step()
        self.engine.sync_weights(self.policy)
        # token means over every process's tokens, as TRL's: sums and counts reduced, then divided
        if batch.entropy is not None:  # the sampling policy's entropy (the batch's scored statistics)
            sums["entropy"] = float(batch.entropy[mask.bool()].sum())
        totals = self.reduce({**sums, "tokens": float(mask.sum())}, op="sum")
        logs = {k: v / max(1.0, totals["tokens"]) for k, v in totals.items() if k != "tokens"}
        credits = torch.cat(scored.step_credits)
        main_rows = cfg.prompts_per_step // self.world * cfg.group_size  # reset continuations come after them
        logs.update(self.reduce({
            "loss": loss, "credit/mean": float(credits.mean()),
            "credit/std": float(credits.std()) if credits.numel() > 1 else 0.0,
            **self.credit.batch_metrics(scored.token_adv, batch),
            **({"shaped_reward": float(batch.rewards[:main_rows].nanmean())} if scored.shaped else {}),
        }))
        logs.update(grad_norm=math.nan if grad_norm is None else float(grad_norm), learning_rate=learning_rate)
        if self.ref_model is None:
            logs.pop("kl")
        return logs

    def last_good_checkpoint(self) -> str:
        good = complete_checkpoints(self.run_dir, self.cfg.lora_r > 0)
        return (f"the last good checkpoint is {good[-1]} (resume with: {resume_command(self.run_dir, self.world)})" if good else
                "no checkpoint was written yet (--save-every N writes one every N steps)")

    # ------------------------------------------------------------------ 5. stage switch, rollout budget, evaluation
    @torch.no_grad()
    def evaluate(self, metrics: dict | None = None) -> float:
        """Held-out pass@1, greedy and sampled (sharded over processes), into ``metrics`` or its own log line;
        writes traces/step-N.parquet."""
        shard = self.eval_set[self.rank :: self.world]
        counts = heldout_counts(self.engine, self.prompt_ids(shard), shard, self.rewards,
                                seed=self.cfg.seed * 100_003 + self.state.step)
        total = self.reduce(counts, op="sum")
        found = {"eval/pass@1": total["greedy"] / max(1.0, total["n"]),
                 "eval/pass@1_sampled": total["sampled"] / max(1.0, total["n"])}
        if metrics is not None:
            metrics.update(found)
        else:
            self.log({"step": self.state.step, **found, "stage": self.stage, "rollout_tokens": self.state.rollout_tokens})
        self.last_sampled = found["eval/pass@1_sampled"]
        cfg, problems = self.cfg, self.eval_set[: self.cfg.trace_problems]
        if self.acc.is_main_process and problems:  # greedy completions explained by the run's credit and TRACED_CREDITS
            write_traces(self.run_dir, self.state.step, self.engine, self.policy, self.tokenizer, problems,
                         [render_prompt(self.tokenizer, self.prompt_of(p), cfg.chat_template) for p in problems],
                         self.rewards.total, credits=list(dict.fromkeys([self.credit_name, *TRACED_CREDITS])),
                         segmentation=cfg.segmentation, segment_config=self.seg_cfg, probe=self.probe,
                         chat_template=cfg.chat_template, recipe=cfg.recipe)
        return found["eval/pass@1"]

    # ------------------------------------------------------------------ 6. logs and checkpoints (acpo.runs, acpo.checkpoint)
    def log(self, metrics: dict) -> None:
        """One line of metrics.jsonl (what the app reads), and the same numbers to the trackers of --report-to."""
        if not self.acc.is_main_process:
            return
        append_metrics(self.run_dir, metrics)
        self.acc.log({k: v for k, v in metrics.items() if k != "step"}, step=metrics["step"])

    def save_checkpoint(self) -> None:
        """checkpoints/step-N: weights (adapter for LoRA), tokenizer, optimizer/scheduler/RNG/curriculum state."""
        save_training(self.acc, self.run_dir, self.state, self.policy, self.tokenizer, self.optimizer,
                      self.scheduler, self.ref_model, self.curriculum)

    def load_checkpoint(self) -> None:
        """Weights and state from the newest readable checkpoint; the metrics logged after it are dropped."""
        self.state, self.ref_model = load_training(self.acc, self.run_dir, self.cfg.lora_r > 0, self.policy,
                                                   self.optimizer, self.scheduler, self.curriculum)
        self.resumed_from = self.state.step
        if self.acc.is_main_process:
            # metrics logged after this checkpoint belong to the lost future (and a torn last line goes too)
            truncate_metrics(self.run_dir, self.state.step)
            (self.run_dir / SUMMARY).unlink(missing_ok=True)  # training further: not finished any more


def rollout_logprobs(samples: list[Sample], width: int) -> torch.Tensor | None:
    """The engine's log-prob of each sampled token, right-padded with zeros to ``width`` (``pad_batch``'s layout);
    None when the engine gives none (``HFEngine``: it samples from the trained model itself, so the weight is 1)."""
    if any(s.logprobs is None for s in samples):
        return None
    out = torch.zeros((len(samples), width))
    for i, s in enumerate(samples):
        out[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    return out


def run(cfg: TrainConfig) -> dict:
    """Train with our loop and return the summary; the process group is torn down whatever happens."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    try:
        return Trainer(cfg, acc).train()
    finally:
        end_processes(acc)
