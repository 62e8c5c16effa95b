"""Step credit inside TRL: a ``GRPOTrainer`` whose advantages are our (batch, time) token advantages.

A TRL user changes three lines of a GRPO script::

    from acpo.integrations.trl import StepCreditGRPOConfig, StepCreditGRPOTrainer
    args = StepCreditGRPOConfig(output_dir="out", credit_method="info_gain", credit_probe="#### ")  # was GRPOConfig
    trainer = StepCreditGRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset)

TRL samples, rewards and computes its (batch,) group advantages as always. Then, once per
generation batch, the trainer hands the completions to ``acpo.pipeline.assign_credit``, the
function our own loop and the app call: it scores them with the policy (token log-probs and
entropy) when the credit reads them, segments them into steps, asks the registered credit method
(``acpo.credit``) for step credits and folds them into (batch, time) token advantages (step credits
are z-scored over whole groups, which may span processes). TRL's loss takes (batch, time)
advantages as they are (``GRPOTrainer._compute_loss`` unsqueezes only 1-D ones). Generation
(vLLM included), chat templates, DeepSpeed/FSDP through accelerate, trackers and
``log_completions`` stay TRL's.

TRL 1.16 has no hook for the advantages alone: it computes them inline in
``_generate_and_score_completions`` (its maintainers point subclasses there), so that is the method
the plug-in overrides, calling TRL's own first.

``run_trl`` runs one of our configs through it: ``python train.py --backend trl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

try:
    from trl import GRPOConfig, GRPOTrainer
    from trl.models import unwrap_model_for_generation
except ImportError as err:  # the plug-in is optional; the rest of acpo never imports it
    raise ImportError("acpo.integrations.trl needs TRL: pip install trl==1.16.0 -c constraints.txt") from err
from accelerate.utils import gather_object
from transformers import TrainerCallback

from acpo.advantage import COMPOSITIONS, AdvantageConfig
from acpo.credit import CREDIT_ALIASES, CREDIT_METHODS, credit_name
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.pipeline import SpanningGroups, assign_credit, make_credit
from acpo.recipe import credit_of, credit_options, load_problem_sets, lora_config, resolve_probe, reward_functions, \
    set_threads
from acpo.segment import SegmentConfig, resolve_segmentation
from acpo.tokens import decode_with_offsets


@dataclass
class StepCreditGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus where the token advantages come from; every other field is TRL's."""

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["credit_method_kwargs"]

    credit_method: str = field(default="info_gain", metadata={
        "help": "step credit method (acpo.CREDIT_METHODS): uniform (TRL's own advantages), info_gain, hapo, "
                "entropy_mask, mean_logprob, mc_reset ('acpo', the old name of info_gain, works for one release)"})
    credit_segmentation: str = field(default="hybrid", metadata={
        "help": "completion -> steps: lines, markers, entropy, hybrid, fixed-N"})
    credit_composition: str = field(default="sign_preserving", metadata={
        "help": "step credit -> token advantage: sign_preserving, A * clip(1 + lambda sign(A) c_hat, w_min, w_max), "
                "or additive, A + lambda c_hat"})
    credit_scale: float = field(default=1.0, metadata={"help": "lambda: weight of the normalised step credit c_hat"})
    credit_w_min: float = field(default=0.2, metadata={"help": "sign_preserving: smallest token weight"})
    credit_w_max: float = field(default=3.0, metadata={"help": "sign_preserving: largest token weight"})
    credit_probe: str = field(default=DEFAULT_PROBE, metadata={
        "help": "info_gain: the text written before the answer when probing "
                "log pi(answer | prompt, steps 1..k, probe)"})
    credit_answer_column: str = field(default="answer", metadata={
        "help": "dataset column with the reference answer: info_gain's target (without it, the answer of a correct "
                "completion of the group, else the completion's own) and what mc_reset scores continuations against"})
    credit_entropy_quantile: float = field(default=0.1, metadata={
        "help": "entropy/hybrid segmentation: tokens in the top q entropy quantile count as decisions"})
    credit_min_step_tokens: int = field(default=4, metadata={"help": "entropy segmentation: shortest step, in tokens"})
    credit_max_reasoning_steps: int = field(default=32, metadata={
        "help": "hybrid segmentation: most steps per completion"})
    credit_max_steps: int | None = field(default=None, metadata={
        "help": "the old name of credit_max_reasoning_steps, still accepted"})
    credit_batch_size: int = field(default=8, metadata={
        "help": "sequences per no-grad forward of the credit (token statistics, info_gain's probes, mc_reset's "
                "continuations; a batch_size in credit_method_kwargs overrides it); when a process's generation "
                "batch fits in one, info_gain's probes reuse that forward's KV cache (faster, holds the cache)"})
    credit_method_kwargs: dict | str | None = field(default=None, metadata={
        "help": "options of the credit method, e.g. {\"alpha\": 0.2, \"phi\": 2.0} for hapo, {\"rho\": 0.2} for "
                "entropy_mask, {\"samples\": 8, \"max_new_tokens\": 128} for mc_reset (JSON on the command line)"})

    def __post_init__(self):
        super().__post_init__()
        if self.credit_max_steps is not None:  # the old name
            if self.credit_max_reasoning_steps not in (32, self.credit_max_steps):
                raise ValueError("credit_max_steps is the old name of credit_max_reasoning_steps: give one of them")
            self.credit_max_reasoning_steps, self.credit_max_steps = self.credit_max_steps, None
        if self.credit_method not in CREDIT_METHODS and self.credit_method not in CREDIT_ALIASES:
            raise ValueError(f"credit_method {self.credit_method!r} is not a credit method; valid: "
                             f"{', '.join(sorted(CREDIT_METHODS))}")
        self.credit_method = credit_name(self.credit_method)
        resolve_segmentation(self.credit_segmentation)  # ValueError naming the valid ones
        if self.credit_composition not in COMPOSITIONS:
            raise ValueError(f"credit_composition {self.credit_composition!r}; valid: {', '.join(COMPOSITIONS)}")
        if not 0 < self.credit_w_min < 1 < self.credit_w_max:
            raise ValueError(f"need 0 < credit_w_min < 1 < credit_w_max, got {self.credit_w_min}, {self.credit_w_max}")
        if not self.credit_probe:
            raise ValueError("credit_probe is empty; info_gain needs the text before the answer, e.g. '#### '")
        if self.credit_batch_size < 1 or self.credit_min_step_tokens < 1 or self.credit_max_reasoning_steps < 1:
            raise ValueError("credit_batch_size, credit_min_step_tokens and credit_max_reasoning_steps must be at "
                             "least 1")
        try:
            configured_credit(self)
        except TypeError as err:  # an option the method does not take
            raise ValueError(f"credit_method_kwargs {self.credit_method_kwargs!r} do not fit credit method "
                             f"{self.credit_method!r}: {err}") from None


