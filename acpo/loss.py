"""The clipped policy loss with per-token advantages (METHODS.md §8), KL and entropy terms.

All inputs are (batch, time) tensors aligned with the completion tokens;
``mask`` marks real (non-padding) tokens that get gradient.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "dr_grpo")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, max_len: int) -> torch.Tensor:
    """Reduce a (batch, time) loss to a scalar.

    token_mean (DAPO): every token weighs the same; seq_mean_token_mean (GRPO):
    mean over tokens, then over sequences; dr_grpo: sum / (batch x max_len).
    """
    m = mask.float()
    if how == "token_mean":
        return (per_token * m).sum() / m.sum().clamp(min=1)
    if how == "seq_mean_token_mean":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    if how == "dr_grpo":
        return (per_token * m).sum() / (per_token.shape[0] * max_len)
    raise ValueError(f"unknown aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}")


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): exp(d) - d - 1 with d = ref - logp (>= 0)."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    aggregation: str = "token_mean",
    max_len: int = 1,
    entropy: torch.Tensor | None = None,
    entropy_weight: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss, minus an entropy bonus, plus a KL penalty.

    Args:
        entropy, entropy_weight: when given, ``- entropy_weight * entropy`` is
            added per token (the weight already holds beta and the step selection).
        ref_logprobs, kl_coef: when given, ``kl_coef * k3`` is added per token.

    Returns the scalar loss and TRL's metrics, as fractions of the real tokens:
    ``clip_ratio/low_mean`` (ratio below ``1 - eps_low`` with a negative
    advantage), ``clip_ratio/high_mean`` (above ``1 + eps_high``, positive),
    ``clip_ratio/region_mean`` (either), and ``kl`` when a reference is given.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    m = mask.bool()
    n = m.sum().clamp(min=1)
    low = (ratio < 1 - eps_low) & (advantages < 0) & m  # where the clip binds: the gradient of the token is 0
    high = (ratio > 1 + eps_high) & (advantages > 0) & m
    metrics = {
        "clip_ratio/low_mean": float(low.sum() / n),
        "clip_ratio/high_mean": float(high.sum() / n),
        "clip_ratio/region_mean": float((low | high).sum() / n),
    }
    if entropy is not None and entropy_weight is not None:
        per_token = per_token - entropy_weight * entropy
    if ref_logprobs is not None and kl_coef > 0:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = float((kl.detach() * m).sum() / n)
    loss = aggregate(per_token, mask, aggregation, max_len)
    return loss, metrics
