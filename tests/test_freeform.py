"""The free-form step checker: exact bounded arithmetic, computations read out of prose, first false line."""

from __future__ import annotations

import json
import random
import re
import signal
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acpo.verdict import localisable
from acpo.tasks.base import split_lines
from acpo.tasks.freeform import (
    RIGHT,
    UNCHECKABLE,
    WRONG,
    Uncheckable,
    check_freeform,
    line_computations,
    line_status,
    safe_eval,
)

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K.exists(), reason=f"GSM8K training split not found at {GSM8K}")


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM after ``seconds`` (pytest runs tests in the main thread)."""

    def fire(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- safe_eval ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "value"), [
    ("48/2", 24),
    ("0.1 + 0.2", Fraction(3, 10)),  # exact: no float rounding
    ("$1,200 × 3", 3600),
    ("1.5 x 4", 6),
    ("12 ÷ 4 − 1", 2),
    ("3 · 4", 12),
    ("2^10 - 24", 1000),
    ("7 // 2", 3),
    ("7 % 3", 1),
    ("50%", Fraction(1, 2)),
    ("80% * 10", 8),
    ("-3 - -2", -1),
    ("(1 + 2) * 3", 9),
    ("2 + 3 * 4", 14),
    ("2 ** -2", Fraction(1, 4)),
    ("007 + .5", Fraction(15, 2)),
    ("12.", 12),
    ("\\frac{48}{2} \\times 3", 72),
])
def test_safe_eval_reads_written_arithmetic_exactly(expr, value):
    assert safe_eval(expr) == value


@pytest.mark.parametrize("expr", [
    "x + 1", "abs(3)", "__import__('os').system('true')", "1,2", "1e5", "3 = 3", "", "2 ** 0.5", "[1]",
    "1 if 1 else 2", "3 < 4", "a.b", "5 6",
])
def test_safe_eval_refuses_anything_but_arithmetic(expr):
    with pytest.raises(Uncheckable):
        safe_eval(expr)


@pytest.mark.parametrize(("expr", "why"), [
    ("1/0", "division by zero"), ("5 // 0", "division by zero"), ("5 % (2 - 2)", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("10**10**10", "too large"), ("9**9**9**9", "too large"), ("(10**1000)**1000", "too large"),
    ("2**4096 * 2**4096", "too large"), ("1" * 1300, "longer than"),
    ("1+" * 150 + "1", "longer than"), ("(" * 100 + "1" + ")" * 100, "not arithmetic|longer than"),
])
def test_safe_eval_is_bounded_division_by_zero_and_huge_values_are_uncheckable(expr, why):
    with deadline(2), pytest.raises(Uncheckable, match=why):
        safe_eval(expr)


def test_powers_of_zero_and_one_are_cheap_whatever_the_exponent():
    with deadline(2):
        assert safe_eval("1**10**10") == 1 and safe_eval("(-1)**(10**10 + 1)") == -1 and safe_eval("0**10**10") == 0


@st.composite
def integer_expressions(draw, depth=0):
    """(text, exact value or None when a divisor is zero), fully parenthesised, random spacing."""
    if depth >= 4 or draw(st.booleans()):
        n = draw(st.integers(-10**6, 10**6))
        return (f"({n})" if n < 0 else str(n)), Fraction(n)
    op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]))
    left, lv = draw(integer_expressions(depth=depth + 1))
    if op == "**":
        exponent = draw(st.integers(0, 4))
        right, rv = str(exponent), Fraction(exponent)
    else:
        right, rv = draw(integer_expressions(depth=depth + 1))
    space = draw(st.sampled_from(["", " "]))
    text = f"({left}{space}{op}{space}{right})"
    if lv is None or rv is None or (op in ("/", "//", "%") and rv == 0):
        return text, None
    value = {"+": lambda: lv + rv, "-": lambda: lv - rv, "*": lambda: lv * rv, "/": lambda: lv / rv,
             "//": lambda: Fraction(lv // rv), "%": lambda: lv % rv, "**": lambda: lv ** int(rv)}[op]()
    return text, value


@settings(max_examples=300, deadline=None)
@given(integer_expressions())
def test_safe_eval_equals_fraction_arithmetic_on_random_integer_expressions(case):
    text, value = case
    if value is None:
        with pytest.raises(Uncheckable, match="division by zero"):
            safe_eval(text)
    elif max(value.numerator.bit_length(), value.denominator.bit_length()) > 4000:
        return  # near the size bound: refusing is allowed there
    else:
        assert safe_eval(text) == value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 999), min_size=1, max_size=8), st.lists(st.sampled_from("+-*"), min_size=7,
                                                                        max_size=7))
def test_safe_eval_follows_pythons_precedence_on_flat_expressions(numbers, ops):
    text = str(numbers[0]) + "".join(f" {op} {n}" for op, n in zip(ops, numbers[1:]))
    assert safe_eval(text) == eval(text)  # noqa: S307 (digits and + - * only): the independent reference


# --- computations in a line -------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "status"), [
    # prose around a computation
    ("So she has 3 * 4 = 12 apples.", RIGHT),
    ("So she has 3 * 4 = 13 apples.", WRONG),
    ("2 + 2 = 4, and 4 * 3 = 13.", WRONG),
    ("Since 4/7 is equal to $24, 1/7 is $24/4 = $6.", RIGHT),  # 'is equal to' states a share, not 4/7 = 24
    ("Total score = 26 + 20 + 28 = 72", WRONG),  # SmolLM2's: 26 + 20 + 28 is 74
    ("Step 1: 42 - 6 = 28", WRONG),  # SmolLM2's: 36
    ("4. 18 + 1 = 20", WRONG),  # a numbered list item, not 4. or 4.18
    ("- 48/2 = 24", RIGHT),  # a markdown bullet, not minus 48/2
    ("**48 / 2 = 24**", RIGHT),
    ("(3 + 4 = 7)", RIGHT),
    # chains: every link must hold
    ("2 + 3 = 5 = 6", WRONG),
    ("28 - 42 = 28 - 42 = -14", RIGHT),
    ("28 - 42 = 28 - 42 = 28", WRONG),
    ("48/2 = 24 = 25", WRONG),  # two bare numbers inside a chain with arithmetic are compared
    ("600 miles / 50 miles per hour = 12 hours * 60 minutes per hour = 720 minutes", RIGHT),  # a running chain
    ("5 + 3 = 8 * 2 = 16", RIGHT),
    ("5 + 3 = 9 * 2 = 18", WRONG),  # 5 + 3 is not 9
    ("(42 + 90) / 4 = 42 * 9 / 4 = 360", WRONG),  # SmolLM2's
    # notation
    ("$1,200 + $300 = $1,500", RIGHT),
    ("$1,200 + $300 = $1,600", WRONG),
    ("3 × 4 = 12", RIGHT),
    ("3 x 4 = 12", RIGHT),
    ("2€ + 2€ + 320 = 1000€.", WRONG),
    ("\\(3 \\times 4 = 12\\)", RIGHT),
    ("10/3 = 3.33", RIGHT),  # rounded
    ("2/3 = 0.66", RIGHT),  # truncated
    ("10/3 = 3.34", WRONG),
    ("7/2 = 3", WRONG),
    ("100 - 40 = 60%", RIGHT),  # percentage points
    ("1/4 = 25%", RIGHT),
    ("20% * 50 = 10", RIGHT),
    # units between a number and an operator
    ("3 days * 4 hours = 12 hours", RIGHT),
    ("12 hours * $10 an hour = $120", RIGHT),
    ("So, the time is 15 minutes * 15 minutes = 20 minutes.", WRONG),  # SmolLM2's
    ("15 * 5 = 75kg", RIGHT),
    ("11 outdoor tables * 5 chairs per table = 25 seats", WRONG),  # SmolLM2's: 55
    ("$10 per hour * 5 hours = $50", RIGHT),
    # GSM8K calculator annotations
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", RIGHT),
    ("Natalia sold <<48/2=25>>25 clips in May.", WRONG),
    ("x=<<26=26>>26", RIGHT),
    # division by zero and huge powers: uncheckable, never a crash
    ("5 / 0 = 3", UNCHECKABLE),
    ("10**10**10 = 1", UNCHECKABLE),
    ("<<9**9**9**9=1>>", UNCHECKABLE),
    # nothing to check, or nothing that can be read safely
    ("Natalia sold 48 clips in April and half as many in May.", UNCHECKABLE),
    ("She has 3 apples and 4 pears, 7 fruits in all.", UNCHECKABLE),
    ("half of 48 = 24", UNCHECKABLE),
    ("3 times 4 + 1 = 13", UNCHECKABLE),  # not 4 + 1 = 13
    ("2x + 3 = 7", UNCHECKABLE),  # algebra: not + 3 = 7
    ("x + 5 = 8", UNCHECKABLE),
    ("3x = 15", UNCHECKABLE),
    ("x = 5", UNCHECKABLE),
    ("60 students x 2/3 = 40 students", UNCHECKABLE),  # not 2/3 = 40
    ("Step 3: 9 = 10", UNCHECKABLE),  # two numbers said to be equal, no arithmetic
    ("Delaney leaves at 8:00. 8:00 + 7:50 = 15:50", UNCHECKABLE),  # clock times
    ("8:00 + 2 = 10:00", UNCHECKABLE),
    ("1/2 a cup = 4 ounces", UNCHECKABLE),  # a unit conversion
    ("4 pounds - 6 ounces = 58 ounces", UNCHECKABLE),
    ("Day 1 * 2 = 20 pages", UNCHECKABLE),  # a label, not 1 * 2
    ("25 / 1/3 = 75", UNCHECKABLE),  # spacing says 25 / (1/3), precedence says (25/1)/3
    ("He reads 4 / 3 = 1 and 1/3 hours", UNCHECKABLE),  # a mixed number
    ("1 and 1/4 cup = 1.5 cups", UNCHECKABLE),
    ("3 + 4 = 7 and 7 * 2 = 15", WRONG),
    ("20 - 20% = 16", UNCHECKABLE),  # a percentage added to a plain number
    ("2000 - 2000 = 0000", RIGHT),
    ("0900-0130 = 0730 hours", UNCHECKABLE),
    ("1 + 2 == 3", UNCHECKABLE),
])
def test_line_status_on_hand_checked_lines(line, status):
    assert line_status(line) == status, line_computations(line)


def test_each_computation_of_a_line_says_what_it_compared_and_why_it_could_not():
    found = line_computations("She sold 48/2 = 24 clips, then 5/0 = 1 and 24 + 1 = 26.")
    assert [(c.left, c.right, c.status) for c in found] == [
        ("48/2", "24", RIGHT), ("5/0", "1", UNCHECKABLE), ("24 + 1", "26", WRONG)]
    assert found[1].reason == "division by zero"


# --- check_freeform ---------------------------------------------------------------------------------


def test_the_first_false_line_is_the_first_error_and_the_trace_is_localisable():
    completion = "Natalia sold 48/2 = 24 clips in May.\nIn all she sold 48 + 24 = 73 clips.\n73 - 1 = 70\n#### 73"
    check = check_freeform(completion, "72")
    assert check.line_status == (RIGHT, WRONG, WRONG, UNCHECKABLE)
    assert (check.first_error, check.answer_correct, check.answer) == (1, False, "73")
    assert localisable(check) and check.checkable


def test_steps_and_spans_are_split_lines_up_to_the_answer_line():
    completion = "3 * 4 = 12\n\n12 + 1 = 13\n#### 13\n5 + 5 = 11\n"
    check = check_freeform(completion, "13")
    lines = split_lines(completion)
    assert check.steps == [t for t, _ in lines] == ["3 * 4 = 12", "12 + 1 = 13", "#### 13"]
    assert check.step_char_spans == [s for _, s in lines]
    assert check.correct and check.first_error is None  # the false line after the answer is not read


def test_a_wrong_answer_reached_by_true_arithmetic_cannot_be_located():
    """No line is false, so there is no line to blame: first_error is None and the trace is not localisable."""
    check = check_freeform("Sarah buys 20 x 1 = 20 pencils.\nThen 20 + 18 = 38 pencils.\n#### 38", "92")
    assert check.line_status == (RIGHT, RIGHT, UNCHECKABLE)
    assert check.first_error is None and not check.answer_correct and not check.correct
    assert not localisable(check)


def test_a_trace_with_no_checkable_line_says_so():
    check = check_freeform("She buys some pencils.\nThen she buys more.\nThe answer is 42.", "92")
    assert not check.checkable and check.first_error is None and not localisable(check)


def test_a_right_answer_with_a_false_line_is_not_correct():
    check = check_freeform("6 * 7 = 43\n#### 42", "42")
    assert check.answer_correct and check.first_error == 0 and not check.correct


def test_the_answer_is_read_by_the_shared_extractor_and_compared_by_equivalence():
    assert check_freeform("3 + 4 = 7\nSo the answer is $7.00.", "7").answer_correct
    assert check_freeform("1/2 + 0 = 1/2\n\\boxed{\\frac{1}{2}}", "0.5").answer_correct
    assert not check_freeform("3 + 4 = 7\n#### 7", None).answer_correct  # no reference: nothing to be right against


def test_a_last_line_cut_short_after_a_digit_is_not_judged():
    """A token limit can stop ``10 * 10 = 100`` at ``= 1``; a last line that ends the text on a digit is skipped."""
    assert check_freeform("3 * 4 = 12\n10 * 10 = 1", "12").line_status == (RIGHT, UNCHECKABLE)
    assert check_freeform("3 * 4 = 12\n10 * 10 = 1.\n", "12").line_status == (RIGHT, WRONG)
    assert check_freeform("3 * 4 = 12\n10 * 10 = 1 apple", "12").line_status == (RIGHT, WRONG)


def test_a_hostile_completion_is_checked_quickly():
    completion = "".join([("9**9**9**9 = 1 and (" * 500 + "\n") * 10, "(" * 20000 + " 1 = 1\n",
                          "<<" + "1+" * 10000 + "1=2>>\n", "**" * 20000 + "\n", "1/0 = 2\n" * 200,
                          "7 * 6 = 41\n#### 41"])  # about 200 KB
    with deadline(10):
        check = check_freeform(completion, "42")
    assert check.line_status[-2] == WRONG and check.first_error == len(check.steps) - 2


# --- GSM8K's reference solutions ------------------------------------------------------------------------


def _rows(n: int) -> list[dict]:
    with GSM8K.open() as f:
        return [json.loads(line) for line, _ in zip(f, range(n))]


REFERENCE_SLIPS = {
    (167, 4): "So it cost 192*100=$1920 (192*100 is 19200)",
    (168, 1): "they cost 6*2.5 = $18.00 (6*2.5 is 15; the annotation says 6*3)",
    (198, 5): "6/3=.5 hour (6/3 is 2)",
    (224, 0): "4080 + 4080 / 2 = 4000 + 2040 (4000 + 2040 is 6040, not 6120)",
}
"""Lines of the first 500 GSM8K reference solutions whose own prose states a false computation (checked by
hand); the checker must flag these and no other line."""


@needs_gsm8k
def test_every_calculator_annotation_of_500_reference_solutions_checks_right():
    annotations = [a for row in _rows(500) for a in re.findall(r"<<[^<>]*>>", row["answer"])]
    assert len(annotations) > 1500
    assert [a for a in annotations if line_status(a) != RIGHT] == []


@needs_gsm8k
def test_every_line_of_500_reference_solutions_is_right_or_uncheckable_but_their_own_slips():
    for i, row in enumerate(_rows(500)):
        check = check_freeform(row["answer"], row["answer"].split("####")[-1])
        assert check.answer_correct, i
        for k, (line, status) in enumerate(zip(check.steps, check.line_status)):
            if (i, k) in REFERENCE_SLIPS:
                assert status == WRONG, (i, k, line)
            elif "<<" in line:
                assert status == RIGHT, (i, k, line, line_computations(line))
            else:
                assert status != WRONG, (i, k, line, line_computations(line))


def _corrupt(value: str) -> str:
    """The stated result with its last digit moved by one: never equal to (or a rounding of) the true value."""
    last = int(value[-1])
    return value[:-1] + str(last + 1 if last < 9 else last - 1)


@needs_gsm8k
def test_one_corrupted_result_in_500_reference_solutions_is_flagged_on_exactly_its_line():
    for i, row in enumerate(_rows(500)):
        solution = row["answer"]
        clean = check_freeform(solution, None).line_status
        annotated = [(k, span) for k, (line, span) in enumerate(split_lines(solution)) if "<<" in line]
        if not annotated:
            continue
        k, (start, end) = random.Random(i).choice(annotated)
        line = re.sub(r"=([^=<>]+)>>", lambda m: f"={_corrupt(m.group(1))}>>", solution[start:end], count=1)
        check = check_freeform(solution[:start] + line + solution[end:], None)
        assert check.line_status[k] == WRONG, (i, line)
        assert [s for j, s in enumerate(check.line_status) if j != k] == [s for j, s in enumerate(clean) if j != k]
        if not any(j < k for (r, j) in REFERENCE_SLIPS if r == i):
            assert check.first_error == k
