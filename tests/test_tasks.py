"""Synthetic tasks: deterministic generation, reference solutions, step checkers."""

from __future__ import annotations

import re

import pytest

from acpo.tasks import (
    DEFAULT_TRAIN_MIX,
    TASKS,
    Problem,
    extract_final_answer,
    get_task,
    heldout_problems,
    make_problems,
    parse_number,
)

ALL_PAIRS = [(name, level) for name, task in TASKS.items() for level in task.levels]


def _problem(family: str, prompt: str, answer: str) -> Problem:
    return Problem(id="hand", family=family, level=1, prompt=prompt, answer=answer)


# --- generation ---------------------------------------------------------------


@pytest.mark.parametrize(("family", "level"), ALL_PAIRS)
def test_generation_is_deterministic_per_seed(family, level):
    task = get_task(family)
    assert task.generate(20, level, seed=3) == task.generate(20, level, seed=3)
    assert task.generate(20, level, seed=3) != task.generate(20, level, seed=4)


@pytest.mark.parametrize(("family", "level"), ALL_PAIRS)
def test_reference_solutions_pass_their_checker(family, level):
    task = get_task(family)
    for problem in task.generate(200, level, seed=0):
        result = task.check(problem, problem.solution)
        assert result.first_error is None and result.answer_correct, (problem, result)


@pytest.mark.parametrize(("family", "level"), ALL_PAIRS)
def test_text_format_is_one_step_per_line_then_answer(family, level):
    problem = get_task(family).generate(1, level, seed=0)[0]
    assert re.fullmatch(r"Q: [^\n]+\n", problem.prompt)
    *steps, last = problem.solution.split("\n")
    assert steps and all(steps) and last == f"#### {problem.answer}"


def test_arith_answers_agree_with_python_eval():
    # Independent reference: Python's own precedence rules.
    for level in TASKS["arith"].levels:
        for problem in get_task("arith").generate(100, level, seed=1):
            expression = problem.prompt.removeprefix("Q: ").removesuffix("=?\n")
            assert int(problem.answer) == eval(expression)  # noqa: S307 (digits and + - * only)


def test_linear_answers_satisfy_the_equation():
    for level in TASKS["linear"].levels:
        for problem in get_task("linear").generate(100, level, seed=1):
            lhs, rhs = problem.prompt.removeprefix("Q: ").split(",")[0].split("=")
            x = int(problem.answer)
            env = {"x": x}
            assert eval(lhs, env) == eval(rhs, env)  # noqa: S307


def test_recurrence_answers_match_a_loop():
    for problem in get_task("recurrence").generate(100, 3, seed=1):
        start, times, k, c = map(int, re.findall(r"-?\d+", problem.prompt)[:4])
        value = start
        for _ in range(times):
            value = k * value + c
        assert int(problem.answer) == value


def test_unknown_family_and_level_name_the_valid_ones():
    with pytest.raises(ValueError, match="valid families: \\['arith', 'arith1', 'linear', 'recurrence', 'running_total'\\]"):
        get_task("calculus")
    with pytest.raises(ValueError, match="valid levels: \\[1, 2, 3, 4\\]"):
        get_task("arith").generate(1, level=9, seed=0)
    with pytest.raises(ValueError, match="valid levels"):
        make_problems(["linear"], levels=7, n=3)


def test_make_problems_is_a_deterministic_even_mix():
    problems = make_problems(n=60, seed=5)
    assert problems == make_problems(n=60, seed=5)
    counts = {pair: 0 for pair in DEFAULT_TRAIN_MIX}
    for p in problems:
        counts[(p.family, p.level)] += 1
    assert set(counts.values()) == {10}
    assert len({p.id for p in problems}) == 60


def test_heldout_is_disjoint_from_training_problems():
    heldout = {p.prompt for p in heldout_problems(100)}
    training = {p.prompt for seed in range(3) for p in make_problems(n=1200, seed=seed)}
    assert len(heldout) == 100
    assert heldout.isdisjoint(training)
    # The guard is real: without the exclusion some training problems collide.
    unguarded = {p.prompt for p in make_problems(n=3000, seed=0, exclude_heldout=False)}
    assert not heldout.isdisjoint(unguarded)


