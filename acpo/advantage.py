"""Outcome advantages and the factorised step -> token advantages (METHODS.md §4).

Shapes: rewards and outcome advantages are (N,) over completions; group ids
say which completions answer the same prompt. Token advantages are
(batch, time), aligned with the completion tokens; padding gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

OUTCOME_MODES = ("grpo", "dr_grpo")
COMPOSITIONS = ("additive", "sign_preserving")


@dataclass
class AdvantageConfig:
    """How step credits are folded into token advantages."""

    outcome: str = "grpo"  # grpo: (r - mean) / (std + eps); dr_grpo: r - mean
    composition: str = "sign_preserving"  # or "additive"
    credit_scale: float = 1.0  # lambda
    w_min: float = 0.2
    w_max: float = 3.0
    eps: float = 1e-4


def _group_stat(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element group mean and sample std over the group's non-NaN values (std 0 for one value), float64."""
    values = values.double()
    mean = torch.zeros_like(values)
    std = torch.zeros_like(values)
    for g in torch.unique(group_ids):
        sel = group_ids == g
        v = values[sel]
        v = v[~v.isnan()]
        mean[sel] = v.mean() if v.numel() else 0.0
        std[sel] = v.std(correction=1) if v.numel() > 1 else 0.0
    return mean, std


def outcome_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, mode: str = "grpo", eps: float = 1e-4
) -> torch.Tensor:
    """GRPO or Dr.GRPO advantage of each completion within its group.

    GRPO uses the sample standard deviation (as TRL does). A group whose
    rewards are all equal gets zero advantages, never NaN. A NaN reward (a
    reward function's ``None``) is left out of its group's mean and std and gets
    advantage 0, as in TRL.

    >>> outcome_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 0, 0])).round(decimals=3)
    tensor([ 0.8660, -0.8660, -0.8660,  0.8660])
    """
    if mode not in OUTCOME_MODES:
        raise ValueError(f"unknown outcome advantage mode {mode!r}; valid: {', '.join(OUTCOME_MODES)}")
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    group_ids = torch.as_tensor(group_ids)
    if rewards.shape != group_ids.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} differ in shape")
    mean, std = _group_stat(rewards, group_ids)
    adv = rewards - mean
    if mode == "grpo":
        adv = adv / (std + eps)
    return adv.nan_to_num(nan=0.0).float()


def normalize_step_credits(
    credits: Sequence[torch.Tensor], group_ids: torch.Tensor, eps: float = 1e-4
) -> list[torch.Tensor]:
    """c_hat = (c - mean) / (std + eps) over all steps of all completions of a group."""
    group_ids = torch.as_tensor(group_ids)
    flat = torch.cat([c.double().reshape(-1) for c in credits]) if credits else torch.zeros(0)
    owner = torch.cat([torch.full((len(c),), int(g)) for c, g in zip(credits, group_ids)])
    mean, std = _group_stat(flat, owner)
    hat = ((flat - mean) / (std + eps)).float()
    return list(torch.split(hat, [len(c) for c in credits]))


def broadcast_steps(
    step_values: Sequence[torch.Tensor], step_index: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(batch, time) tensor holding each token's step value (0 on padding)."""
    out = torch.zeros(step_index.shape, dtype=torch.float32)
    for i, v in enumerate(step_values):
        n = int(mask[i].sum())
        if n:
            out[i, :n] = v.float()[step_index[i, :n]]
    return out


def factorised_advantages(
    advantages: torch.Tensor,
    credit_hat: torch.Tensor,
    mask: torch.Tensor,
    cfg: AdvantageConfig = AdvantageConfig(),
) -> torch.Tensor:
    """Token advantages from outcome advantages (B,) and per-token normalised step credits (B, T).

    additive:        A + lambda * c_hat
    sign_preserving: A * clip(1 + lambda * sign(A) * c_hat, w_min, w_max)  (never flips a sign)
    """
    if cfg.composition not in COMPOSITIONS:
        raise ValueError(f"unknown composition {cfg.composition!r}; valid: {', '.join(COMPOSITIONS)}")
    a = advantages.float()[:, None]
    if cfg.composition == "additive":
        out = a + cfg.credit_scale * credit_hat
    else:
        if not 0 < cfg.w_min < 1 < cfg.w_max:
            raise ValueError(f"need 0 < w_min < 1 < w_max, got w_min={cfg.w_min}, w_max={cfg.w_max}")
        weight = (1 + cfg.credit_scale * torch.sign(a) * credit_hat).clamp(cfg.w_min, cfg.w_max)
        out = a * weight
    return out * mask.float()
