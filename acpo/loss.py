"""The clipped policy loss with per-token advantages (METHODS.md §8) and its KL term.

All inputs are (batch, time) tensors aligned with the completion tokens;
``mask`` marks real (non-padding) tokens that get gradient.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from acpo.stats import completion_stats

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


def truncated_is_weight(train_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-token truncated importance weight ``min(exp(logp_train - logp_rollout), cap)`` (no gradient).

    A rollout engine other than the trained model (vLLM: bf16, its own kernels) samples from a slightly
    different distribution than the one the trainer scores; this weight re-weights each sampled token towards
    the trainer's policy, truncated at ``cap`` so that a rare token cannot dominate (truncated importance
    sampling, TIS). It is TRL's ``GRPOTrainer`` correction with ``vllm_importance_sampling_mode="token_truncate"``
    and ``vllm_importance_sampling_clip_max`` (trl 1.16: ``torch.clamp(torch.exp(old_per_token_logps -
    sampling_per_token_logps), max=C)``, multiplied into the per-token policy loss).
    """
    return torch.exp(train_logprobs.detach() - rollout_logprobs).clamp(max=cap)


def rollout_mismatch(train_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                     mask: torch.Tensor) -> dict[str, float]:
    """Token sums of how far the rollout engine's log-probs are from the trainer's, over ``mask``'s tokens.

    ``sampling/sampling_logp_difference/mean``: |logp_train - logp_rollout| (TRL's name);
    ``sampling/kl_k3``: the k3 estimate of KL(pi_rollout || pi_train) on the rollout's own samples. Sums, so that
    micro-batches and processes add up; divide by the token count.
    """
    m = mask.bool()
    d = (train_logprobs.detach() - rollout_logprobs)[m]
    return {"sampling/sampling_logp_difference/mean": float(d.abs().sum()),
            "sampling/kl_k3": float(k3_kl(rollout_logprobs[m], train_logprobs.detach()[m]).sum())}


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    aggregation: str = "token_mean",
    max_len: int = 1,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    is_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss (times an importance weight), plus a KL penalty.

    Args:
        ref_logprobs, kl_coef: when given, ``kl_coef * k3`` is added per token.
        is_weight: when given, each token's clipped surrogate is multiplied by it
            (``truncated_is_weight``: the rollout engine's correction, as TRL applies it: to the policy term only).

    Returns the scalar loss and TRL's metrics, as fractions of the real tokens:
    ``clip_ratio/low_mean`` (ratio below ``1 - eps_low`` with a negative
    advantage), ``clip_ratio/high_mean`` (above ``1 + eps_high``, positive),
    ``clip_ratio/region_mean`` (either), and ``kl`` when a reference is given.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if is_weight is not None:
        per_token = per_token * is_weight
    m = mask.bool()
    n = m.sum().clamp(min=1)
    low = (ratio < 1 - eps_low) & (advantages < 0) & m  # where the clip binds: the gradient of the token is 0
    high = (ratio > 1 + eps_high) & (advantages > 0) & m
    metrics = {
        "clip_ratio/low_mean": float(low.sum() / n),
        "clip_ratio/high_mean": float(high.sum() / n),
        "clip_ratio/region_mean": float((low | high).sum() / n),
    }
    if ref_logprobs is not None and kl_coef > 0:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = float((kl.detach() * m).sum() / n)
    loss = aggregate(per_token, mask, aggregation, max_len)
    return loss, metrics


class NonFiniteLossError(RuntimeError):
    """The loss, the gradient or the weights went NaN/inf; the run stopped, and nothing non-finite was saved."""


def nonfinite_loss(loss: float, grad_norm) -> str | None:
    """What is NaN/inf of a step's loss and gradient norm (None: both finite; DeepSpeed's None norm counts 0)."""
    norm = 0.0 if grad_norm is None else float(grad_norm)
    if not math.isfinite(loss):
        return f"loss is {'NaN' if math.isnan(loss) else loss}"
    if not math.isfinite(norm):
        return f"gradient norm is {'NaN' if math.isnan(norm) else norm}"
    return None


def nonfinite_weight(model) -> str | None:
    """The name of the first trained weight holding NaN/inf (None: all finite)."""
    return next((n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()), None)


def accumulate_gradients(model, acc, batch, token_adv: torch.Tensor, old_logprobs: torch.Tensor | None, cfg,
                         ref_logprobs: torch.Tensor | None = None, rollout_logprobs: torch.Tensor | None = None,
                         is_cap: float | None = None):
    """Backward of the batch's policy loss, micro-batch by micro-batch (``cfg.micro_batch_size`` rows).

    The micro-batch losses, weighted by their share, add up to the whole batch's aggregate; accelerate's
    ``no_sync`` keeps DDP from averaging gradients across processes until the last micro-batch's backward.
    ``old_logprobs`` None: the training forward's detached log-probs are the old ones (the batch's first
    optimizer step). ``rollout_logprobs``: the sampling engine's log-probs of the batch's tokens, when it is not
    the trained model (vLLM); their mismatch with the old log-probs is measured, and with ``is_cap`` each token's
    policy term is weighted by ``truncated_is_weight`` (None: measured only; no rollout log-probs: weight 1).
    Returns (loss, token sums of the loss metrics, the entropy and the mismatch, the detached log-probs when
    ``old_logprobs`` was None and the batch has later steps, else None).
    """
    mask = batch.completion_mask
    n_seq, n_tok, mb, device = len(mask), int(mask.sum()), cfg.micro_batch_size, acc.device
    loss_sum, first = 0.0, []
    sums = {"entropy": 0.0, "clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 0.0, "clip_ratio/region_mean": 0.0,
            "kl": 0.0}
    for b0 in range(0, n_seq, mb):
        sl = slice(b0, b0 + mb)
        t = [x[sl].to(device) for x in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, mask)]
        with contextlib.nullcontext() if b0 + mb >= n_seq else acc.no_sync(model):
            lp, ent = completion_stats(model, *t)
            old_lp = lp.detach() if old_logprobs is None else old_logprobs[sl].to(device)
            if old_logprobs is None and cfg.num_iterations > 1:
                first.append(old_lp.cpu())
            is_weight = None
            if rollout_logprobs is not None:
                rollout_lp = rollout_logprobs[sl].to(device)
                for k, v in rollout_mismatch(old_lp, rollout_lp, t[3]).items():
                    sums[k] = sums.get(k, 0.0) + v
                if is_cap is not None:
                    is_weight = truncated_is_weight(old_lp, rollout_lp, is_cap)
                    real = is_weight[t[3].bool()]
                    for k, v in {"sampling/importance_sampling_ratio/mean": real.sum(),
                                 "sampling/importance_sampling_ratio/capped": (real >= is_cap).sum()}.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
            loss, metrics = policy_loss(
                lp, old_lp, token_adv[sl].to(device), t[3], cfg.eps_low, cfg.eps_high, cfg.aggregation,
                cfg.max_new_tokens, ref_logprobs=None if ref_logprobs is None else ref_logprobs[sl].to(device),
                kl_coef=cfg.kl_coef, is_weight=is_weight)
            share = {"token_mean": int(t[3].sum()) / max(1, n_tok)}.get(cfg.aggregation, len(t[0]) / n_seq)
            acc.backward(loss * share)
        loss_sum += float(loss.detach()) * share
        tokens = float(t[3].sum())
        sums["entropy"] += float((ent.detach() * t[3]).sum())
        for k, v in metrics.items():
            sums[k] += v * tokens
    return loss_sum, sums, torch.cat(first) if first else None


def check_finite(acc, loss: float, grad_norm, step: int, last_good: Callable[[], str]) -> None:
    """Raise NonFiniteLossError on every process if any has a NaN/inf loss or gradient norm (collective)."""
    from acpo.distributed import any_process

    if any_process(acc, (why := nonfinite_loss(loss, grad_norm)) is not None):
        raise NonFiniteLossError(f"{why or 'loss is NaN/inf on another process'} at step {step}; the optimizer "
                                 f"step was not taken; {last_good()}")


def check_weights_finite(acc, model, step: int, lr: float, max_grad_norm: float, last_good: Callable[[], str]) -> None:
    """Raise NonFiniteLossError on every process if an optimizer step made a trained weight NaN/inf (collective)."""
    from acpo.distributed import any_process

    if any_process(acc, (bad := nonfinite_weight(model)) is not None):
        raise NonFiniteLossError(
            f"weights became NaN/inf in the optimizer step of step {step} ({bad or 'on another process'}; lr={lr}, "
            f"max_grad_norm={max_grad_norm}); nothing of this step was saved; {last_good()}")