def test_heldout_prefix_is_balanced_and_stable():
    first = heldout_problems(12)
    assert first == heldout_problems(100)[:12]
    assert {(p.family, p.level) for p in first} == set(DEFAULT_TRAIN_MIX)


# --- the checkers on hand-written wrong solutions -----------------------------

ARITH = _problem("arith", "Q: 7-3*4+2=?\n", "-3")


@pytest.mark.parametrize(
    ("completion", "first_error", "answer_correct"),
    [
        ("3*4=12\n7-12=-5\n-5+2=-3\n#### -3", None, True),
        ("3*4=12\n7-12=-4\n-4+2=-2\n#### -2", 1, False),  # wrong arithmetic in step 2
        ("3*4=12\n-5+2=-3\n#### -3", 1, True),  # skipped step: -5 is not in 7-12+2
        ("3*4=12\n7-12+2=-3\n#### -3", 1, True),  # two operations in one line
        ("7-3=4\n4*4=16\n16+2=18\n#### 18", 0, False),  # precedence ignored
        ("12+2=14\n#### 14", 0, False),  # invented operands
        ("blah blah\n#### -3", 0, True),  # garbage step
        ("3*4=12\n7-12=-5\n-5+2=-3\n", 3, False),  # missing answer line
        ("3*4=12\n7-12=-5\n-5+2=-3\n#### -4", 3, False),  # right steps, wrong answer
        ("3*4=12\n7-12=-5\n-5+2=-3\n#### minus three", 3, False),
        ("", 0, False),
    ],
)
def test_arith_checker_finds_first_wrong_step(completion, first_error, answer_correct):
    result = get_task("arith").check(ARITH, completion)
    assert (result.first_error, result.answer_correct) == (first_error, answer_correct)


def test_arith_accepts_reordered_multiplications():
    problem = _problem("arith", "Q: 2*3+4*5=?\n", "26")
    assert get_task("arith").check(problem, "4*5=20\n2*3=6\n6+20=26\n#### 26").first_error is None
    # ... but not an addition that steals a multiplication's operand.
    assert get_task("arith").check(problem, "3+4=7\n#### 26").first_error == 0


def test_step_spans_point_at_the_step_text():
    completion = "3*4=12\n\n7-12=-4\n#### -2"
    result = get_task("arith").check(ARITH, completion)
    assert result.steps == ["3*4=12", "7-12=-4", "#### -2"]
    assert [completion[s:e] for s, e in result.step_char_spans] == result.steps
    assert result.step_char_spans[result.first_error] == (8, 15)


def test_lines_after_the_answer_are_ignored():
    result = get_task("arith").check(ARITH, "3*4=12\n7-12=-5\n-5+2=-3\n#### -3\nmore text\n")
    assert result.correct and len(result.steps) == 4


LINEAR = _problem("linear", "Q: 5*x+3=2*x+12, x=?\n", "3")


@pytest.mark.parametrize(
    ("completion", "first_error", "answer_correct"),
    [
        ("3*x+3=12\n3*x=9\nx=3\n#### 3", None, True),
        ("3*x+3=12\n3*x=8\nx=8/3\n#### 8/3", 1, False),  # wrong arithmetic in step 2
        ("x=3\n#### 3", None, True),  # skipping to an equivalent equation is accepted
        ("6*x+6=24\n#### 3", None, True),  # so is rescaling
        ("7*x+3=12\n#### 3", 0, True),  # wrong collection of x
        ("3*x+3=12\nx*x=9\n#### 3", 1, True),  # not linear
        ("3*x+3=12\n3x=9\n#### 3", 1, True),  # unparseable (no '*')
        ("3*x+3=12\n3*x=9\nx=3\n", 3, False),  # missing answer
        ("3*x+3=12\n3*x=9\nx=3\n#### 4", 3, False),
    ],
)
def test_linear_checker_finds_first_wrong_step(completion, first_error, answer_correct):
    result = get_task("linear").check(LINEAR, completion)
    assert (result.first_error, result.answer_correct) == (first_error, answer_correct)


RECURRENCE = _problem("recurrence", "Q: x=3; 3 times x=2*x-1; x=?\n", "17")


