"""``recurrence``: run a small recurrence ``x -> k*x+c`` a given number of times.

Problem ``x=3; 3 times x=2*x-1; x=?``; reference steps ``2*3-1=5``,
``2*5-1=9``, ``2*9-1=17``; answer ``17``.

Step rule. Step ``i`` must apply the rule to the value after step ``i-1``
(the start value for the first step), written ``k*v+c=r`` or ``k*v-c=r``,
with the right ``k``, ``v``, ``c`` and result. A copied wrong value, a skipped
iteration (its ``v`` is not the current value) or a step beyond the stated
number of iterations is flagged.
"""

from __future__ import annotations

import random
import re

from acpo.tasks.base import Problem, TaskFamily

# level -> (iterations, multipliers, largest start value)
LEVELS: dict[int, tuple[int, tuple[int, ...], int]] = {
    1: (2, (2, 3), 49),
    2: (3, (2, 3, 4), 49),
    3: (4, (2, 3, 4), 49),
}
_CONSTANTS = (-1, *range(1, 16))  # >= -1 keeps every value positive
_PROMPT_RE = re.compile(r"^Q:\s*x=(\d+);\s*(\d+) times x=(\d+)\*x([-+]\d+);\s*x=\?$")
_STEP_RE = re.compile(r"^(\d+)\*(-?\d+)([-+]\d+)=(-?\d+)$")

State = tuple[int, int, int, int]  # (k, c, iterations left, current value)


class Recurrence(TaskFamily):
    """Iterated affine maps; level = iterations and size of the numbers."""

    name = "recurrence"
    levels = tuple(LEVELS)

    def _make_one(self, rng: random.Random, level: int) -> tuple[str, list[str], int]:
        times, multipliers, hi = LEVELS[level]
        k, c, value = rng.choice(multipliers), rng.choice(_CONSTANTS), rng.randint(1, hi)
        text = f"x={value}; {times} times x={k}*x{c:+d}; x=?"
        steps = []
        for _ in range(times):
            new = k * value + c
            steps.append(f"{k}*{value}{c:+d}={new}")
            value = new
        return text, steps, value

    def _initial_state(self, problem: Problem) -> State:
        match = _PROMPT_RE.match(problem.prompt.strip())
        if not match:
            raise ValueError(
                f"not a recurrence prompt: {problem.prompt!r}; expected 'Q: x=<v>; <n> times x=<k>*x<+c>; x=?'"
            )
        start, times, k, c = (int(g) for g in match.groups())
        return k, c, times, start

    def _advance(self, state: State, step: str) -> State | None:
        k, c, left, value = state
        match = _STEP_RE.match(step)
        if not match or left == 0:
            return None
        if (int(match[1]), int(match[2]), int(match[3]), int(match[4])) != (k, value, c, k * value + c):
            return None
        return k, c, left - 1, k * value + c
