"""ACPO's regulation of the policy (docs/METHODS.md §5-6): the entropy bonus on top-credit steps, its adaptive
coefficient, the stage switch and stage 2's confidence-weighted reward. Plain functions of tensors and numbers."""

from __future__ import annotations

import math
import re

import torch

from acpo.advantage import broadcast_steps, normalize_step_credits


def adapt_entropy_coef(coef: float, target: float, mean_entropy: float, eta: float, lowest: float,
                       highest: float) -> tuple[float, float]:
    """(beta, H*) after a step: beta <- clip(beta exp(eta (H* - H)), lowest, highest); H* = the first H unless set.

    >>> adapt_entropy_coef(0.01, 0.0, 1.5, eta=2.0, lowest=0.0, highest=0.05)  # the first step sets H* = H
    (0.01, 1.5)
    """
    if target <= 0:
        target = mean_entropy
    beta = coef * math.exp(eta * (target - mean_entropy))
    return min(highest, max(lowest, beta)), target


def entropy_weights(coef: float, step_credits: list[torch.Tensor], group_ids: torch.Tensor,
                    step_index: torch.Tensor, completion_mask: torch.Tensor, top_frac: float) -> torch.Tensor:
    """(rows, time) entropy-bonus weights: beta on the tokens of the top-|c_hat| fraction f of steps, 0 elsewhere."""
    hat = normalize_step_credits(step_credits, group_ids)
    flat = torch.cat(hat).abs()
    k = max(1, math.ceil(top_frac * flat.numel()))
    threshold = torch.topk(flat, k).values.min()
    chosen = [(h.abs() >= threshold).float() for h in hat]
    return coef * broadcast_steps(chosen, step_index, completion_mask)


def should_switch_stage(step: int, stage1_steps: int, evals_since_best: int, patience: int) -> bool:
    """Stage 2 after ``stage1_steps``, or once held-out pass@1 has not improved for ``patience`` evaluations."""
    return step >= stage1_steps or evals_since_best >= patience


def confidence_weighted(rewards: torch.Tensor, texts: list[str], offsets: list[list[tuple[int, int]]],
                        logprobs: torch.Tensor, gamma: float) -> torch.Tensor:
    """Stage 2 [ours]: r' = r (1 + g (1 - conf)) - (1 - r) g conf, conf = geo-mean prob of the answer tokens.

    A completion without a ``####`` answer has confidence 0.
    """
    conf = torch.zeros(len(texts))
    for i, (text, spans) in enumerate(zip(texts, offsets)):
        m = re.search(r"####\s*(\S.*)$", text, re.MULTILINE)
        if not m:
            continue
        toks = [j for j, (a, b) in enumerate(spans) if b > m.start(1) and a < m.end(1)]
        if toks:
            conf[i] = float(torch.exp(logprobs[i, toks].mean()))
    return rewards * (1 + gamma * (1 - conf)) - (1 - rewards) * gamma * conf


def note_evaluation(state, pass_at_1: float, two_stage: bool, stage1_steps: int, patience: int) -> bool:
    """Record a held-out pass@1 in ``state`` (an ``acpo.checkpoint.TrainState``): its best and the evaluations
    since; True when this moves a two-stage run into stage 2."""
    if pass_at_1 > state.best_eval:
        state.best_eval, state.evals_since_best = pass_at_1, 0
    else:
        state.evals_since_best += 1
    if two_stage and state.stage == 1 and should_switch_stage(state.step, stage1_steps, state.evals_since_best,
                                                               patience):
        state.stage = 2
        return True
    return False
