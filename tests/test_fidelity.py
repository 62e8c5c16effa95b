"""Credit-fidelity metrics (``acpo.fidelity``) on hand-computed cases."""

import numpy as np
import pytest

from acpo.fidelity import auroc, fidelity_table, matched_auroc, top1
from acpo.verdict import blamed_step, localisable
from acpo.tasks import Problem, get_task

SCORES = [np.array([0.5, -1.0, 0.2]), np.array([-0.3, 0.1]), np.array([0.0, 0.0, -2.0, 1.0])]
LABELS = [1, 1, 2]  # hits: trace 0 (argmin 1) and trace 2 (argmin 2); trace 1's argmin is 0


def test_top1_counts_the_lowest_scored_step():
    assert top1(SCORES, LABELS) == pytest.approx(2 / 3)


def test_a_tie_for_the_lowest_credit_blames_no_step_and_is_a_miss():
    """One tie rule for the app's per-row verdict and the table's top-1: a credit that gives its lowest value to
    two steps cannot tell them apart, so it blames neither (not the first of them)."""
    assert blamed_step([0, 1, 2], [0.3, -1.0, 0.2]) == 1
    assert blamed_step([0, 1, 2], [-1.0, -1.0, 0.2]) is None  # tied lowest: no blame, even though step 0 is first
    assert blamed_step([0, 1, 2], [0.0, 0.0, 0.0]) is None  # a constant credit (uniform) blames nothing
    assert blamed_step([4, 5], [0.1, -0.1]) == 5  # the step's own index, not its position
    assert blamed_step([], []) is None
    tied = [np.array([-1.0, -1.0, 0.5]), np.array([0.0, 0.0]), np.array([2.0, -3.0])]
    assert top1(tied, [0, 0, 1]) == pytest.approx(1 / 3)  # only the last trace has a unique lowest step, a hit


def test_auroc_pools_the_error_step_against_the_steps_before_it():
    # positives (-score at the label): 1.0, -0.1, 2.0; negatives (steps before): -0.5 | 0.3 | 0.0, 0.0
    # pairs won: 1.0 beats all 4; -0.1 beats -0.5 only; 2.0 beats all 4 -> 9 of 12
    assert auroc(SCORES, LABELS) == pytest.approx(9 / 12)
    assert np.isnan(auroc([np.array([1.0])], [0]))  # no negatives


def test_the_table_has_chance_and_intervals_that_hold_the_estimate():
    table = fidelity_table({"m": SCORES}, LABELS, reps=200)
    row = table.iloc[0]
    assert row["chance_top1"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3)
    assert row["top1_lo"] <= row["top1"] <= row["top1_hi"] and row["traces"] == 3
    assert table.equals(fidelity_table({"m": SCORES}, LABELS, reps=200))  # seeded: the same every time


def test_localisable_needs_a_failed_worked_completion_with_a_located_error():
    task = get_task("arith")
    p = Problem("x", "arith", 1, "Q: 7-3*4+2=?\n", "-3")
    assert localisable(task.check(p, "3*4=12\n7-12=-4\n-4+2=-2\n#### -2"))
    assert not localisable(task.check(p, "3*4=12\n7-12=-5\n-5+2=-3\n#### -3"))  # right
    assert not localisable(task.check(p, "#### 5"))  # no working
    assert not localisable(task.check(p, "3*4=12\n7-12=-5\n"))  # the missing answer line has no span


def test_traces_left_unlabelled_are_counted_by_cause():
    from acpo.verdict import unlabelled_counts, unlabelled_reason
    from acpo.tasks import check_freeform

    arith = get_task("arith").generate(1, level=2, seed=0)[0]  # two steps or more, then the answer line
    checks = {
        "not checked": None,
        "answer right": check_freeform("3 + 4 = 7\n#### 7", "7"),
        "no working": check_freeform("#### 5", "7"),
        "no checkable line": check_freeform("She adds them.\n#### 5", "7"),
        "no false line": check_freeform("3 + 4 = 7\n#### 7", "8"),
        "no answer line": get_task("arith").check(arith, arith.solution.rpartition("\n")[0]),
        None: check_freeform("3 + 4 = 8\n#### 8", "7"),
    }
    assert {why: unlabelled_reason(c) for why, c in checks.items()} == {why: why for why in checks}
    assert [localisable(c) for c in checks.values()] == [False] * 6 + [True]
    assert unlabelled_counts(list(checks.values()) + [None]) == {
        "not checked": 2, "answer right": 1, "no working": 1, "no checkable line": 1, "no false line": 1,
        "no answer line": 1}


def test_matched_auroc_compares_only_lines_at_the_same_index_of_same_shaped_traces():
    # two 4-line traces of one stratum: errors at line 2 and line 3; answer lines are index 3
    scores = [[0.0, 0.5, -1.0, 0.0], [0.0, -0.2, 0.3, -5.0]]
    strata = [("arith", 1, 4), ("arith", 1, 4)]
    # wrong line 2 of trace 0 (score -1.0) against the right line 2 of trace 1 (0.3): 1 pair, ranked right;
    # trace 1's wrong line is its answer line: left out
    assert matched_auroc(scores, [2, 3], strata, [3, 3]) == 1.0
    # in another stratum there is nothing to compare with
    assert np.isnan(matched_auroc(scores, [2, 3], [("arith", 1, 4), ("arith", 2, 4)], [3, 3]))
    # ties count one half
    assert matched_auroc([[0.0, 0.5, 0.3, 0.0], [0.0, -0.2, 0.3, -5.0]], [2, 3], strata, [3, 3]) == 0.5
