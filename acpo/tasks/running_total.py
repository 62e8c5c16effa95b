"""``running_total``: a long chain of ``+`` and ``-`` of one-digit operands, one step per operation.

Problem ``47+8-5+9-7+3-6+2=?``; reference steps ``47+8=55``, ``55-5=50``, ...; answer the last total.
Every total stays in ``TOTAL_RANGE`` (two digits), so every step is a two-digit number plus or minus a
one-digit number, and the k-th operand and the k-th step sit at the same character offsets in every
problem. With 8-12 operations a completion is 8-12 steps long: the family the testbed policy
(:mod:`acpo.testbed`) is trained on, where one step type (a subtraction that needs a borrow) carries
almost every error.

The step rule is :class:`acpo.tasks.arith.Arith`'s (a chain of ``+``/``-`` reduces left to right), so a
step is right when it is the next operation of the chain with its right value: one checker for both families.
"""

from __future__ import annotations

import random

from acpo.tasks.arith import Arith

TOTAL_RANGE = (20, 79)
"""Totals of the reference solution: two digits, with room for a slip of +10 or +20 to stay two digits."""

LEVELS: dict[int, tuple[int, int]] = {1: (8, 12)}
"""level -> (fewest, most) operations."""


def needs_borrow(total: int, op: str, operand: int) -> bool:
    """A subtraction whose ones digit underflows (``43-7``: 3 < 7), so the tens digit must go down by one.

    >>> needs_borrow(43, "-", 7), needs_borrow(47, "-", 3), needs_borrow(43, "+", 7)
    (True, False, False)
    """
    return op == "-" and total % 10 < operand


class RunningTotal(Arith):
    """Chains of 8-12 ``+``/``-`` operations on one-digit operands, totals kept in ``TOTAL_RANGE``."""

    name = "running_total"
    level_specs = LEVELS
    levels = tuple(LEVELS)

    def _make_one(self, rng: random.Random, level: int) -> tuple[str, list[str], int]:
        fewest, most = self.level_specs[level]
        lo, hi = TOTAL_RANGE
        total = rng.randint(lo, hi)
        text, steps = str(total), []
        for _ in range(rng.randint(fewest, most)):
            # every (op, operand) that keeps the total in range, drawn uniformly: about half are
            # subtractions and about half of those need a borrow
            moves = [(op, b) for op in "+-" for b in range(1, 10) if lo <= (total + b if op == "+" else total - b) <= hi]
            op, b = rng.choice(moves)
            new = total + b if op == "+" else total - b
            steps.append(f"{total}{op}{b}={new}")
            text += f"{op}{b}"
            total = new
        return f"{text}=?", steps, total
