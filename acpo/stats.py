"""Token statistics: log-probability of the chosen token and full-vocabulary entropy.

Every credit method, the trainer's loss and the app read these two numbers, so
they are computed in exactly one place. The logits of a real model are large
(batch x time x vocab, e.g. 4 x 2048 x 152k), so we never build a float32
log-softmax of the whole tensor: we walk along time in chunks and upcast one
chunk at a time (METHODS.md §1).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

CHUNK_BYTES = 1 << 26  # ~64 MiB per float32 temporary: chunk rows = CHUNK_BYTES / (4 * vocab)


def default_chunk_tokens(vocab: int) -> int:
    """Positions per chunk so one float32 (chunk, vocab) temporary is ~64 MiB."""
    return max(1, CHUNK_BYTES // (4 * vocab))


def token_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    chunk_tokens: int | None = None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy (nats) under ``logits``, in float32.

    Args:
        logits: (..., vocab) scores in any float dtype (float32, bfloat16, ...).
        targets: (...) token ids, the same leading shape as ``logits``.
        mask: optional (...) bool/0-1 tensor; masked-out positions (padding) get
            0 in both outputs and are excluded from the finiteness check.
        chunk_tokens: how many positions are upcast at once (default: ~64 MiB
            per temporary); peak extra memory is about ``3 * chunk_tokens * vocab * 4`` bytes.
        check_finite: raise on NaN/inf logits at unmasked positions.

    Returns:
        ``(logprobs, entropy)``, both float32 with the leading shape of ``targets``.

    >>> lp, h = token_stats(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))
    >>> [round(x, 4) for x in lp[0].tolist()], [round(x, 4) for x in h[0].tolist()]
    ([-1.3863, -1.3863], [1.3863, 1.3863])
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} does not match targets shape "
            f"{tuple(targets.shape)}: logits must be targets.shape + (vocab,)"
        )
    lead = targets.shape
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)
    flat_targets = targets.reshape(-1)
    flat_mask = None if mask is None else mask.reshape(-1).bool()
    n = flat_targets.numel()
    step = max(1, int(chunk_tokens or default_chunk_tokens(vocab)))
    # Under autograd the exp must not be overwritten in place (its backward needs it).
    in_place = not (torch.is_grad_enabled() and logits.requires_grad)
    lps, ents = [], []
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        chunk = flat_logits[rows].float()  # a view when already float32: never write to it
        logp = torch.log_softmax(chunk, dim=-1)
        lp = logp.gather(-1, flat_targets[rows, None].clamp(min=0)).squeeze(-1)
        probs = logp.exp()
        ent = -(probs.mul_(logp) if in_place else probs * logp).sum(-1)  # H = -sum_v p_v log p_v
        del chunk, logp, probs
        if check_finite:
            bad = ~(torch.isfinite(ent) & torch.isfinite(lp))
            if flat_mask is not None:
                bad &= flat_mask[rows]
            if bad.any():
                idx = torch.nonzero(bad).squeeze(-1) + start
                where = [tuple(int(i) for i in torch.unravel_index(j, lead)) for j in idx[:10].cpu()]
                raise FloatingPointError(
                    f"non-finite logits (NaN or inf) at {int(bad.sum())} position(s), first "
                    f"{where} (indices into shape {tuple(lead)}); check the model's weights "
                    "and dtype (float16 overflows are common: try bfloat16 or float32)"
                )
        lps.append(lp)
        ents.append(ent)
    logprobs = torch.cat(lps) if lps else torch.zeros(0, device=logits.device)
    entropy = torch.cat(ents) if ents else torch.zeros(0, device=logits.device)
    if flat_mask is not None:
        logprobs = logprobs.masked_fill(~flat_mask, 0.0)
        entropy = entropy.masked_fill(~flat_mask, 0.0)
    return logprobs.reshape(lead), entropy.reshape(lead)


def completion_logits(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    caches: list | None = None,
) -> torch.Tensor:
    """Logits that predict each completion token, shape (batch, time, vocab).

    Layout used everywhere in the project (and by TRL): prompts left-padded,
    completions right-padded, concatenated. Position ids come from the mask so
    left padding does not shift positions. With a ``caches`` list, the
    forward's KV cache is appended to it (the ``acpo`` probes reuse it).
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=caches is not None)
    if caches is not None:
        caches.append(out.past_key_values)
    logits = out.logits
    p = prompt_ids.shape[1]
    return logits[:, p - 1 : -1]


def completion_stats(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk_tokens: int | None = None,
    caches: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprobs, entropy) of each completion token, (batch, time), padding zeroed."""
    logits = completion_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask, caches)
    return token_stats(logits, completion_ids, completion_mask, chunk_tokens)


@contextmanager
def eval_mode(model):
    """Dropout off and no gradients while scoring; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def scored_stats(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    batch_size: int = 8,
    caches: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``completion_stats`` without gradients, in micro-batches of ``batch_size`` rows, returned on CPU.

    With a ``caches`` list, each micro-batch's KV cache is appended to it.
    """
    device = next(model.parameters()).device
    logprobs = torch.zeros(completion_ids.shape)
    entropy = torch.zeros(completion_ids.shape)
    with eval_mode(model):
        for b0 in range(0, len(completion_ids), batch_size):
            sl = slice(b0, b0 + batch_size)
            lp, ent = completion_stats(
                model, *(t[sl].to(device) for t in (prompt_ids, prompt_mask, completion_ids, completion_mask)),
                caches=caches,
            )
            logprobs[sl], entropy[sl] = lp.cpu(), ent.cpu()
    return logprobs, entropy
