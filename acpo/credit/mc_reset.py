"""``mc_reset``: step credits from Monte-Carlo values at step boundaries (METHODS.md §3.4).

The shared rollout engine (``acpo.rollout.HFEngine``) samples M continuations
from each prefix ``x + S_1..S_k`` and a scorer rewards them; this module turns
those rewards into credits (the "resampling importance" of Thought Anchors):

    V_k = mean reward of the continuations after step k,  V_K = r_i
    c_k = V_k - V_{k-1}

Given ``reset_values`` (continuation rewards sampled elsewhere), V_0 is the
group's mean reward; otherwise the method samples every boundary itself,
V_0 included (continuations of the prompt alone).

Boundaries that were not sampled **[ours]**: the value change between two
known boundaries is spread evenly over the steps between them, so credits
still telescope to V_K - V_0 (RRPO samples one boundary, ``mc_oracle`` all).
"""

from __future__ import annotations

import re
import time
from typing import Callable, Mapping, Sequence

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register
from acpo.rollout import HFEngine
from acpo.tasks.base import answers_match, extract_final_answer

Scorer = Callable[[int, str], float]  # (completion index, full completion text) -> reward


def mc_step_credits(
    n_steps: int, group_mean: float, final_reward: float, boundary_rewards: Mapping[int, Sequence[float]]
) -> torch.Tensor:
    """Credits (n_steps,) from continuation rewards sampled after steps k (1 <= k < n_steps).

    >>> mc_step_credits(3, 0.5, 0.0, {1: [1.0, 1.0], 2: [0.0, 0.5]}).tolist()
    [0.5, -0.75, -0.25]
    """
    if n_steps < 1:
        raise ValueError("a completion needs at least one step")
    known = {0: float(group_mean), n_steps: float(final_reward)}
    for k, rewards in boundary_rewards.items():
        if not 1 <= k < n_steps:
            raise ValueError(f"reset boundary {k} is outside 1..{n_steps - 1} (after step k, before the end)")
        if len(rewards) == 0:
            raise ValueError(f"reset boundary {k} has no continuation rewards")
        known[k] = float(sum(rewards) / len(rewards))
    marks = sorted(known)
    credits = torch.zeros(n_steps, dtype=torch.float64)
    for a, b in zip(marks, marks[1:]):
        credits[a:b] = (known[b] - known[a]) / (b - a)
    return credits.float()


def self_localisation_prompt(step_texts: Sequence[str]) -> str:
    """SRPO's question to the policy: the numbered steps, then which one is first wrong."""
    numbered = "".join(f"Step {k + 1}: {t.strip()}\n" for k, t in enumerate(step_texts))
    return f"{numbered}Which step is the first wrong one? Answer with \\boxed{{N}}.\n"


def parse_self_localisation(answer: str, n_steps: int) -> tuple[int, bool]:
    r"""(1-based step the policy named, whether it named one): the last ``\boxed{N}``,
    else the last ``Step N``, else the middle step.

    >>> parse_self_localisation(r"I think \boxed{2}", 3), parse_self_localisation("no idea", 3)
    ((2, True), (2, False))
    """
    for pattern in (r"\\boxed\{(\d+)\}", r"Step (\d+)"):
        found = re.findall(pattern, answer)
        if found and 1 <= int(found[-1]) <= n_steps:
            return int(found[-1]), True
    return (n_steps + 1) // 2, False


def answer_scorer(answers: Sequence[str | None]) -> Scorer:
    """Reward 1.0 when a continued completion's final answer equals completion i's reference answer."""
    if any(a is None or not str(a).strip() for a in answers):
        raise ValueError(
            "the 'mc_reset' credit scores sampled continuations: give every completion a reference answer, "
            "or a scorer (method_options={'mc_reset': {'score': fn}} with fn(index, text) -> reward)"
        )
    return lambda i, text: float(answers_match(extract_final_answer(text), str(answers[i])))


class Cancelled(RuntimeError):
    """Raised from a progress callback to stop sampling early."""


