"""A ``TrainConfig`` made into the objects a run trains with, the same for every backend.

Our loop (``acpo.trainer``) and TRL's (``acpo.integrations.trl``) both read the
config through these functions, so a run trains on the same problems, rewards,
credit and policy whichever loop it runs in.
"""

from __future__ import annotations

import random

import torch

from acpo.config import CREDIT_CONFIG_FIELDS, CREDIT_OF_RECIPE, TrainConfig
from acpo.credit import credit_name
from acpo.pipeline import make_credit
from acpo.prompts import answer_probe
from acpo.rewards import get_reward
from acpo.tasks import DEFAULT_TRAIN_MIX, RL_SEED_OFFSET, TASKS, Problem, get_task, heldout_problems, make_problems
from acpo.tokens import longest_token_chars

SMALL_MODEL = 20_000_000  # parameters: below this, one CPU thread runs faster than several


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


def load_problem_sets(cfg: TrainConfig) -> tuple[list[Problem], list[Problem], dict[str, set[int]]]:
    """The training pool, the held-out evaluation set and each family's starting levels."""
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
    """The credit a run trains with: ``--credit`` (an old alias read as its credit's name), or its recipe's own."""
    return CREDIT_OF_RECIPE[cfg.recipe] if cfg.credit == "auto" else credit_name(cfg.credit)


def credit_options(cfg: TrainConfig, probe: str) -> dict:
    """Constructor options of ``credit_of(cfg)`` from the config (``CREDIT_CONFIG_FIELDS``), and the answer probe
    for a credit that takes one."""
    credit = credit_of(cfg)
    options = {arg: getattr(cfg, fld) for arg, fld in CREDIT_CONFIG_FIELDS.get(credit, {}).items()}
    return {"probe": probe, **options} if hasattr(make_credit(credit, probe=probe), "probe") else options


def reward_functions(cfg: TrainConfig) -> list:
    """``--reward``'s functions; ``auto`` is the synthetic tasks' ``####`` check (their checker's verdict), else
    ``answer``."""
    auto = "answer" if cfg.dataset else "hash_answer"
    return [get_reward(auto if spec == "auto" else spec) for spec in cfg.reward]


def resolve_probe(cfg: TrainConfig) -> str:
    """ACPO's answer probe: --probe, or the task's ('#### '), or the answer format's for datasets."""
    if cfg.probe != "auto":
        return cfg.probe
    return TASKS[parse_mix(cfg.tasks)[0][0]].answer_probe if not cfg.dataset else answer_probe(cfg.answer_format)


def lora_config(cfg: TrainConfig):
    """peft's ``LoraConfig`` of ``--lora-r`` (None: train every weight)."""
    if cfg.lora_r <= 0:
        return None
    from peft import LoraConfig

    targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else cfg.lora_targets.split(",")
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=targets, task_type="CAUSAL_LM")


def set_threads(cfg: TrainConfig, model) -> None:
    """``--threads``, or one torch thread for a small model on CPU (thread sync costs more than tiny matmuls save)."""
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    if cfg.threads or (small and not torch.cuda.is_available()):
        torch.set_num_threads(cfg.threads or 1)


def check_inputs(cfg: TrainConfig, tokenizer, policy, problems: list[Problem], prompt_ids, credit: str,
                 probe: str) -> None:
    """What the config cannot check alone: trackers are installed, the probe tokenizes, and every prompt
    (``prompt_ids(problems)`` encodes them) leaves room to answer; a prompt too long to fit is named
    without tokenizing it."""
    import importlib.util

    for tracker in cfg.report_to:
        module = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}.get(tracker)
        if module and importlib.util.find_spec(module) is None:
            raise ValueError(f"--report-to {tracker} needs the {module} package, which is not installed: "
                             f"`pip install {module}`, or leave {tracker} out")
    takes_probe = hasattr(make_credit(credit, probe=probe), "probe")
    if takes_probe and not tokenizer(probe, add_special_tokens=False)["input_ids"]:
        raise ValueError(f"probe {probe!r} is no token for this tokenizer; pass a non-empty --probe")
    context = getattr(policy.config, "max_position_embeddings", None)
    if not context:
        return
    budget = context - cfg.max_new_tokens
    # a prompt of more characters than budget x the longest token has more than budget tokens: said untokenized
    most = budget * longest_token_chars(tokenizer)
    long = [(p.id, f"over {budget}") for p in problems if len(str(p.prompt)) > most]
    short = [p for p in problems if len(str(p.prompt)) <= most]
    long += [(p.id, len(ids)) for p, ids in zip(short, prompt_ids(short)) if len(ids) > budget]
    if long:
        shown = ", ".join(f"{pid} ({n} tokens)" for pid, n in long[:3])
        raise ValueError(
            f"{len(long)} problem(s) leave no room to answer in the model's context of {context} tokens with "
            f"--max-new-tokens {cfg.max_new_tokens}: {shown}; drop those rows, shorten them, or lower "
            "--max-new-tokens")


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trainable_policy(cfg: TrainConfig):
    """(model, tokenizer) to train: ``--model`` loaded, torch threads set, a LoRA adapter attached with ``--lora-r``."""
    from acpo.models import load_policy

    model, tokenizer = load_policy(cfg.model, cfg.trust_remote_code, dtype=cfg.dtype)
    set_threads(cfg, model)
    if (lora := lora_config(cfg)) is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    model.config.use_cache = True
    return model, tokenizer


def optimizer_and_schedule(cfg: TrainConfig, model):
    """AdamW on the trained weights, and the linear warm-up to ``--lr`` over ``--warmup-steps``.

    The schedule is not for ``accelerate.prepare``: a prepared scheduler steps once per process at every step.
    """
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
