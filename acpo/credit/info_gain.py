"""``acpo``: information-gain step attribution (METHODS.md §3.2) **[ours]**.

    v_k = log pi(a | x, S_1..S_k, rho)      k = 0..K   (teacher-forced answer log-prob)
    c_k = v_k - v_{k-1}                     k = 1..K   (sum_k c_k = v_K - v_0)

All K+1 probes of a completion run in ONE forward pass: the probes are packed
after the completion, and a block attention mask lets probe k see the prompt,
the completion tokens of steps 1..k and itself, with position ids continuing
from the end of step k. ``answer_values_naive`` (K+1 separate forwards) is the
reference the tests hold the packed version to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register
from acpo.stats import token_stats
from acpo.tokens import check_context, encode_probe

DEFAULT_PROBE = "\nThe answer is "


@dataclass
class ProbeRow:
    """One completion's inputs to the probes, unpadded."""

    prompt: list[int]
    completion: list[int]
    step_ends: list[int]  # token_end of each step, in completion coordinates
    probe: list[int]  # probe + answer ids
    n_answer: int  # trailing answer ids inside ``probe``


def _answer_logprob(logits: torch.Tensor, ids: torch.Tensor, n_answer: int) -> torch.Tensor:
    """Sum of log-probs of the last ``n_answer`` ids, given logits aligned with ``ids``."""
    pred = logits[-n_answer - 1 : -1]
    lp, _ = token_stats(pred, ids[-n_answer:])
    return lp.sum()


def packed_layout(row: ProbeRow) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """ids, position ids, (L, L) bool attention mask, and where each probe starts."""
    p, c, r = len(row.prompt), len(row.completion), len(row.probe)
    ends = [0, *row.step_ends]
    length = p + c + r * len(ends)
    ids = torch.tensor(row.prompt + row.completion + row.probe * len(ends), dtype=torch.long)
    pos = torch.arange(length)
    mask = torch.zeros((length, length), dtype=torch.bool)
    mask[: p + c, : p + c] = torch.tril(torch.ones((p + c, p + c), dtype=torch.bool))
    tri = torch.tril(torch.ones((r, r), dtype=torch.bool))
    starts = []
    for k, end in enumerate(ends):
        s = p + c + k * r
        starts.append(s)
        mask[s : s + r, : p + end] = True  # prompt and steps 1..k
        mask[s : s + r, s : s + r] = tri  # causal inside the probe
        pos[s : s + r] = torch.arange(p + end, p + end + r)
    return ids, pos, mask, starts


@torch.no_grad()
def answer_values(model, rows: Sequence[ProbeRow], batch_size: int = 8) -> list[torch.Tensor]:
    """v_0..v_K of each row: one forward per micro-batch of ``batch_size`` rows."""
    values = []
    device = next(model.parameters()).device
    for b0 in range(0, len(rows), batch_size):
        chunk = rows[b0 : b0 + batch_size]
        layouts = [packed_layout(r) for r in chunk]
        width = max(len(ids) for ids, *_ in layouts)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        pos = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), 1, width, width), dtype=torch.bool)
        for i, (x, q, m, _) in enumerate(layouts):
            n = len(x)
            ids[i, :n], pos[i, :n], mask[i, 0, :n, :n] = x, q, m
            mask[i, 0, n:, 0] = True  # padding rows attend somewhere: no all-masked softmax
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device)
        ).logits
        for i, (row, (x, _, _, starts)) in enumerate(zip(chunk, layouts)):
            r = len(row.probe)
            probe_ids = x[starts[0] : starts[0] + r].to(device)
            values.append(
                torch.stack([_answer_logprob(logits[i, s : s + r], probe_ids, row.n_answer) for s in starts]).cpu()
            )
    return values


@torch.no_grad()
def answer_values_naive(model, rows: Sequence[ProbeRow]) -> list[torch.Tensor]:
    """Reference: one plain causal forward per probe (K+1 forwards per row)."""
    device = next(model.parameters()).device
    out = []
    for row in rows:
        vals = []
        for end in [0, *row.step_ends]:
            ids = torch.tensor([row.prompt + row.completion[:end] + row.probe], device=device)
            logits = model(input_ids=ids).logits[0]
            vals.append(_answer_logprob(logits[-len(row.probe) :], ids[0, -len(row.probe) :], row.n_answer))
        out.append(torch.stack(vals).cpu())
    return out


def probe_rows(batch: CreditBatch, probe: str) -> list[ProbeRow]:
    """Unpadded probe inputs of each completion of ``batch``; checks answers and context."""
    rows = []
    for i, steps in enumerate(batch.steps):
        answer = batch.answers[i] if i < len(batch.answers) else None
        if answer is None:
            raise ValueError(
                f"completion {i} has no target answer for the 'acpo' credit; pass answer=... "
                "(the reference answer, or the completion's own final answer)"
            )
        probe_ids, n_answer = encode_probe(batch.tokenizer, probe, answer)
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist()
        completion = batch.completion_ids[i][batch.completion_mask[i].bool()].tolist()
        check_context(batch.model, len(prompt), len(completion), len(probe_ids), " (answer probe)")
        rows.append(ProbeRow(prompt, completion, [s.token_end for s in steps], probe_ids, n_answer))
    return rows


@register("acpo")
class InfoGainCredit(CreditMethod):
    """Step credit = how much the step raised log pi(answer | prefix, probe)."""

    unit = "nats"

    def __init__(self, probe: str = DEFAULT_PROBE, batch_size: int = 8):
        self.probe = probe
        self.batch_size = batch_size

    def credits(self, batch: CreditBatch) -> CreditResult:
        values = answer_values(batch.model, probe_rows(batch, self.probe), self.batch_size)
        return CreditResult([v[1:] - v[:-1] for v in values], {"answer_logprob": [v[1:] for v in values]})
