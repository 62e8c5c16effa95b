"""Rewards: the ``####`` match, math-verify equivalence, the format check, the registry."""

from __future__ import annotations

import threading
import warnings

import pytest

from acpo.rewards import REWARDS, format_reward, row_reward, get_reward, hash_answer_reward, math_verify_reward
from acpo.tasks import get_task


def test_hash_answer_reward_matches_numerically():
    completions = ["1+1=2\n#### 2", "#### 2.0", "#### 2/1", "#### 3", "1+1=2\n", "#### two"]
    assert hash_answer_reward([""] * 6, completions, answer=["2"] * 6) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_hash_answer_reward_agrees_with_the_task_checker():
    task = get_task("arith")
    problems = task.generate(20, level=2, seed=0)
    wrong = [p.solution.replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}") for p in problems]
    completions = [p.solution for p in problems] + wrong
    rewards = hash_answer_reward(None, completions, answer=[p.answer for p in problems] * 2)
    assert rewards == [float(task.check(p, c).answer_correct) for p, c in zip(problems * 2, completions)]
    assert rewards == [1.0] * 20 + [0.0] * 20


def test_conversational_completions_are_read():
    completion = [{"role": "assistant", "content": "2*3=6\n#### 6"}]
    assert hash_answer_reward(None, [completion], answer=["6"]) == [1.0]


def test_missing_gold_column_is_a_clear_error():
    with pytest.raises(ValueError, match="answer=\\[...\\]"):
        hash_answer_reward(None, ["#### 1"])
    with pytest.raises(ValueError, match="1 completions but 2 gold answers"):
        hash_answer_reward(None, ["#### 1"], answer=["1", "2"])


EQUIVALENT = [
    ("\\frac{1}{2}", "The answer is \\boxed{\\frac{1}{2}}."),
    ("\\frac{1}{2}", "\\boxed{0.5}"),
    ("\\frac{1}{2}", "\\boxed{1/2}"),
    ("\\frac{1}{2}", "so $\\dfrac{2}{4}$"),
    ("$0.5$", "\\boxed{\\frac{1}{2}}"),
    ("3\\sqrt{2}", "\\boxed{\\sqrt{18}}"),
    ("180", "\\boxed{180}"),
    ("22", "#### 22"),
]
NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "\\boxed{2}"),
    ("\\frac{1}{2}", "\\boxed{0.25}"),
    ("3\\sqrt{2}", "\\boxed{3\\sqrt{3}}"),
    ("180", "\\boxed{360}"),
    ("180", "I do not know."),
]


@pytest.mark.parametrize(("gold", "completion"), EQUIVALENT)
def test_math_verify_accepts_equivalent_forms(gold, completion):
    assert math_verify_reward(None, [completion], answer=[gold]) == [1.0]


@pytest.mark.parametrize(("gold", "completion"), NOT_EQUIVALENT)
def test_math_verify_rejects_different_values(gold, completion):
    assert math_verify_reward(None, [completion], answer=[gold]) == [0.0]


def test_unparseable_gold_gives_none_and_one_counting_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rewards = math_verify_reward(None, ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}"], answer=["", "1", "  "])
    assert rewards == [None, 1.0, None]
    messages = [str(w.message) for w in caught if "gold answers could not be parsed" in str(w.message)]
    assert len(messages) == 1 and "2 of 3" in messages[0]


def test_math_verify_works_outside_the_main_thread():
    # signal.alarm() raises in a worker thread unless the timeout is disabled there.
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=math_verify_reward(None, ["\\boxed{0.5}"], answer=["1/2"])))
    worker.start()
    worker.join()
    assert result["r"] == [1.0]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("3*4=12\n7-12=-5\n#### -5", 1.0),
        ("3*4=12\n#### -5\n", 1.0),
        ("#### -5", 0.0),  # no steps
        ("3*4=12\n7-12=-5\n", 0.0),  # no answer line
        ("3*4=12\n#### -5\n7-12=-5", 0.0),  # text after the answer
        ("3*4=12\n####", 0.0),  # empty answer
    ],
)
def test_format_reward(completion, expected):
    assert format_reward(None, [completion]) == [expected]


def test_reference_solutions_are_well_formatted():
    for name in ("arith", "linear", "recurrence"):
        problems = get_task(name).generate(10, level=1, seed=0)
        assert format_reward(None, [p.solution for p in problems]) == [1.0] * 10


def test_registry():
    assert set(REWARDS) == {"answer", "hash_answer", "math_verify", "format"}
    assert get_reward("format") is format_reward
    with pytest.raises(ValueError, match="valid: auto, answer, format, hash_answer, math_verify, or module:function"):
        get_reward("bleu")


def test_row_reward_takes_the_given_reward_then_the_checker_then_the_answer_and_says_which():
    completion = "3*4=12\n2+12=14\n#### 14"
    right = get_task("arith").check(get_task("arith").generate(1, 1, 0)[0], "#### 0")  # a wrong answer verdict
    assert row_reward(completion, "14", right, given=1.0) == (1.0, "given")
    assert row_reward(completion, "14", right) == (0.0, "checker")  # the checker's verdict beats the answer match
    assert row_reward(completion, "14") == (1.0, "answer match")
    assert row_reward(completion, "15") == (0.0, "answer match")
    assert row_reward(completion, None) == (None, "unknown")