@pytest.mark.parametrize(
    ("completion", "first_error", "answer_correct"),
    [
        ("2*3-1=5\n2*5-1=9\n2*9-1=17\n#### 17", None, True),
        ("2*3-1=5\n2*5-1=11\n2*11-1=21\n#### 21", 1, False),  # wrong arithmetic in step 2
        ("2*3-1=5\n2*9-1=17\n#### 17", 1, True),  # skipped iteration
        ("2*3-1=5\n2*5-1=9\n#### 9", 2, False),  # stopped one iteration early
        ("2*3-1=5\n2*5-1=9\n2*9-1=17\n2*17-1=33\n#### 33", 3, False),  # one too many
        ("2*3+1=7\n#### 17", 0, True),  # wrong rule
        ("!!!\n???", 0, False),  # garbage, no answer
    ],
)
def test_recurrence_checker_finds_first_wrong_step(completion, first_error, answer_correct):
    result = get_task("recurrence").check(RECURRENCE, completion)
    assert (result.first_error, result.answer_correct) == (first_error, answer_correct)


@pytest.mark.parametrize(("family", "level"), ALL_PAIRS)
def test_corrupting_one_reference_step_is_located(family, level):
    """Change the result of step i in a reference solution: the checker names step i."""
    task = get_task(family)
    for problem in task.generate(30, level, seed=2):
        lines = problem.solution.split("\n")
        for i in range(len(lines) - 1):
            head, _, value = lines[i].rpartition("=")
            # An integer result goes up by one; a linear equation's right side gets "+1".
            wrong = f"{head}={int(value) + 1}" if value.lstrip("-").isdigit() else f"{lines[i]}+1"
            corrupted = lines[:i] + [wrong] + lines[i + 1 :]
            assert task.check(problem, "\n".join(corrupted)).first_error == i


def test_answer_helpers():
    assert extract_final_answer("a\n#### 12\n#### 13") == "12"
    assert extract_final_answer("x=3") is None
    assert parse_number("1/2") == parse_number("0.50")
    assert parse_number("x") is None


def test_arith1_questions_are_worded_and_mean_the_prompt():
    for problem in get_task("arith1").generate(100, level=1, seed=1):
        expression = problem.question.removeprefix("What is ").removesuffix("?")
        assert " " in expression and int(problem.answer) == eval(expression)  # noqa: S307 (digits and + - * only)
        assert problem.prompt == f"Q: {expression.replace(' ', '')}=?\n"


def test_checker_for_and_check_as_pick_the_family_else_free_form_and_say_why_they_cannot():
    from acpo.tasks import FREEFORM, check_as, checker_for

    assert checker_for("arith", "3") == "arith"
    assert checker_for(None, "3") == FREEFORM and checker_for("gsm8k", "3") == FREEFORM
    assert checker_for(None, "") is None and checker_for(None, None) is None
    assert check_as(None, "Q: 2+3*4=?", "14", "#### 14") is None
    verdict = check_as(FREEFORM, "Q?", "14", "3*4=12\n2+12=15\n#### 15")
    assert verdict.first_error == 1 and not verdict.answer_correct
    with pytest.raises(ValueError, match="needs the reference answer"):
        check_as(FREEFORM, "Q?", None, "#### 14")
    with pytest.raises(ValueError, match="unknown task family"):
        check_as("chess", "Q?", "1", "#### 1")
    problem = get_task("arith").generate(1, 1, 0)[0]
    assert check_as("arith", problem.prompt, problem.answer, problem.solution).answer_correct


ORDER_OF_OPERATIONS = "14 + 9 = 23\n23 * 3 = 69\n69 - 6 = 55\n#### 55"  # true equations, wrong order


@pytest.mark.parametrize("prompt", ["Q: 14+9*3-6=?\n", [{"role": "user", "content": "Answer with your working, then "
                                                                                  "'#### <answer>'.\nWhat is 14 + 9 * 3 - 6?"}]])
def test_arith_labels_the_first_step_that_leaves_every_valid_derivation(prompt):
    from acpo.tasks import check_freeform, error_kind

    result = get_task("arith").check(Problem("p", "arith", 2, prompt, "35"), ORDER_OF_OPERATIONS)
    assert result.first_error == 0  # 14 + 9 is true but no valid derivation of 14 + 9 * 3 - 6 computes it
    assert error_kind(result) == "first wrong step"
    freeform = check_freeform(ORDER_OF_OPERATIONS, "35")
    assert freeform.first_error == 2 and error_kind(freeform) == "first false equation"
