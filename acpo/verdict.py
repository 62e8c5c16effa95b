"""Grading one completion: which checker reads it, its reward, the step a credit blames, and hit or miss.

The one home of these rules: the app (Explore, Compare, Runs, Batch), the credit-fidelity
benchmark and ``acpo.fidelity``'s top-1 all call them, so a per-row ✓ and a table's top-1
can never disagree.

- **Checker** (``check_row``): none, the free-form one (the arithmetic of any text, against a
  reference answer), a synthetic task's, or ``auto`` (the row's family when it names a task,
  else free-form when the row has a reference answer: ``acpo.tasks.checker_for``).
- **Reward** (``row_reward``): the reward given with the row (a finite number); else the checker's
  verdict on the final answer; else whether the final answer matches the reference; else unknown
  (None). ``acpo.rewards.row_reward`` applies it and says which source gave the reward.
- **Blamed step** (``blamed_step``): the step with the lowest credit, when exactly one step has
  it. When two or more steps share the lowest credit the credit blames no step (None): it
  cannot tell them apart, so it finds nothing, and counts as a miss in top-1 (as a constant
  credit such as ``uniform`` must).
- **Located / localisable**: the checker located a wrong line with a character span; a trace is
  *localisable* (labelled) when it also failed and shows working (``unlabelled_reason`` says why
  another is not).
- **Hit**: the blamed step is the step holding the checker's first wrong line.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from acpo.rewards import row_reward as reward_with_source
from acpo.tasks import FREEFORM, TASKS, check_as, checker_for
from acpo.tasks import first_error_step  # noqa: F401  (the checker's first wrong line -> a segmented step)

NO_CHECKER = "none"
FREEFORM_CHECKER = "free-form computations"
AUTO_CHECKER = "auto (family column, else free-form)"
CHECKERS = [NO_CHECKER, FREEFORM_CHECKER, *TASKS]
"""The step checkers a user can pick: none, the free-form one (any prompt with a reference answer), a task's."""


def checker_name(choice: str | None) -> str | None:
    """The ``acpo.tasks.check_as`` name of a checker menu entry (None: no checker); ValueError for an unknown one."""
    if not choice or choice == NO_CHECKER:
        return None
    if choice == FREEFORM_CHECKER:
        return FREEFORM
    if choice not in TASKS:
        raise ValueError(f"unknown checker {choice!r}; valid: {', '.join([*CHECKERS, AUTO_CHECKER])}")
    return choice


def check_row(checker: str | None, prompt: str, answer: str | None, completion: str,
              family: str | None = None):
    """(the checker's verdict, or None; why there is none, or None).

    ``checker`` is one of ``CHECKERS`` or ``AUTO_CHECKER`` (then ``family``, the row's task family, picks
    the task's checker when it names one, else the free-form one: ``acpo.tasks.checker_for``). ValueError
    for an unknown checker.
    """
    if checker == AUTO_CHECKER:
        name = checker_for(family, answer)
        if name is None:
            return None, "no task family and no reference answer: no checker applies; no ground truth shown"
    else:
        name = checker_name(checker)
        if name is None:
            return None, None
    try:
        return check_as(name, prompt, answer, completion), None
    except ValueError as err:  # the free-form checker without an answer, or a prompt not this family's
        if name == FREEFORM:  # it says why itself: "the free-form checker needs the reference answer"
            return None, f"{err}; no ground truth shown"
        return None, f"the {name} checker cannot read this problem ({err}); no ground truth shown"


def known_reward(value) -> bool:
    """Whether a given reward is a number (None, NaN and infinities are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def reward_and_source(given, check, completion: str, answer: str | None) -> tuple[float | None, str]:
    """(the reward of a row, where it came from: ``given``, ``checker``, ``answer match`` or ``unknown``); see the
    module docstring for the order (``acpo.rewards.row_reward`` applies it)."""
    return reward_with_source(completion, answer or None, check, float(given) if known_reward(given) else None)


def row_reward(given, check, completion: str, answer: str | None) -> float | None:
    """The reward of a row (``reward_and_source`` without its source).

    >>> row_reward(None, None, "so 3 + 4 = 7\\n#### 7", "7"), row_reward(0.5, None, "#### 7", "7")
    (1.0, 0.5)
    """
    return reward_and_source(given, check, completion, answer)[0]


def blamed_step(steps: Sequence[int], credits: Sequence[float]) -> int | None:
    """The step a credit blames: the one with the lowest credit; None when several share it (or none is given).

    >>> blamed_step([0, 1, 2], [0.5, -1.0, 0.2]), blamed_step([0, 1, 2], [0.5, -1.0, -1.0])
    (1, None)
    """
    values = [float(c) for c in credits]
    if not values:
        return None
    low = min(values)
    at = [k for k, v in enumerate(values) if v == low]
    return int(steps[at[0]]) if len(at) == 1 else None


def located(check) -> bool:
    """The checker located a wrong line that has a character span (not only a missing answer line)."""
    return check is not None and check.first_error is not None and check.first_error < len(check.step_char_spans)


def unlabelled_reason(check) -> str | None:
    """Why a checked completion gives no labelled trace (None: it does), so skipped traces are counted by
    cause: not checked (no checker, or no answer to check against), the answer is right, no working shown, no
    line the free-form checker can read, no false line although the answer is wrong (the error is not in the
    arithmetic), or only the answer line is missing."""
    if check is None:
        return "not checked"
    if check.answer_correct:
        return "answer right"
    if not check.shows_working:
        return "no working"
    if not getattr(check, "checkable", True):
        return "no checkable line"
    if check.first_error is None:
        return "no false line"
    if not located(check):
        return "no answer line"
    return None


def localisable(check) -> bool:
    """A failed completion that shows working and whose first wrong line has a character span."""
    return unlabelled_reason(check) is None


def unlabelled_counts(checks) -> dict[str, int]:
    """How many of ``checks`` each ``unlabelled_reason`` skipped, most common first."""
    counts = Counter(r for r in map(unlabelled_reason, checks) if r is not None)
    return dict(counts.most_common())


def hit(blamed: int | None, error_step: int | None) -> bool | None:
    """Whether the credit blamed the first wrong step; None when there is no wrong step to find."""
    return None if error_step is None else blamed == error_step


def hit_mark(blamed: int | None, error_step: int | None) -> str:
    """One-character verdict for tables: ✓ hit, ✗ miss, – no blame, empty when there is no error step."""
    if error_step is None:
        return ""
    if blamed is None:
        return "–"
    return "✓" if hit(blamed, error_step) else "✗"


def hit_or_miss(blamed: int | None, error_step: int | None, method: str, what: str = "first wrong step") -> str | None:
    """The plain verdict on one completion: did the credit blame the labelled step? ``what`` says what the label
    is (``acpo.tasks.error_kind``: a task's "first wrong step", the free-form checker's "first false equation").
    None when there is no labelled step (nothing to find)."""
    if error_step is None:
        return None
    if blamed is None:
        return (f"– {method} gives its lowest credit to more than one step, so it blames no step; "
                f"the {what} is step {error_step}")
    if hit(blamed, error_step):
        return f"✓ credit found the {what} (step {error_step})"
    return f"✗ credit missed: it blamed step {blamed}; the {what} is step {error_step}"
