"""Rewards of a batch as TRL computes them: every reward function on every completion, summed with weights.

A reward function may return None for a row ("no reward"): it is NaN in the
table, counts 0 in the weighted sum, and a row where every function returned
None has a NaN total, which the trainer leaves out of its group's baseline,
its metrics and the curriculum.
"""

from __future__ import annotations

import math
import warnings

import torch

from acpo.rewards import call_reward
from acpo.tasks import Problem


def reward_table(functions: list, names: list[str], problems: list[Problem], prompts: list, texts: list[str],
                 completion_ids: list[list[int]] | None = None, warned: set[str] | None = None) -> torch.Tensor:
    """(completions, functions) rewards, each function called as TRL calls it; None -> NaN.

    ``problems[i]`` and ``prompts[i]`` belong to ``texts[i]``. Keywords:
    ``prompts``, ``completions``, ``completion_ids``, the dataset row's other
    columns, and ``answer``: the gold answer read from the answer column
    (GSM8K's ``... #### 72`` arrives as ``72``).
    """
    keys = dict.fromkeys(k for p in problems for k in p.columns)
    kwargs = {k: [p.columns.get(k) for p in problems] for k in keys}
    kwargs["answer"] = [p.answer for p in problems]
    table = torch.empty(len(texts), len(functions))
    for j, (fn, name) in enumerate(zip(functions, names)):
        values = call_reward(fn, prompts, texts, completion_ids=completion_ids, **kwargs)
        if all(v is None for v in values) and name not in (warned or ()):
            if warned is not None:
                warned.add(name)  # said once per run, not at every step
            warnings.warn(f"reward function {name!r} returned None for all {len(values)} completions of this "
                          "batch: they get no reward and no gradient; check its answer column", stacklevel=2)
        table[:, j] = torch.tensor([math.nan if v is None else v for v in values])
    return table


def total_reward(columns: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum over reward functions (a None counts 0), NaN where every function returned None."""
    total = (columns * weights).nansum(dim=1)
    return torch.where(columns.isnan().all(dim=1), math.nan, total)


def reward_metrics(rewards: torch.Tensor, columns: torch.Tensor, names: list[str], group_size: int) -> dict:
    """TRL's reward metrics of a batch (every process's rows): NaN rewards left out.

    ``reward`` and ``reward_std``: mean and (sample) std of the summed reward;
    ``frac_reward_zero_std``: the share of groups whose rewards are all equal;
    ``rewards/<name>/mean`` and ``/std`` per reward function.
    """
    group_std = nanstd(rewards.view(-1, group_size), dim=1)
    metrics = {"reward": float(rewards.nanmean()), "reward_std": float(nanstd(rewards)),
               "frac_reward_zero_std": float(torch.isclose(group_std, torch.zeros(())).float().mean())}
    for j, name in enumerate(names):
        metrics[f"rewards/{name}/mean"] = float(columns[:, j].nanmean())
        metrics[f"rewards/{name}/std"] = float(nanstd(columns[:, j]))
    return metrics


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sample standard deviation over the non-NaN values (NaN for fewer than two), as TRL's ``nanstd``.

    >>> float(nanstd(torch.tensor([1.0, float("nan"), 3.0])))
    1.4142135381698608
    """
    mean = x.nanmean(dim=dim, keepdim=True) if dim is not None else x.nanmean()
    count = (~x.isnan()).sum(dim=dim) if dim is not None else (~x.isnan()).sum()
    squares = ((x - mean) ** 2).nansum(dim=dim) if dim is not None else ((x - mean) ** 2).nansum()
    return torch.where(count > 1, (squares / (count - 1).clamp(min=1)).sqrt(), math.nan)


def known(rewards: torch.Tensor) -> list[float]:
    """The rewards that are not NaN (a reward function's None), as floats: what the curriculum learns from."""
    return [float(r) for r in rewards if not torch.isnan(r)]


class Rewards:
    """A run's reward functions and weights, called on (problem, completion) pairs as TRL calls them.

    ``prompt_of(problem)`` is what the policy was sent for the problem (a string or chat messages).
    """

    def __init__(self, functions: list, weights: list[float], prompt_of):
        from acpo.rewards import reward_name

        self.functions, self.names = functions, [reward_name(fn) for fn in functions]
        self.weights = torch.tensor(weights or [1.0] * len(functions))
        self.prompt_of = prompt_of
        self.warned: set[str] = set()  # functions already warned about for returning only None

    def table(self, problems: list[Problem], texts: list[str], completion_ids=None, first_only=False) -> torch.Tensor:
        """(completions, functions) rewards (only the first function's with ``first_only``); None -> NaN."""
        n = 1 if first_only else len(self.functions)
        return reward_table(self.functions[:n], self.names[:n], problems, [self.prompt_of(p) for p in problems],
                            texts, completion_ids, self.warned)

    def total(self, problems: list[Problem], texts: list[str], completion_ids=None) -> torch.Tensor:
        return total_reward(self.table(problems, texts, completion_ids), self.weights)

    def correct(self, problems: list[Problem], texts: list[str]) -> float:
        """How many completions the first function scores as right (its sum; None counts 0): pass@1's count."""
        return float(self.table(problems, texts, first_only=True).nansum())


def batch_metrics(samples: list, rewards: torch.Tensor, columns: torch.Tensor, names: list[str], group_size: int,
                  stop_ids: set[int], gather=lambda *t: t) -> dict[str, float]:
    """TRL's reward and completion metrics of a batch; ``gather`` joins every process's rows.

    ``completions/clipped_ratio``: the share that hit the length limit, their last token no end of sequence.
    """
    lengths = torch.tensor([len(s.completion_ids) for s in samples], dtype=torch.float32)
    clipped = torch.tensor([bool(s.completion_ids) and s.completion_ids[-1] not in stop_ids for s in samples],
                           dtype=torch.float32)
    rewards, columns, lengths, clipped = gather(rewards, columns, lengths, clipped)
    return {**reward_metrics(rewards, columns, names, group_size),
            "completions/mean_length": float(lengths.mean()), "completions/min_length": float(lengths.min()),
            "completions/max_length": float(lengths.max()), "completions/clipped_ratio": float(clipped.mean())}