@register("mc_reset")
class MonteCarloResetCredit(CreditMethod):
    """Credits from sampled continuations at every step boundary.

    Args:
        samples: continuations per boundary (M).
        temperature: sampling temperature of the continuations.
        batch_size: continuations per ``generate`` call.
        max_new_tokens: the longest continuation.
        score: ``score(i, text) -> reward`` of completion i's prefix plus a continuation (default: whether its
            final answer equals completion i's reference answer, ``answer_scorer``).
        seed: torch seed set before sampling, so a call is repeatable.
        progress: ``progress(done, total)`` as continuations are sampled (``done`` may be fractional: it moves
            with every generated token); raise there to stop at once.
    """

    unit = "reward"
    needs_stats = False  # samples continuations of step prefixes instead
    needs_answers = needs_policy = needs_texts = samples_continuations = True
    meaning = ("how much the step changed the accuracy of continuations resampled after it: blue raised the "
               "chance of a right answer, red lowered it")

    def __init__(self, samples: int = 8, temperature: float = 1.0, batch_size: int = 64, max_new_tokens: int = 128,
                 score: Scorer | None = None, seed: int = 0, progress: Callable[[int, int], None] | None = None):
        if int(samples) < 1:
            raise ValueError(f"mc_reset needs at least one continuation per boundary; got samples={samples}")
        if float(temperature) <= 0:
            raise ValueError(f"mc_reset samples continuations: temperature must be > 0; got {temperature}")
        if int(batch_size) < 1 or int(max_new_tokens) < 1:
            raise ValueError("mc_reset's batch_size and max_new_tokens must be at least 1")
        self.samples, self.temperature, self.batch_size = int(samples), float(temperature), int(batch_size)
        self.max_new_tokens, self.score, self.seed, self.progress = int(max_new_tokens), score, int(seed), progress
        self.seconds = 0.0  # wall time of the last sampling, for whoever shows the cost
        self.sampled_tokens = 0  # continuation tokens of the last sampling: the trainer logs the oracle's cost

    def credits(self, batch: CreditBatch) -> CreditResult:
        if batch.reset_values is not None:
            if batch.rewards is None:
                raise ValueError("the 'mc_reset' credit with given reset_values needs the group's rewards")
            return CreditResult([
                mc_step_credits(len(steps), float(batch.rewards[batch.group_ids == batch.group_ids[i]].nanmean()),
                                float(batch.rewards[i]), batch.reset_values[i])
                for i, steps in enumerate(batch.steps)
            ])
        credits, accuracy = self.sampled_credits(batch)
        return CreditResult(credits, {"resample_accuracy": accuracy})

    def boundary_values(self, batch: CreditBatch) -> list[dict[int, list[float]]]:
        """Continuation rewards after every boundary k = 0..K-1 of every completion (k = 0: the prompt alone)."""
        score = self.scorer(batch)
        if batch.model is None or batch.tokenizer is None or not batch.texts:
            raise ValueError("the 'mc_reset' credit samples continuations: the batch needs model, tokenizer and texts")
        engine = HFEngine(batch.model, batch.tokenizer, self.max_new_tokens, self.temperature, self.batch_size)
        prefixes, owners = [], []
        for i, steps in enumerate(batch.steps):
            prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()].tolist()
            ids = batch.completion_ids[i].tolist()
            for k in range(len(steps)):
                end = steps[k - 1].token_end if k else 0
                prefixes.append(prompt + ids[:end])
                owners.append((i, k, batch.texts[i][: steps[k - 1].char_end] if k else ""))
        total = len(prefixes) * self.samples
        values: list[dict[int, list[float]]] = [{} for _ in batch.steps]
        with torch.random.fork_rng(devices=[]):  # repeatable, and the caller's stream (a trainer's rollouts) moves on
            torch.manual_seed(self.seed)
            return self._sample_values(engine, prefixes, owners, values, score, total)

    def _sample_values(self, engine, prefixes, owners, values, score, total) -> list[dict[int, list[float]]]:
        started = time.perf_counter()
        self.sampled_tokens = 0
        if self.progress:
            self.progress(0, total)
        per_call = max(1, self.batch_size // self.samples)  # prefixes per generate call
        for a in range(0, len(prefixes), per_call):
            on_token = None
            if self.progress:
                def on_token(sequences, tokens, done=a * self.samples):  # within a call: its share of tokens
                    self.progress(min(total, done + sequences * min(1.0, tokens / self.max_new_tokens)), total)
            samples = engine.generate(prefixes[a : a + per_call], n=self.samples, on_token=on_token)
            self.sampled_tokens += sum(len(s.completion_ids) for s in samples)
            for j, s in enumerate(samples):
                i, k, head = owners[a + j // self.samples]
                values[i].setdefault(k, []).append(float(score(i, head + s.text)))
            if self.progress:
                self.progress(min(total, (a + per_call) * self.samples), total)
        self.seconds = time.perf_counter() - started
        return values

    def scorer(self, batch: CreditBatch) -> Scorer:
        """The given ``score``, else the match of a continuation's answer with the batch's reference answers."""
        if self.score is not None:
            return self.score
        references = batch.reference_answers or [None] * len(batch.steps)
        return answer_scorer(references)

    def sampled_credits(self, batch: CreditBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(credits, resample accuracy) per completion: the accuracy of the continuations sampled from the start
        of each step (step 0: from the prompt alone), the "accuracy if resampled from here" curve."""
        values = self.boundary_values(batch)
        out, accuracy = [], []
        for i, steps in enumerate(batch.steps):
            known = batch.rewards is not None and not torch.isnan(batch.rewards[i])
            final = float(batch.rewards[i]) if known else float(self.scorer(batch)(i, batch.texts[i]))
            v0 = sum(values[i][0]) / len(values[i][0])
            out.append(mc_step_credits(len(steps), v0, final, {k: v for k, v in values[i].items() if k > 0}))
            accuracy.append(torch.tensor([sum(values[i][k]) / len(values[i][k]) for k in range(len(steps))]))
        return out, accuracy
