"""``mc_reset``: step credits from Monte-Carlo values at reset boundaries (METHODS.md §3.4).

The trainer's rollout engine samples M continuations from a prefix
``x + S_1..S_k`` and scores them; this module turns those rewards into credits:

    V_0 = mean reward of the group,  V_k = mean continuation reward,  V_K = r_i
    c_k = V_k - V_{k-1}

Boundaries that were not sampled **[ours]**: the value change between two
known boundaries is spread evenly over the steps between them, so credits
still telescope to V_K - V_0 (RRPO samples one boundary, ``mc_oracle`` all).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register


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


@register("mc_reset")
class MonteCarloResetCredit(CreditMethod):
    """Needs ``batch.reset_values`` (boundary -> continuation rewards) and the group rewards."""

    def credits(self, batch: CreditBatch) -> CreditResult:
        if batch.reset_values is None or batch.rewards is None:
            raise ValueError(
                "the 'mc_reset' credit needs sampled continuation rewards per boundary and the group's "
                "rewards; the trainer's rollout engine samples them (methods rrpo/srpo/attr_reset/mc_oracle)"
            )
        out = []
        for i, steps in enumerate(batch.steps):
            sel = batch.group_ids == batch.group_ids[i]
            out.append(
                mc_step_credits(
                    len(steps), float(batch.rewards[sel].mean()), float(batch.rewards[i]), batch.reset_values[i]
                )
            )
        return CreditResult(out)
