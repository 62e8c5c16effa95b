"""``linear``: solve a linear equation in ``x`` one transformation per line.

Problem ``3*x+4=19, x=?``; reference steps ``3*x=15``, ``x=5``; answer ``5``.
Higher levels put ``x`` on both sides (``5*x+3=2*x+12``) and add brackets to
expand (``3*(x+2)=x+14``).

Step rule. Every step line must be a linear equation in ``x`` (integers,
``x``, ``+ - *`` and brackets) with exactly one solution, and that solution
must be the problem's. Any equivalent equation is accepted, so a skipped step
that is still right (``x=5`` straight away) or a rescaled one (``6*x=30``)
passes; a wrong transformation changes the solution and is flagged.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from acpo.tasks.base import Problem, TaskFamily

# level -> form of the equation:  1: a*x+b=c   2: a*x+b=c*x+d   3: a*(x+b)=c*x+d
LEVELS: dict[int, str] = {1: "ax+b=c", 2: "ax+b=cx+d", 3: "a(x+b)=cx+d"}

Linear = tuple[Fraction, Fraction]  # (coefficient of x, constant)


class _Parser:
    """Recursive-descent parser for linear expressions: value = (coef, const)."""

    def __init__(self, text: str) -> None:
        self.tokens = re.findall(r"\d+|[-+*()x]|\S", text)
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("unexpected end")
        self.pos += 1
        return token

    def parse(self) -> Linear:
        value = self._expr()
        if self._peek() is not None:
            raise ValueError(f"unexpected {self._peek()!r}")
        return value

    def _expr(self) -> Linear:
        coef, const = self._term()
        while self._peek() in ("+", "-"):
            sign = 1 if self._take() == "+" else -1
            c, k = self._term()
            coef, const = coef + sign * c, const + sign * k
        return coef, const

    def _term(self) -> Linear:
        coef, const = self._factor()
        while self._peek() == "*":
            self._take()
            c, k = self._factor()
            if coef != 0 and c != 0:
                raise ValueError("not linear")
            coef, const = coef * k + c * const, const * k
        return coef, const

    def _factor(self) -> Linear:
        token = self._take()
        if token == "-":
            c, k = self._factor()
            return -c, -k
        if token == "x":
            return Fraction(1), Fraction(0)
        if token == "(":
            value = self._expr()
            if self._take() != ")":
                raise ValueError("missing ')'")
            return value
        if token.isdigit():
            return Fraction(0), Fraction(int(token))
        raise ValueError(f"unexpected {token!r}")


def solve(equation: str) -> Fraction | None:
    """The unique solution of a linear equation ``lhs=rhs``, or None.

    None when the text does not parse, is not linear, or has no unique
    solution (``0*x=0``, ``0*x=1``).

    >>> solve("3*(x+2)=x+14")
    Fraction(4, 1)
    """
    sides = equation.split("=")
    if len(sides) != 2:
        return None
    try:
        (a, b), (c, d) = (_Parser(s).parse() for s in sides)
    except ValueError:
        return None
    if a == c:
        return None
    return (d - b) / (a - c)


def _lin(coef: int, const: int) -> str:
    """Format ``coef*x+const`` the way the reference steps write it."""
    x = "" if coef == 0 else "x" if coef == 1 else f"{coef}*x"
    if not x:
        return str(const)
    return x if const == 0 else f"{x}{const:+d}"


class LinearEq(TaskFamily):
    """Linear equations; level = how many transformations are needed."""

    name = "linear"
    levels = tuple(LEVELS)

    def _make_one(self, rng: random.Random, level: int) -> tuple[str, list[str], int]:
        x = rng.randint(-9, 9)
        if level == 1:
            k, const = rng.randint(2, 9), rng.choice([i for i in range(-12, 13) if i != 0])
            text, steps = f"{_lin(k, const)}={k * x + const}", []
        else:
            a = rng.randint(3, 9)
            c = rng.randint(1, a - 1)
            k = a - c
            if level == 2:  # a*x+b = c*x+d
                const = rng.choice([i for i in range(-12, 13) if i != 0])
                text, steps = f"{_lin(a, const)}={_lin(c, k * x + const)}", []
            else:  # a*(x+b) = c*x+d: expand first
                b = rng.randint(1, 6)
                const = a * b
                text = f"{a}*(x+{b})={_lin(c, k * x + const)}"
                steps = [f"{_lin(a, const)}={_lin(c, k * x + const)}"]
            steps.append(f"{_lin(k, const)}={k * x + const}")  # collect x on the left
        steps.append(f"{_lin(k, 0)}={k * x}")  # move the constant right
        if k != 1:
            steps.append(f"x={x}")  # divide
        return f"{text}, x=?", steps, x

    def _initial_state(self, problem: Problem) -> Fraction:
        equation = problem.prompt.strip().removeprefix("Q:").split(",")[0].strip()
        solution = solve(equation)
        if solution is None:
            raise ValueError(f"not a linear prompt: {problem.prompt!r}; expected 'Q: <equation>, x=?'")
        return solution

    def _advance(self, state: Fraction, step: str) -> Fraction | None:
        return state if solve(step) == state else None
