"""The one credit pipeline: token stats -> steps -> ``CreditBatch`` -> credits -> token advantages.

``acpo.explain``, the trainer (``Trainer.score``), the TRL plug-in and the verl reward
manager all call ``assign_credit``, so what the app shows is what training uses.
Each credit method declares what it reads (``acpo.credit.base.CreditMethod``), and
this module provides exactly that:

- ``needs_stats`` / ``needs_steps``: one no-grad scoring forward (token log-probs and
  entropies), and the completions cut into steps with them; when no credit needs either
  (``uniform``) neither runs and each completion is one step, unless the caller asks
  (``score_tokens=True``);
- ``needs_answers``: each completion's target answer (``resolve_answers``);
- ``uses_trace_cache``: the scoring forward's KV cache, when the batch fits one forward;
- ``needs_policy`` / ``needs_texts``: the model, tokenizer and texts, which the batch always carries here.

A row whose reward is NaN (no reward function could score it) gets token advantage 0:
no reward, no learning signal.
"""

from __future__ import annotations

import inspect
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from acpo.advantage import AdvantageConfig, normalize_step_credits, outcome_advantages
from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, get_credit_method
from acpo.segment import GIVEN, SegmentConfig, given_steps, segment
from acpo.stats import eval_mode, scored_stats
from acpo.tasks.base import extract_final_answer

NO_GROUP_BASELINE = 0.5  # [ours] outcome advantage of a lone completion: r - 0.5
ONE_STEP = "fixed-100000"  # the segmentation when nothing reads steps: one step per completion


def make_credit(name: str, options: Mapping | None = None, **offered) -> CreditMethod:
    """The credit method ``name`` built with ``options``, plus each ``offered`` setting its constructor takes
    and ``options`` leaves unset (e.g. the caller's answer probe, or its forward batch size).

    >>> make_credit("info_gain", probe="#### ").probe, type(make_credit("uniform", probe="#### ")).__name__
    ('#### ', 'UniformCredit')
    """
    from acpo.credit.base import CREDIT_METHODS, credit_name

    cls = CREDIT_METHODS[credit_name(name)]
    takes = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in offered.items() if k in takes and v is not None}
    kwargs.update(options or {})
    return get_credit_method(cls.name, **kwargs)


def resolve_answers(
    completions: Sequence[str],
    answers: Sequence[str | None] | None,
    rewards: torch.Tensor | None,
    group_ids: torch.Tensor,
) -> list[str | None]:
    """The information gain's target answer per completion (METHODS.md §3.2).

    The reference answer when given; else the answer of a correct completion
    (reward >= 1) of the same group; else the completion's own final answer.
    """
    out: list[str | None] = []
    for i, text in enumerate(completions):
        if answers is not None and answers[i] is not None:
            out.append(answers[i])
            continue
        found = None
        if rewards is not None:
            for j in torch.nonzero(group_ids == group_ids[i]).flatten().tolist():
                if float(rewards[j]) >= 1.0 and (found := extract_final_answer(completions[j])):
                    break
        out.append(found or extract_final_answer(text))
    return out


