"""``result_logprob``: how likely the scoring model finds each result a step states (``... = 73``).

A teacher-forced re-derivation: the mean log-probability of the tokens of every number written right after an
``=`` in the step, given everything before it (the model reading ``48 + 24 =`` and then ``73``). Where a step
states no result, its mean token log-probability stands in (``mean_logprob``). Like ``mean_logprob`` it is a
log-prob (nats per token, <= 0): lowest = most suspicious. It looks only where an error of computation shows,
instead of averaging over the prose around it. No forward beyond the scoring one.
"""

from __future__ import annotations

import re

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register
from acpo.segment import owned_char_starts
from acpo.tokens import encode_with_offsets, offsets_by_decoding

RESULT = re.compile(r"=\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")
"""A number stated right after ``=`` (its digits are the result's tokens)."""


def result_token_mask(text: str, offsets, n_tokens: int) -> torch.Tensor:
    """(n_tokens,) bool: the tokens that own a character of a number stated right after ``=``."""
    starts = owned_char_starts(offsets, len(text))
    ends = starts[1:] + [len(text)]
    chars = torch.zeros(len(text) + 1, dtype=torch.bool)
    for m in RESULT.finditer(text):
        chars[m.start(1) : m.end(1)] = True
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    for j, (a, b) in enumerate(zip(starts[:n_tokens], ends[:n_tokens])):
        mask[j] = bool(chars[a:b].any()) if b > a else False
    return mask


def token_offsets(batch: CreditBatch, i: int) -> list[tuple[int, int]]:
    """Character spans of completion ``i``'s tokens: its text tokenized again (as ``acpo.explain`` did), or,
    where that gives other ids (a sampled tokenization), its ids decoded one by one."""
    n = int(batch.completion_mask[i].sum())
    if batch.tokenizer is None:
        raise ValueError("this credit reads which tokens state a result: it needs CreditBatch.tokenizer")
    ids = batch.completion_ids[i, :n].tolist()
    encoded, offsets = encode_with_offsets(batch.tokenizer, batch.texts[i])
    # sampled ids need not be the text's own tokenization: then each id's span comes from decoding them
    return offsets if encoded == ids else offsets_by_decoding(batch.tokenizer, ids, batch.texts[i])


def result_logprobs(batch: CreditBatch) -> list[torch.Tensor]:
    """Per completion, per step: the mean log-prob of its result tokens, else of all its tokens."""
    out = []
    for i, steps in enumerate(batch.steps):
        n = int(batch.completion_mask[i].sum())
        lp = batch.logprobs[i, :n].float()
        mask = result_token_mask(batch.texts[i], token_offsets(batch, i), n)
        values = []
        for s in steps:
            picked = lp[s.token_start : s.token_end][mask[s.token_start : s.token_end]]
            values.append((picked if len(picked) else lp[s.token_start : s.token_end]).mean())
        out.append(torch.stack(values))
    return out


@register("result_logprob")
class ResultLogprobCredit(CreditMethod):
    signed, unit = False, "nats/token"
    needs_policy = True  # the tokenizer: which tokens state a result (the model itself is not run)
    needs_texts = True  # the results are found in the completion's text
    meaning = ("the mean log-probability of the results the step states after '=' (≤ 0; the step's mean where it "
               "states none): darker = the model was less sure of them")

    def credits(self, batch: CreditBatch) -> CreditResult:
        return CreditResult(result_logprobs(batch))
