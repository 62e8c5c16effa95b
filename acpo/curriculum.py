"""Difficulty-aware problem sampling (METHODS.md §7).

Each problem keeps a running pass rate (prior 0.5). With the curriculum on,
problems are drawn with weight ``p (1 - p) + eps``: the ones the policy solves
about half the time carry the most learning signal. Synthetic families start
at the levels of the training mix and unlock their next level when their
recent pass rate passes a threshold.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from typing import Sequence

from acpo.tasks import Problem

PRIOR = 0.5
WINDOW = 64  # rollouts per family that make its "recent" pass rate


class Curriculum:
    def __init__(
        self,
        pool: Sequence[Problem],
        start_levels: dict[str, set[int]],
        enabled: bool = True,
        eps: float = 0.05,
        unlock_threshold: float = 0.8,
        seed: int = 0,
    ):
        if not pool:
            raise ValueError("the training pool is empty: no problems to sample")
        self.pool = list(pool)
        self.enabled, self.eps, self.unlock_threshold = enabled, eps, unlock_threshold
        self.levels = {f: set(v) for f, v in start_levels.items()}
        self.all_levels: dict[str, list[int]] = defaultdict(list)
        for p in self.pool:
            if p.level not in self.all_levels[p.family]:
                self.all_levels[p.family].append(p.level)
        for levels in self.all_levels.values():
            levels.sort()
        self.hits: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.rng = random.Random(seed)

    def pass_rate(self, problem: Problem) -> float:
        n = self.counts.get(problem.id, 0)
        return (self.hits.get(problem.id, 0.0) + PRIOR) / (n + 1)

    def active(self) -> list[Problem]:
        return [p for p in self.pool if p.level in self.levels.get(p.family, ())]

    def sample(self, n: int) -> list[Problem]:
        """``n`` distinct problems (with replacement if the active pool is smaller)."""
        active = self.active()
        if not self.enabled:
            return self.rng.sample(active, n) if n <= len(active) else self.rng.choices(active, k=n)
        weights = [self.pass_rate(p) * (1 - self.pass_rate(p)) + self.eps for p in active]
        chosen: list[Problem] = []
        taken: set[int] = set()
        while len(chosen) < n:
            i = self.rng.choices(range(len(active)), weights=weights)[0]
            if i in taken and len(taken) < len(active):
                continue
            taken.add(i)
            chosen.append(active[i])
        return chosen

    def update(self, problem: Problem, rewards: Sequence[float]) -> None:
        """Record a group's rewards; unlock the family's next level when it is mastered."""
        self.hits[problem.id] = self.hits.get(problem.id, 0.0) + sum(rewards)
        self.counts[problem.id] = self.counts.get(problem.id, 0) + len(rewards)
        recent = self.recent[problem.family]
        recent.extend(rewards)
        if not self.enabled or len(recent) < WINDOW:
            return
        if sum(recent) / len(recent) >= self.unlock_threshold:
            higher = [lv for lv in self.all_levels[problem.family] if lv > max(self.levels[problem.family])]
            if higher:
                self.levels[problem.family].add(higher[0])
                recent.clear()

    def state_dict(self) -> dict:
        return {
            "hits": dict(self.hits),
            "counts": dict(self.counts),
            "levels": {f: sorted(v) for f, v in self.levels.items()},
            "recent": {f: list(v) for f, v in self.recent.items()},
            "rng": self.rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.hits, self.counts = dict(state["hits"]), dict(state["counts"])
        self.levels = {f: set(v) for f, v in state["levels"].items()}
        self.recent = defaultdict(lambda: deque(maxlen=WINDOW))
        for f, v in state["recent"].items():
            self.recent[f].extend(v)
        self.rng.setstate(state["rng"])


def redraw_equal_groups(problems: list, samples: list, columns, weights, curriculum: "Curriculum", draw,
                        rounds: int, group_size: int):
    """DAPO's dynamic sampling: up to ``rounds`` times, replace the groups whose rewards are all equal (no
    learning signal) by fresh problems from the curriculum, in place.

    ``draw(problems) -> (samples, reward columns)`` samples G completions of each; ``columns`` and ``weights``
    as ``acpo.reward_table.total_reward`` takes them. An equal-reward group still teaches the curriculum its
    pass rate before it goes.
    """
    from acpo.reward_table import known, nanstd, total_reward

    g = group_size
    for _ in range(rounds):
        rewards = total_reward(columns, weights)
        flat = [i for i in range(len(problems)) if nanstd(rewards[i * g : (i + 1) * g]) == 0]
        if not flat:
            return
        for i in flat:
            curriculum.update(problems[i], known(rewards[i * g : (i + 1) * g]))
        fresh = curriculum.sample(len(flat))
        new, new_columns = draw(fresh)
        for j, i in enumerate(flat):
            problems[i] = fresh[j]
            samples[i * g : (i + 1) * g] = new[j * g : (j + 1) * g]
            columns[i * g : (i + 1) * g] = new_columns[j * g : (j + 1) * g]
