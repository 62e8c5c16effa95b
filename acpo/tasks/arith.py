"""``arith``: integer arithmetic chains with operator precedence.

Problem ``7-3*4+2=?``; reference steps ``3*4=12``, ``7-12=-5``, ``-5+2=-3``;
answer ``-3``. Each step performs exactly one binary operation, written
``A<op>B=R``.

Step rule (what makes a step right). The state is the current expression. A
step is right when ``A<op>B`` is a *valid next reduction* of that expression
and ``R`` is its value:

* any multiplication of two adjacent numbers is valid (multiplication binds
  tightest and is associative, so the order among them does not matter);
* an addition or subtraction is valid only as the leftmost operation, and only
  when the operation after it is not a multiplication (left-to-right
  evaluation of ``+``/``-``).

So reordered multiplications are *accepted*, while a skipped step (a line
whose left operand is a value the expression does not contain yet, or a line
that does two operations at once) is *flagged*. The reference solution always
takes the leftmost valid reduction (``5-9-9*4``: ``5-9``, ``9*4``, ``-4-36``).
"""

from __future__ import annotations

import random
import re

from acpo.tasks.base import Problem, TaskFamily

# level -> (number of operations, largest operand)
LEVELS: dict[int, tuple[int, int]] = {1: (2, 9), 2: (3, 9), 3: (4, 12), 4: (5, 20)}

_STEP_RE = re.compile(r"^\s*(-?\d+)\s*([-+*])\s*(\d+)\s*=\s*(-?\d+)\s*$")  # spaces: how chat models write it
_PROMPT_RE = re.compile(r"^Q:\s*(.*?)=\?\s*$")
_QUESTION_RE = re.compile(r"What is\s+(\d[\d\s+*-]*\d)\s*\?")  # the chat form of ``Arith.question``

State = tuple[tuple[int, ...], tuple[str, ...]]


def _apply(a: int, op: str, b: int) -> int:
    return a * b if op == "*" else a + b if op == "+" else a - b


def _valid_reductions(ops: tuple[str, ...]) -> list[int]:
    """Operator indices that may be reduced next (module docstring)."""
    valid = [i for i, op in enumerate(ops) if op == "*"]
    if ops and ops[0] in "+-" and (len(ops) == 1 or ops[1] != "*"):
        valid.append(0)
    return valid


def _reduce(state: State, i: int) -> State:
    nums, ops = state
    value = _apply(nums[i], ops[i], nums[i + 1])
    return nums[:i] + (value,) + nums[i + 2 :], ops[:i] + ops[i + 1 :]


class Arith(TaskFamily):
    """Arithmetic chains; level = number of operations and operand range."""

    name = "arith"
    level_specs = LEVELS
    levels = tuple(LEVELS)

    def _make_one(self, rng: random.Random, level: int) -> tuple[str, list[str], int]:
        n_ops, hi = self.level_specs[level]
        nums = tuple(rng.randint(1, hi) for _ in range(n_ops + 1))
        ops = tuple(rng.choice("+-*") for _ in range(n_ops))
        text = "".join(f"{n}{o}" for n, o in zip(nums, ops)) + f"{nums[-1]}"
        state: State = (nums, ops)
        steps = []
        while state[1]:
            i = min(_valid_reductions(state[1]))  # the leftmost valid reduction
            a, op, b = state[0][i], state[1][i], state[0][i + 1]
            state = _reduce(state, i)
            steps.append(f"{a}{op}{b}={state[0][i]}")
        return f"{text}=?", steps, state[0][0]

    def question(self, problem_text: str) -> str:
        """``7-3*4=?`` -> ``What is 7 - 3 * 4?``: small chat models read spaced, worded questions better."""
        expression = problem_text.removesuffix("=?")
        return "What is " + re.sub(r"(?<=\d)([-+*])", r" \1 ", expression) + "?"

    def _initial_state(self, problem: Problem) -> State:
        """The expression of ``Q: 7-3*4=?``, or of the question a chat model is asked (``What is 7 - 3 * 4?``,
        the last one in the prompt), so a trace keeps its step-level label when its prompt is the chat one."""
        text = problem.prompt if isinstance(problem.prompt, str) else " ".join(
            m["content"] for m in problem.prompt if m.get("role") == "user")
        match = _PROMPT_RE.match(text.strip()) or (_QUESTION_RE.findall(text) or [None])[-1]
        if not match:
            raise ValueError(f"not an arith prompt: {problem.prompt!r}; expected 'Q: <expression>=?' or "
                             "'What is <expression>?'")
        tokens = re.findall(r"\d+|[-+*]", match if isinstance(match, str) else match.group(1))
        return tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2])

    def _advance(self, state: State, step: str) -> State | None:
        match = _STEP_RE.match(step)
        if not match:
            return None
        a, op, b, result = int(match[1]), match[2], int(match[3]), int(match[4])
        nums, ops = state
        for i in _valid_reductions(ops):
            if (nums[i], ops[i], nums[i + 1]) == (a, op, b):
                return _reduce(state, i) if _apply(a, op, b) == result else None
        return None


class OneOp(Arith):
    """``arith1``: one operation on operands 1-20 (``13+7=?`` -> ``13+7=20``, ``#### 20``).

    Within reach of a small real instruct model: SmolLM2-135M-Instruct answers
    about 10% of it right greedily, where it gets under 5% of two-operation
    chains (docs/BENCHMARKS.md, "Real model"), so GRPO groups hold right and
    wrong answers to learn from.
    """

    name = "arith1"
    level_specs = {1: (1, 20)}
    levels = (1,)

