"""Grading one row (acpo.verdict): checker choice, reward, located/localisable, hit or miss, on hand-made cases.

The tie rule of ``blamed_step`` and its agreement with ``acpo.fidelity.top1`` are in test_fidelity.py.
"""

import math

import pytest

from acpo.verdict import (AUTO_CHECKER, FREEFORM_CHECKER, NO_CHECKER, blamed_step, check_row, hit, hit_mark,
                          hit_or_miss, known_reward, localisable, located, row_reward)

PROMPT = "Q: 7-3*4+2=?\n"
WRONG = "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"  # the second line is the first wrong one
RIGHT = "3*4=12\n7-12=-5\n-5+2=-3\n#### -3"


def test_which_checker_reads_a_row():
    assert check_row(NO_CHECKER, PROMPT, "-3", WRONG) == (None, None)
    arith, why = check_row("arith", PROMPT, "-3", WRONG)
    assert why is None and arith.first_error == 1 and not arith.answer_correct
    free, _ = check_row(FREEFORM_CHECKER, PROMPT, "-3", WRONG)
    assert free.first_error == 1  # the free-form checker finds the same false line
    auto_task, _ = check_row(AUTO_CHECKER, PROMPT, "-3", WRONG, family="arith")
    auto_free, _ = check_row(AUTO_CHECKER, PROMPT, "-3", WRONG, family="gsm8k")  # no such task: free-form
    assert type(auto_task) is type(arith) and type(auto_free) is type(free)
    none, why = check_row(FREEFORM_CHECKER, PROMPT, None, WRONG)
    assert none is None and "needs the reference answer" in why
    none, why = check_row("linear", PROMPT, "-3", WRONG)  # an arithmetic prompt is not a linear equation
    assert none is None and "linear checker cannot read this problem" in why
    with pytest.raises(ValueError, match="unknown checker 'oracle'; valid: none, free-form"):
        check_row("oracle", PROMPT, "-3", WRONG)


def test_the_reward_of_a_row_given_else_checker_else_answer_match_else_unknown():
    check, _ = check_row("arith", PROMPT, "-3", WRONG)
    assert row_reward(0.25, check, WRONG, "-3") == 0.25  # the given reward wins
    assert row_reward(None, check, WRONG, "-3") == 0.0  # the checker's verdict on the answer
    assert row_reward(float("nan"), None, RIGHT, "-3") == 1.0  # NaN is no reward: the answer match
    assert row_reward(None, None, RIGHT, "7") == 0.0
    assert row_reward(None, None, RIGHT, None) is None
    assert not known_reward(math.inf) and not known_reward("x") and known_reward("1")


def test_located_and_localisable():
    wrong, _ = check_row("arith", PROMPT, "-3", WRONG)
    right, _ = check_row("arith", PROMPT, "-3", RIGHT)
    no_answer_line, _ = check_row("arith", PROMPT, "-3", "3*4=12\n7-12=-5\n")
    assert located(wrong) and localisable(wrong)
    assert not located(right) and not localisable(right)
    assert not located(no_answer_line) and no_answer_line.first_error is not None  # only the answer line is missing
    assert not located(None) and not localisable(None)


def test_hit_or_miss_by_hand():
    assert hit(1, 1) is True and hit(0, 1) is False and hit(None, 1) is False and hit(1, None) is None
    assert [hit_mark(1, 1), hit_mark(0, 1), hit_mark(None, 1), hit_mark(1, None)] == ["✓", "✗", "–", ""]
    assert hit_or_miss(1, 1, "m").startswith("✓") and hit_or_miss(2, 1, "m").startswith("✗ credit missed")
    assert hit_or_miss(None, 1, "uniform").startswith("– uniform gives its lowest credit to more than one step")
    assert hit_or_miss(1, None, "m") is None
    # the per-row mark and the blamed step agree, ties included
    assert hit_mark(blamed_step([0, 1, 2], [0.1, -2.0, -2.0]), 1) == "–"
