"""ACPO's regulation of the policy (docs/METHODS.md §6): the stage switch and stage 2's confidence-weighted reward.
Plain functions of tensors and numbers. (The specification's entropy bonus on top-credit steps was measured and
removed: docs/METHODS.md, "Removed: the entropy bonus".)"""

from __future__ import annotations

import re

import torch


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