def configured_credit(args: StepCreditGRPOConfig):
    """The configured credit method: ``credit_method_kwargs``, plus the probe and the forward batch size for a
    method that takes them."""
    return make_credit(args.credit_method, args.credit_method_kwargs, probe=args.credit_probe,
                       batch_size=args.credit_batch_size)


class StepCreditGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with (batch, time) token advantages from step credits (see the module docstring).

    Three hooks, each calling TRL's own method first: ``_generate`` keeps the completions' lengths
    (TRL's mask may hide truncated ones), ``_calculate_rewards`` keeps the rewards, and
    ``_generate_and_score_completions`` replaces TRL's (batch,) advantages by token advantages.
    """

    def __init__(self, model, reward_funcs, args: StepCreditGRPOConfig | None = None, **kwargs):
        if not isinstance(args, StepCreditGRPOConfig):
            raise TypeError(f"StepCreditGRPOTrainer needs args=StepCreditGRPOConfig(...) (TRL's GRPOConfig fields plus "
                            f"credit_method, credit_segmentation, ...), got {type(args).__name__}")
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self.segment_config = SegmentConfig(entropy_quantile=args.credit_entropy_quantile,
                                            min_step_tokens=args.credit_min_step_tokens,
                                            max_reasoning_steps=args.credit_max_reasoning_steps)
        self.advantage_config = AdvantageConfig(composition=args.credit_composition, credit_scale=args.credit_scale,
                                                w_min=args.credit_w_min, w_max=args.credit_w_max)
        self._completion_lengths: list[int] = []
        self._rewards_per_func: torch.Tensor | None = None

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        self._completion_lengths = [len(ids) for ids in out[1]]  # EOS kept, as in TRL's completion_ids
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func  # (every process's rows, reward functions), gathered by TRL

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        output["advantages"] = self.step_credit_advantages(inputs, output).to(output["advantages"].device)
        return output

    def step_credit_advantages(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> torch.Tensor:
        """(rows, time) token advantages of this process's rows: TRL's outcome advantages x step credits."""
        args, tokenizer = self.args, self._tokenizer
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rows, rank = len(inputs), self.accelerator.process_index
        here = slice(rank * rows, (rank + 1) * rows)  # TRL's process slice of the gathered batch
        weighted = self._rewards_per_func * self.reward_weights.to(self._rewards_per_func.device)
        rewards = weighted.nansum(dim=1).cpu()
        scored = ~torch.isnan(self._rewards_per_func).all(dim=1).cpu()  # TRL zeroes the advantage of the others
        group_ids = torch.arange(len(rewards)) // group_size

        prompt_ids, prompt_mask = output["prompt_ids"].cpu(), output["prompt_mask"].cpu()
        completion_ids = output["completion_ids"].cpu()
        lengths = torch.tensor(self._completion_lengths)
        mask = (torch.arange(completion_ids.shape[1]) < lengths[:, None]).long()
        decoded = [decode_with_offsets(tokenizer, completion_ids[i, :n].tolist())
                   for i, n in enumerate(lengths.tolist())]
        texts = [text for text, _ in decoded]
        answers = [row.get(args.credit_answer_column) for row in inputs]
        credit = self.credit_method()
        trl_rewards = rewards.masked_fill(~scored, float("nan"))  # NaN: no reward function scored the row
        with self.unwrapped_policy() as model:
            credited = assign_credit(
                model, tokenizer, prompt_ids, prompt_mask, completion_ids, mask, texts, [o for _, o in decoded],
                {credit.name: credit}, group_ids=group_ids[here], rewards=trl_rewards[here],
                advantages=output["advantages"].detach().float().cpu(), answers=answers,
                segmentation=args.credit_segmentation, segment_config=self.segment_config,
                advantage_config=self.advantage_config, batch_size=args.credit_batch_size,
                spanning=SpanningGroups(gather_object, group_ids, here))
        result = credited.results[credit.name]
        every = credited.every_step_credits.get(credit.name) or gather_object(
            [c.float().cpu() for c in result.step_credits])  # every process's rows, for the logged credit
        flat = torch.cat(every)
        self._metrics[mode]["credit/mean"].append(float(flat.mean()))
        self._metrics[mode]["credit/std"].append(float(flat.std()) if flat.numel() > 1 else 0.0)
        return credited.token_advantages[credit.name]

    def credit_method(self):
        """The configured credit method."""
        return configured_credit(self.args)

    @contextlib.contextmanager
    def unwrapped_policy(self):
        """The policy as one module (ZeRO-3 parameters gathered, FSDP's summoned), as TRL generates with it."""
        with (
            unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                        gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                        gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as model,
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            yield model


# ---------------------------------------------------------------------------------- our configs through TRL
def problem_columns(problems) -> dict[str, list]:
    """Dataset columns of problems as TRL hands them to reward functions by keyword (``prompt`` aside): the
    row's own columns and ``answer``, the gold answer (as our loop calls its reward functions)."""
    keys = [k for k in dict.fromkeys(k for p in problems for k in p.columns) if k not in ("prompt", "answer")]
    return {**{k: [p.columns.get(k) for p in problems] for k in keys}, "answer": [p.answer for p in problems]}


def trl_config(cfg, output_dir: Path, probe: str, processes: int = 1) -> StepCreditGRPOConfig:
    """Our ``TrainConfig`` as TRL's: one optimizer step per generation batch of prompts_per_step x G completions."""
    if cfg.prompts_per_step % processes:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must divide evenly over {processes} processes")
    per_process = cfg.prompts_per_step * cfg.group_size // processes
    micro = cfg.micro_batch_size if per_process % cfg.micro_batch_size == 0 else per_process
    options = {k: v for k, v in credit_options(cfg, probe).items() if k != "probe"}  # the probe has its own field
    return StepCreditGRPOConfig(
        output_dir=str(output_dir), seed=cfg.seed, max_steps=cfg.steps, logging_steps=1,
        # checkpoints are written by SaveCheckpoints in our layout, weights only: no pickled optimizer, RNG or args
        save_strategy="no", save_only_model=True,
        report_to=[t for t in cfg.report_to if t != "none"] or "none", use_cpu=not torch.cuda.is_available(),
        # batch: micro-batches of the generation batch accumulate into one optimizer step
        per_device_train_batch_size=micro, gradient_accumulation_steps=per_process // micro,
        num_generations=cfg.group_size, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, top_k=0, top_p=1.0,  # pure sampling, as our rollouts
        num_iterations=cfg.num_iterations, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="constant_with_warmup", max_grad_norm=cfg.max_grad_norm,
        # loss: our aggregation and outcome advantage under TRL's names; no KL (our stage 2 is our loop's)
        reward_weights=cfg.reward_weights or None,
        loss_type={"token_mean": "dapo", "seq_mean_token_mean": "grpo", "dr_grpo": "dr_grpo"}[cfg.aggregation],
        scale_rewards="group" if cfg.outcome == "grpo" else "none", epsilon=cfg.eps_low, epsilon_high=cfg.eps_high,
        beta=0.0, bf16=cfg.dtype == "bfloat16", fp16=cfg.dtype == "float16", activation_checkpointing=False,
        use_vllm=cfg.rollout_engine == "vllm", vllm_mode="colocate",
        # the same truncated importance weight as our loop's (acpo.loss.truncated_is_weight)
        vllm_importance_sampling_correction=cfg.rollout_is_correction,
        vllm_importance_sampling_mode="token_truncate", vllm_importance_sampling_clip_max=cfg.rollout_is_cap,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        credit_method=credit_of(cfg), credit_segmentation=cfg.segmentation, credit_composition=cfg.composition,
        credit_scale=cfg.credit_scale, credit_w_min=cfg.w_min, credit_w_max=cfg.w_max, credit_probe=probe,
        credit_entropy_quantile=cfg.entropy_quantile, credit_min_step_tokens=cfg.min_step_tokens,
        credit_max_reasoning_steps=cfg.max_reasoning_steps, credit_batch_size=cfg.micro_batch_size,
        credit_method_kwargs=options or None,
    )


def ignored_options(cfg) -> list[str]:
    """The options of ``cfg`` that TRL's loop has no place for and that would change what our loop does: each
    named (with the value it ignores) in the one warning ``run_trl`` prints."""
    from acpo.config import TrainConfig

    default = TrainConfig()
    ignored = [name for name in ("curriculum", "dynamic_sampling", "two_stage") if getattr(cfg, name)]
    ignored += [f"{name}={getattr(cfg, name)}" for name in ("curriculum_eps", "unlock_threshold", "max_resample",
                                                             "stage1_steps", "patience", "kl_coef", "conf_gamma")
                if getattr(cfg, name) != getattr(default, name)]
    if cfg.eval_every < cfg.steps:
        ignored.append(f"eval_every={cfg.eval_every} (held-out pass@1 only before and after training)")
    if cfg.trace_problems:
        ignored.append(f"trace_problems={cfg.trace_problems} (no traces/)")
    if cfg.max_rollout_tokens:
        ignored.append(f"max_rollout_tokens={cfg.max_rollout_tokens} (no rollout budget: --steps counts)")
    return ignored


class SaveCheckpoints(TrainerCallback):
    """checkpoints/step-N every ``every`` steps, in our loop's layout (``acpo.runs.list_checkpoints`` lists them):
    the weights (the adapter for LoRA) as safetensors, config and tokenizer; nothing pickled."""

    def __init__(self, run_dir: Path, every: int):
        self.run_dir, self.every, self.trainer = run_dir, every, None

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            save_checkpoint(self.trainer, self.run_dir, state.global_step)


def save_checkpoint(trainer, run_dir: Path, step: int) -> Path:
    """checkpoints/step-N from ``trainer.save_model`` (which gathers sharded weights), written to a temporary
    folder and renamed; TRL's pickled training arguments are left out. Every process calls it."""
    import shutil

    from acpo.runs import CHECKPOINTS, write_failed

    final = run_dir / CHECKPOINTS / f"step-{step}"
    tmp = final.with_name(f".tmp-step-{step}")
    if trainer.accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        trainer.save_model(str(tmp))  # collective under FSDP / ZeRO-3; the main process writes
        if trainer.accelerator.is_main_process:
            (tmp / "training_args.bin").unlink(missing_ok=True)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(err, final.parent, f"checkpoint step-{step}") from err
    trainer.accelerator.wait_for_everyone()
    return final


class MetricsFile(TrainerCallback):
    """TRL's logs into the run folder's ``metrics.jsonl`` (what the app's Runs tab reads)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_log(self, args, state, control, logs=None, **kwargs):
        from acpo.runs import append_metrics

        if state.is_world_process_zero and logs:
            append_metrics(self.run_dir, {"step": state.global_step, **logs})


def run_trl(cfg) -> dict:
    """Train ``cfg`` (an ``acpo.config.TrainConfig``) with ``StepCreditGRPOTrainer``; the summary ``train.py`` prints.

    The run folder holds ``config.yaml``, ``metrics.jsonl`` (TRL's logs, plus held-out pass@1 before and
    after, as our loop logs it) and ``checkpoints/step-N`` (every ``--save-every`` steps and at the end: the
    weights as safetensors, config and tokenizer), as our loop lays it out; no pickle.
    """
    from accelerate import PartialState
    from datasets import Dataset

    from acpo.config import RESET_RECIPES, to_yaml
    from acpo.models import load_policy
    from acpo.prompts import PromptStyle
    from acpo.runs import CONFIG, append_metrics, empty_folder, lock_run_folder, run_dir_problem, write_summary, \
        write_text_atomic

    if cfg.resume:
        raise ValueError("--backend trl starts fresh runs only: it writes no checkpoint that --resume reads "
                         "(drop --resume to start a new run; --backend ours runs can be resumed)")
    if cfg.recipe in RESET_RECIPES:
        raise ValueError(f"--recipe {cfg.recipe} adds reset continuations to the batch, which only our loop does; "
                         "use --backend ours, or a recipe whose credit works on TRL's batch")
    left_out = ignored_options(cfg)
    state = PartialState()
    if left_out and state.is_main_process:
        print(f"train.py: --backend trl runs TRL's loop, which ignores {', '.join(left_out)} "
              "(step credit, loss and optimizer settings carry over)", file=sys.stderr)
    started = time.time()
    run_dir = Path(cfg.output_dir) / (cfg.run_name or f"{cfg.recipe}-trl-{datetime.now():%Y%m%d-%H%M%S}")
    if problem := run_dir_problem(run_dir, cfg.overwrite):
        raise ValueError(problem)
    args = trl_config(cfg, run_dir, resolve_probe(cfg), state.num_processes)  # checked before anything is made
    model, tokenizer = load_policy(cfg.model, cfg.trust_remote_code, dtype=cfg.dtype)
    set_threads(cfg, model)
    pool, eval_set, _ = load_problem_sets(cfg)
    style = PromptStyle(cfg.chat_template, cfg.system_prompt, cfg.instruction, cfg.answer_format)
    rewards = reward_functions(cfg)
    dataset = Dataset.from_dict({"prompt": [style.prompt_for(tokenizer, p) for p in pool], **problem_columns(pool)})
    peft_config = lora_config(cfg)

    lock = lock_run_folder(run_dir, fresh=True, overwrite=cfg.overwrite) if state.is_main_process else None
    try:
        if state.is_main_process:
            if cfg.overwrite:
                empty_folder(run_dir)
            write_text_atomic(run_dir / CONFIG, to_yaml(dataclasses.replace(cfg, overwrite=False)), "config.yaml")
        saver = SaveCheckpoints(run_dir, cfg.save_every)
        trainer = StepCreditGRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                                        processing_class=tokenizer, peft_config=peft_config,
                                        callbacks=[MetricsFile(run_dir), saver])
        saver.trainer = trainer

        def evaluate(step: int) -> dict:
            policy = trainer.accelerator.unwrap_model(trainer.model)
            with torch.random.fork_rng():  # seeded sampling that leaves training's random stream alone
                found = {"step": step, **heldout_pass_at_1(policy, tokenizer, eval_set, style, rewards[0], cfg, step)}
            if state.is_main_process:
                append_metrics(run_dir, found)
            return found

        before = evaluate(0)
        trainer.train()
        after = evaluate(trainer.state.global_step)
        step = trainer.state.global_step
        final = run_dir / "checkpoints" / f"step-{step}"
        if not (cfg.save_every and step % cfg.save_every == 0):  # the last step's checkpoint, as our loop's
            final = save_checkpoint(trainer, run_dir, step)
        summary = {"run_dir": str(run_dir), "start_pass@1": before["eval/pass@1"], "end_pass@1": after["eval/pass@1"],
                   "start_pass@1_sampled": before["eval/pass@1_sampled"],
                   "end_pass@1_sampled": after["eval/pass@1_sampled"], "resumed_from_step": None,
                   "wall_s": time.time() - started, "steps": trainer.state.global_step,
                   "processes": state.num_processes, "backend": "trl"}
        if state.is_main_process:
            write_summary(run_dir, summary)
    finally:
        if lock is not None:
            lock.release()
    return {**summary, "stopped_by": None, "checkpoint": str(final), "resume_command": None,
            "is_main": state.is_main_process}


def heldout_pass_at_1(model, tokenizer, problems, style, reward, cfg, step: int) -> dict:
    """Held-out pass@1, greedy and sampled at the training temperature: the sum of ``reward`` (the first reward
    function, as our loop counts it) over the problems, None counting 0."""
    from acpo.rollout import generate_texts

    prompts = [style.prompt_for(tokenizer, p) for p in problems]
    columns = problem_columns(problems)
    found = {}
    for key, temperature in (("eval/pass@1", 0.0), ("eval/pass@1_sampled", cfg.temperature)):
        texts = generate_texts(model, tokenizer, prompts, temperature=temperature, seed=cfg.seed * 100_003 + step,
                               max_new_tokens=cfg.max_new_tokens, chat_template=cfg.chat_template)
        values = reward(prompts=prompts, completions=texts, **columns)
        found[key] = sum(0.0 if v is None else float(v) for v in values) / max(1, len(problems))
    return found