def default_group_ids(prompts: Sequence[str]) -> torch.Tensor:
    """Completions of the same prompt text form one group."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(p, len(first)) for p in prompts], dtype=torch.long)


def batch_outcome_advantages(
    rewards: torch.Tensor | None, group_ids: torch.Tensor, mode: str = "grpo"
) -> torch.Tensor:
    """Group advantages; a lone completion gets r - 0.5 **[ours]**; unknown rewards (None, or NaN rows) give 0."""
    if rewards is None:
        return torch.zeros(len(group_ids))
    adv = outcome_advantages(rewards, group_ids, mode)
    sizes = torch.bincount(group_ids)[group_ids]
    return torch.where(sizes == 1, rewards.float() - NO_GROUP_BASELINE, adv).nan_to_num(nan=0.0)


@dataclass
class SpanningGroups:
    """Groups that span processes (TRL splits a generation batch over them): step credits are z-scored over
    every process's rows. ``gather`` returns every process's list of per-row tensors, in rank order;
    ``group_ids`` are every row's groups and ``rows`` this process's slice of them."""

    gather: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    group_ids: torch.Tensor
    rows: slice


@dataclass
class Credited:
    """What ``assign_credit`` computed, per credit name."""

    batch: CreditBatch
    results: dict[str, CreditResult]
    token_credit: dict[str, torch.Tensor]  # (batch, time): what each method folds into the outcome advantage
    token_advantages: dict[str, torch.Tensor]  # (batch, time)
    seconds: dict[str, float]  # wall time of each method's credits
    every_step_credits: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # every process's (spanning)


def reads_steps(credits: Mapping[str, CreditMethod]) -> bool:
    """Whether any of ``credits`` reads the scoring forward or the steps cut with it."""
    return any(c.needs_stats or c.needs_steps for c in credits.values())


def assign_credit(
    model,
    tokenizer,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    texts: Sequence[str],
    offsets: Sequence[Sequence[tuple[int, int]]],
    credits: Mapping[str, CreditMethod],
    *,
    group_ids: torch.Tensor,
    rewards: torch.Tensor | None = None,
    advantages: torch.Tensor | None = None,
    outcome: str = "grpo",
    answers: Sequence[str | None] | None = None,
    segmentation: str = "hybrid",
    segment_config: SegmentConfig | None = None,
    advantage_config: AdvantageConfig | None = None,
    batch_size: int = 8,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    score_tokens: bool = False,
    spanning: SpanningGroups | None = None,
    progress: Callable[[], None] | None = None,
    step_starts: Sequence[Sequence[int]] | None = None,
) -> Credited:
    """Credits and token advantages of a padded batch (``acpo.tokens.pad_batch`` layout) for each of ``credits``.

    Args:
        texts, offsets: each completion's text and its tokens' character spans (for the steps).
        credits: name -> credit method (``make_credit``).
        group_ids: (batch,) which completions answer the same prompt.
        rewards: (batch,) outcome rewards, NaN where unknown; None: all unknown.
        advantages: (batch,) outcome advantages when the caller has them (TRL's); else from ``rewards``.
        outcome: ``grpo`` or ``dr_grpo``, for advantages computed here.
        answers: reference answers (None entries: unknown), for the methods that ``needs_answers``.
        stats: (logprobs, entropy) already computed by the caller with this model on this batch.
        score_tokens: score and segment even when no credit needs it (to show the steps, or for the caller).
        spanning: groups that span processes (``SpanningGroups``).
        progress: called once after the scoring forward and once after each method.
        step_starts: with ``segmentation="given"``, the character where each step of each completion starts
            (the steps the caller split already; they need no entropy to cut).
    """
    with eval_mode(model) if model is not None else nullcontext():
        return _assign_credit(model, tokenizer, prompt_ids, prompt_mask, completion_ids, completion_mask, texts,
                              offsets, credits, group_ids, rewards, advantages, outcome, answers, segmentation,
                              segment_config, advantage_config or AdvantageConfig(), batch_size, stats,
                              score_tokens, spanning, progress, step_starts)


def cut_steps(texts, offsets, lengths, entropy, segmentation, segment_config, step_starts) -> list:
    """Each completion's steps: those given (``segmentation="given"``), else cut with the entropy, else (no
    scoring forward) one step per completion."""
    if segmentation == GIVEN:
        if step_starts is None or len(step_starts) != len(texts):
            raise ValueError("segmentation='given' needs step_starts: the character start of every step of each "
                             "completion")
        steps = []
        for i, t in enumerate(texts):
            try:
                steps.append(given_steps(t, offsets[i], step_starts[i]))
            except ValueError as err:
                raise ValueError(f"completion {i}: {err}") from None
        return steps
    if entropy is not None:
        return [segment(t, offsets[i], entropy[i, : int(lengths[i])], segmentation, segment_config)
                for i, t in enumerate(texts)]
    return [segment(t, offsets[i], torch.zeros(len(offsets[i])), ONE_STEP) for i, t in enumerate(texts)]


def _assign_credit(model, tokenizer, prompt_ids, prompt_mask, completion_ids, completion_mask, texts, offsets, credits,
                   group_ids, rewards, advantages, outcome, answers, segmentation, segment_config, cfg, batch_size,
                   stats, score_tokens, spanning, progress, step_starts) -> Credited:
    score = score_tokens or reads_steps(credits)
    caches = ([] if any(c.uses_trace_cache for c in credits.values()) and len(texts) <= batch_size
              and stats is None and score else None)
    logprobs = entropy = None
    if stats is not None:
        logprobs, entropy = stats
    elif score:
        logprobs, entropy = scored_stats(model, prompt_ids, prompt_mask, completion_ids, completion_mask, batch_size,
                                         caches)
    steps = cut_steps(texts, offsets, completion_mask.sum(-1).tolist(), entropy, segmentation, segment_config,
                      step_starts)
    if progress:
        progress()
    if advantages is None:
        advantages = batch_outcome_advantages(rewards, group_ids, outcome)
    need_answers = any(c.needs_answers for c in credits.values())
    batch = CreditBatch(
        prompt_ids, prompt_mask, completion_ids, completion_mask, logprobs=logprobs, entropy=entropy, steps=steps,
        advantages=advantages.float(), group_ids=group_ids, rewards=rewards,
        answers=resolve_answers(texts, answers, rewards, group_ids) if need_answers else [],
        reference_answers=list(answers) if answers is not None else [],
        texts=list(texts), model=model, tokenizer=tokenizer, trace_cache=caches[0] if caches else None,
    )
    unscored = torch.isnan(rewards) if rewards is not None else torch.zeros(len(texts), dtype=torch.bool)
    out = Credited(batch, {}, {}, {}, {})
    for name, method in credits.items():
        started = time.perf_counter()
        with torch.no_grad():
            result = method.credits(batch)
        out.seconds[name] = time.perf_counter() - started
        normalised = None
        if spanning is not None and not method.token_level:
            every = spanning.gather([c.float().cpu() for c in result.step_credits])
            out.every_step_credits[name] = every
            normalised = normalize_step_credits(every, spanning.group_ids, cfg.eps)[spanning.rows]
        credit = method.token_credit(batch, result, cfg, normalised)
        token_adv = method.compose(batch.advantages, credit, completion_mask, cfg)
        token_adv[unscored] = 0.0
        out.results[name], out.token_credit[name], out.token_advantages[name] = result, credit, token_adv
        if progress:
            progress()
    return out
