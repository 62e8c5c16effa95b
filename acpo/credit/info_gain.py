"""``info_gain``: information-gain step attribution (METHODS.md §3.2) **[ours]**; ``acpo`` is its old name.

    v_k = log pi(a | x, S_1..S_k, rho)      k = 0..K   (teacher-forced answer log-prob)
    c_k = v_k - v_{k-1}                     k = 1..K   (sum_k c_k = v_K - v_0)

The probes run against the KV cache of one plain forward of prompt + completion
(the scoring forward's own, when ``CreditBatch.trace_cache`` carries it, as
``acpo.explain`` does): only the K+1 probes go through the model, packed side by side,
and a block attention mask lets probe k see the cached prompt, the cached
completion tokens of steps 1..k and itself, with position ids continuing from
the end of step k. Only the positions that predict answer tokens go through the
LM head. ``answer_values_packed`` (trace and probes in one forward, no cache)
and ``answer_values_naive`` (K+1 separate forwards) are the references the
tests hold it to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from acpo.answers import answers_equivalent, extract_answer
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
def answer_values_packed(model, rows: Sequence[ProbeRow], batch_size: int = 8) -> list[torch.Tensor]:
    """v_0..v_K of each row, trace and probes packed in one forward per micro-batch (no cache)."""
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


def probe_layout(rows: Sequence[ProbeRow], cache_len: int, shifts: Sequence[int] | None = None):
    """Inputs of the probe forward against a cache of ``cache_len`` positions.

    Row i's prompt + completion sit in the cache from column ``shifts[i]`` on
    (0 by default; the left padding of the shared layout otherwise).

    Row i's probes sit side by side, each without its last answer token (an
    input nothing reads: only the positions before it predict answer tokens).
    ``ids`` and ``pos`` are (B, Q), ``mask`` is (B, 1, Q, cache_len + Q) with True
    where a query may attend. ``picks`` lists, for every answer token, (row,
    query index, target id, flat probe index) where the flat probe index numbers
    the probes of all rows in order (row 0's v_0..v_K, then row 1's, ...).
    """
    width = max((len(r.probe) - 1) * (len(r.step_ends) + 1) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), 1, width, cache_len + width), dtype=torch.bool)
    tri = torch.tril(torch.ones((width, width), dtype=torch.bool))
    picks, probe_no = [], 0
    for i, row in enumerate(rows):
        p, r, n = len(row.prompt), len(row.probe) - 1, row.n_answer
        shift = shifts[i] if shifts is not None else 0
        for k, end in enumerate([0, *row.step_ends]):
            s = k * r
            ids[i, s : s + r] = torch.tensor(row.probe[:-1])
            pos[i, s : s + r] = torch.arange(p + end, p + end + r)
            mask[i, 0, s : s + r, shift : shift + p + end] = True  # cached prompt and steps 1..k
            mask[i, 0, s : s + r, cache_len + s : cache_len + s + r] = tri[:r, :r]  # causal inside the probe
            for j in range(r + 1 - n, r + 1):  # answer token j is predicted at query s + j - 1
                picks.append((i, s + j - 1, row.probe[j], probe_no))
            probe_no += 1
        mask[i, 0, r * (len(row.step_ends) + 1) :, cache_len] = True  # padding queries attend somewhere (no NaN)
    return ids, pos, mask, torch.tensor(picks, dtype=torch.long).reshape(-1, 4)


def _probe_values(model, rows: Sequence[ProbeRow], cache, cache_len: int, shifts=None) -> list[torch.Tensor]:
    """v_0..v_K of each row from one probe forward against ``cache`` (left as it was found)."""
    device = next(model.parameters()).device
    ids, pos, mask, picks = probe_layout(rows, cache_len, shifts)
    hidden = model.get_decoder()(
        input_ids=ids.to(device), position_ids=pos.to(device), attention_mask=mask.to(device),
        past_key_values=cache, use_cache=True,
    ).last_hidden_state
    cache.crop(cache_len - cache.get_seq_length())  # drop the probes' keys and values: only the traces stay
    picks = picks.to(device)
    logits = model.get_output_embeddings()(hidden[picks[:, 0], picks[:, 1]])  # (answer tokens of all probes, vocab)
    lp, _ = token_stats(logits, picks[:, 2])
    sizes = [len(r.step_ends) + 1 for r in rows]
    return list(torch.zeros(sum(sizes), device=device).index_add_(0, picks[:, 3], lp).cpu().split(sizes))


@torch.no_grad()
def answer_values(
    model, rows: Sequence[ProbeRow], batch_size: int = 8, trace_cache=None, shifts: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """v_0..v_K of each row: per micro-batch, one plain forward that fills the KV cache, one probe forward.

    The traces are right-padded (causal attention never looks ahead, so the
    padding changes nothing the probes can see); the probe mask skips it.
    ``trace_cache`` is the cache of a forward already run over all rows (the
    scoring forward, in the shared layout, row i starting at column
    ``shifts[i]``): then only the probe forward runs.
    """
    if trace_cache is not None:
        return _probe_values(model, rows, trace_cache, trace_cache.get_seq_length(), shifts)
    device = next(model.parameters()).device
    values = []
    for b0 in range(0, len(rows), batch_size):
        chunk = rows[b0 : b0 + batch_size]
        traces = [r.prompt + r.completion for r in chunk]
        cache_len = max(len(t) for t in traces)
        trace_ids = torch.zeros((len(chunk), cache_len), dtype=torch.long)
        for i, t in enumerate(traces):
            trace_ids[i, : len(t)] = torch.tensor(t)
        cache = model.get_decoder()(input_ids=trace_ids.to(device), use_cache=True).past_key_values
        values.extend(_probe_values(model, chunk, cache, cache_len))
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
                f"completion {i} has no target answer for the 'info_gain' credit; pass answer=... "
                "(the reference answer, or the completion's own final answer)"
            )
        probe_ids, n_answer = encode_probe(batch.tokenizer, probe, answer)
        if n_answer >= len(probe_ids):
            raise ValueError(
                f"the answer probe {probe!r} has no token of its own before the answer {answer!r}; "
                f"use a probe that ends in text, e.g. {DEFAULT_PROBE!r}"
            )
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist()
        completion = batch.completion_ids[i][batch.completion_mask[i].bool()].tolist()
        check_context(batch.model, len(prompt), len(completion), len(probe_ids), " (answer probe)")
        rows.append(ProbeRow(prompt, completion, [s.token_end for s in steps], probe_ids, n_answer))
    return rows


@register("info_gain")
class InfoGainCredit(CreditMethod):
    """Step credit = how much the step raised log pi(answer | prefix, probe)."""

    unit = "nats"
    needs_stats = False  # runs its own probes (through the scoring forward's KV cache when there is one)
    needs_answers = needs_policy = needs_texts = uses_trace_cache = True
    meaning = ("how much the step changed log p(reference answer | the steps so far): blue made the reference "
               "answer more likely, red less. It scores belief in the reference answer, not the step's correctness: "
               "on a failed trace a wrong line can be blue")

    def __init__(self, probe: str = DEFAULT_PROBE, batch_size: int = 8, target: str = "gold",
                 length_normalise: bool = False):
        """``target="contrast"``: credit toward the reference answer minus credit toward the completion's own
        (different) answer, i.e. which step moved belief from the right answer to the wrong one.
        ``length_normalise``: credit per token of the step. Both are readings measured in
        docs/BENCHMARKS.md ("Reading the information gain")."""
        if target not in ("gold", "contrast"):
            raise ValueError(f"info_gain target must be 'gold' or 'contrast', got {target!r}")
        self.probe, self.batch_size = probe, batch_size
        self.target, self.length_normalise = target, length_normalise

    def gains(self, batch: CreditBatch, answers) -> list[torch.Tensor]:
        shifts = (batch.prompt_mask.shape[1] - batch.prompt_mask.sum(1)).tolist()  # left padding of each row
        rows = probe_rows(dataclasses.replace(batch, answers=list(answers)), self.probe)
        return answer_values(batch.model, rows, self.batch_size, batch.trace_cache, shifts)

    def credits(self, batch: CreditBatch) -> CreditResult:
        values = self.gains(batch, batch.answers)
        credits = [v[1:] - v[:-1] for v in values]
        if self.target == "contrast":
            if len(batch.texts) != len(credits):
                raise ValueError("the 'contrast' target reads each completion's own answer: the batch needs texts")
            own = [extract_answer(t) for t in batch.texts]
            differs = [i for i, (a, gold) in enumerate(zip(own, batch.answers))
                       if a is not None and gold is not None and not answers_equivalent(a, gold)]
            if differs:
                sub = dataclasses.replace(batch, prompt_ids=batch.prompt_ids[differs],
                                          prompt_mask=batch.prompt_mask[differs],
                                          completion_ids=batch.completion_ids[differs],
                                          completion_mask=batch.completion_mask[differs],
                                          steps=[batch.steps[i] for i in differs], trace_cache=None)
                for i, v in zip(differs, self.gains(sub, [own[i] for i in differs])):
                    credits[i] = credits[i] - (v[1:] - v[:-1])
        if self.length_normalise:
            credits = [c / torch.tensor([max(1, s.n_tokens) for s in steps], dtype=c.dtype)
                       for c, steps in zip(credits, batch.steps)]
        return CreditResult(credits, {"answer_logprob": [v[1:] for v in values]})
