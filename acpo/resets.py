"""Reset groups (rrpo / srpo / attr_reset, docs/METHODS.md §3.4): continuations from a step prefix of failed
completions, which join the batch as new groups.

Each recipe keeps a different prefix: rrpo a random number of steps, srpo the
steps before the one the policy itself names as first wrong, attr_reset the
steps before the one with the lowest ``RESET_BOUNDARY_CREDIT`` (the information gain).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from acpo.config import RESET_BOUNDARY_CREDIT
from acpo.credit import CreditBatch
from acpo.credit.mc_reset import parse_self_localisation, self_localisation_prompt
from acpo.pipeline import make_credit
from acpo.rollout import Sample
from acpo.tasks import Problem
from acpo.tokens import pad_batch


def reset_groups(recipe: str, batch: CreditBatch, problems: list[Problem], samples: list[Sample],
                 rewards: torch.Tensor, *, group_size: int, resets: int, per_reset: int,
                 generate: Callable[..., list[Sample]], reward_of: Callable, encode: Callable[[str], list[int]],
                 probe: str) -> tuple[list[Problem], list[Sample], list[str], torch.Tensor, torch.Tensor] | None:
    """Continuations of up to ``resets`` failed completions (of two steps or more), ``per_reset`` each.

    ``generate(prompt_ids, n, greedy)`` samples from the policy; ``reward_of(problems, texts, ids)`` is the
    total reward of whole completions; ``encode(text)`` tokenizes a prompt (srpo's question to the policy).
    Returns the continuations' problems (one per group), samples (prompt = prompt + prefix, completion =
    the suffix), whole texts, rewards and group ids numbered after the batch's; None when nothing failed.
    """
    failed = [i for i in range(len(samples)) if rewards[i] < 1 and len(batch.steps[i]) >= 2]
    random.shuffle(failed)
    failed = failed[:resets]
    if not failed:
        return None
    prefixes, kept = [], []
    for i in failed:
        k = reset_boundary(recipe, i, batch, problems[i // group_size], samples[i], generate, encode, probe)
        end = batch.steps[i][k - 1].token_end if k > 0 else 0
        prefixes.append(samples[i].prompt_ids + samples[i].completion_ids[:end])
        kept.append(samples[i].text[: batch.steps[i][k - 1].char_end] if k > 0 else "")
    continuations = generate(prefixes, n=per_reset)
    owners = [problems[i // group_size] for i in failed]
    texts = [kept[j // per_reset] + c.text for j, c in enumerate(continuations)]
    cont_rewards = reward_of([owners[j // per_reset] for j in range(len(continuations))], texts,
                             [c.completion_ids for c in continuations])
    group_ids = torch.arange(len(continuations)) // per_reset + int(batch.group_ids.max()) + 1
    return owners, continuations, texts, cont_rewards, group_ids


def reset_boundary(recipe: str, i: int, batch: CreditBatch, problem: Problem, sample: Sample, generate, encode,
                   probe: str) -> int:
    """How many of row ``i``'s steps the prefix keeps."""
    k_steps = len(batch.steps[i])
    if recipe == "rrpo":
        return random.randrange(1, k_steps)
    if recipe == "srpo":  # ask the policy which step is first wrong; keep the steps before it
        prompt = self_localisation_prompt([s.text for s in batch.steps[i]])
        answer = generate([encode(prompt)], n=1, greedy=True)[0]
        return parse_self_localisation(answer.text, k_steps)[0] - 1
    one = CreditBatch(*(t[i : i + 1] for t in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                               batch.completion_mask, batch.logprobs, batch.entropy)),
                      steps=[batch.steps[i]], advantages=batch.advantages[i : i + 1],
                      group_ids=torch.zeros(1, dtype=torch.long), answers=[problem.answer], model=batch.model,
                      tokenizer=batch.tokenizer)
    credits = make_credit(RESET_BOUNDARY_CREDIT, probe=probe).credits(one).step_credits[0]
    return int(torch.argmin(credits))  # keep the steps before the blamed one


def concat_batches(x: CreditBatch, y: CreditBatch) -> CreditBatch:
    """One credit batch from two (prompt and completion widths re-padded, time-aligned tensors padded)."""

    def rows(batch):
        return [(batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist(),
                 batch.completion_ids[i][batch.completion_mask[i].bool()].tolist()) for i in range(len(batch.steps))]

    both = rows(x) + rows(y)
    tensors = pad_batch([p for p, _ in both], [c for _, c in both], x.tokenizer.pad_token_id)
    return CreditBatch(*tensors, logprobs=pad_cat(x.logprobs, y.logprobs, tensors[2].shape[1]),
                       entropy=pad_cat(x.entropy, y.entropy, tensors[2].shape[1]), steps=x.steps + y.steps,
                       advantages=torch.cat([x.advantages, y.advantages]),
                       group_ids=torch.cat([x.group_ids, y.group_ids]), rewards=torch.cat([x.rewards, y.rewards]),
                       answers=x.answers + y.answers, texts=x.texts + y.texts, model=x.model, tokenizer=x.tokenizer)


def pad_cat(u: torch.Tensor, v: torch.Tensor, width: int) -> torch.Tensor:
    """Rows of ``u`` then ``v``, each right-padded with zeros to ``width`` columns."""
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in (u, v)])
