"""Verifiable synthetic tasks with step-level ground truth.

Five families, each with difficulty levels and deterministic generation:

* ``arith``: ``7-3*4+2=?`` -> ``3*4=12``, ``7-12=-5``, ``-5+2=-3``, ``#### -3``
* ``linear``: ``3*x+4=19, x=?`` -> ``3*x=15``, ``x=5``, ``#### 5``
* ``recurrence``: ``x=3; 3 times x=2*x-1; x=?`` -> ``2*3-1=5``, ... ``#### 17``
* ``arith1``: one operation, ``13+7=?`` -> ``13+7=20``, ``#### 20`` (for small real models)
* ``running_total``: 8-12 one-digit ``+``/``-`` on a two-digit total, ``47+8-5+...=?`` -> ``47+8=55``,
  ``55-5=50``, ... (the testbed policy's family, :mod:`acpo.testbed`)

The text format and the meaning of "first erroneous step" are shared by all
families and documented in :mod:`acpo.tasks.base`. Problems of no family (a
dataset's, such as GSM8K) are checked by :mod:`acpo.tasks.freeform`, which
finds the first line of free-form text that states a false computation.

>>> task = get_task("arith")
>>> problem = task.generate(1, level=1, seed=0)[0]
>>> task.check(problem, problem.solution).first_error is None
True
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Sequence, Set

from acpo.tasks.arith import Arith, OneOp
from acpo.tasks.base import (
    ANSWER_MARKER,
    CheckResult,
    Problem,
    TaskFamily,
    answers_match,
    extract_final_answer,
    format_prompt,
    parse_number,
)
from acpo.segment import Step, step_at_char
from acpo.tasks.freeform import FreeformCheck, check_freeform
from acpo.tasks.linear import LinearEq
from acpo.tasks.recurrence import Recurrence
from acpo.tasks.running_total import RunningTotal

__all__ = [
    "ANSWER_MARKER",
    "DEFAULT_TRAIN_MIX",
    "HELDOUT_SEED",
    "OWN_HELDOUT_POOL",
    "RL_SEED_OFFSET",
    "CheckResult",
    "FreeformCheck",
    "Problem",
    "TASKS",
    "TaskFamily",
    "answers_match",
    "FREEFORM",
    "check",
    "check_as",
    "check_freeform",
    "checker_for",
    "error_kind",
    "extract_final_answer",
    "first_error_step",
    "format_prompt",
    "get_task",
    "heldout_problems",
    "make_problems",
    "parse_number",
    "answer_scorer",
    "problem_from_text",
]

TASKS: dict[str, TaskFamily] = {t.name: t for t in (Arith(), LinearEq(), Recurrence(), OneOp(), RunningTotal())}

OWN_HELDOUT_POOL = ("arith1", "running_total")
"""Families added after the held-out pools were fixed: each of their levels gets a held-out pool of its
own, so the pools (and so the training pools) of the earlier families stay exactly as they were."""

DEFAULT_TRAIN_MIX: tuple[tuple[str, int], ...] = (
    ("arith", 1),
    ("arith", 2),
    ("linear", 1),
    ("linear", 2),
    ("recurrence", 1),
    ("recurrence", 2),
)
"""(family, level) pairs the demo policy is trained on and RL starts from.

The demo policy's greedy pass@1 on this mix is in the middle (see its model
card), so RL groups have both right and wrong completions to learn from. The
higher levels are what the curriculum unlocks next (METHODS.md §7).
"""

HELDOUT_SEED = 1_000_003
"""Seed of the held-out pool; training seeds should stay below it."""

HELDOUT_POOL = 600
"""Size of the held-out pool whose prompts ``make_problems`` excludes by default."""


def get_task(name: str) -> TaskFamily:
    """The task family called ``name``; ValueError naming the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; valid families: {sorted(TASKS)}") from None


def _resolve_mix(
    families: Sequence[str] | None, levels: int | Iterable[int] | None
) -> list[tuple[str, int]]:
    if families is None and levels is None:
        return list(DEFAULT_TRAIN_MIX)
    names = list(TASKS) if families is None else list(families)
    pairs = []
    for name in names:
        task = get_task(name)
        wanted = task.levels if levels is None else [levels] if isinstance(levels, int) else list(levels)
        for level in wanted:
            task._require_level(level)
            pairs.append((name, level))
    if not pairs:
        raise ValueError("empty task mix: give at least one family and one level")
    return pairs


def _generate_mix(mix: Sequence[tuple[str, int]], n: int, seed: int, exclude: Set[str]) -> list[Problem]:
    """``n`` problems spread evenly over ``mix`` entries (earlier ones get the remainder).

    A pair listed twice gets twice the share (one stream, no repeats).
    """
    wants: dict[tuple[str, int], int] = {}
    for index, pair in enumerate(mix):
        wants[pair] = wants.get(pair, 0) + n // len(mix) + (1 if index < n % len(mix) else 0)
    out: list[Problem] = []
    for (name, level), want in wants.items():
        stream = (p for p in get_task(name).stream(level, seed) if p.prompt not in exclude)
        out.extend(itertools.islice(stream, want))
    random.Random(f"mix-s{seed}").shuffle(out)
    return out


RL_SEED_OFFSET = 1000
"""RL problem pools use the streams ``RL_SEED_OFFSET + seed``; supervised data (the
demo policy's SFT set, seed 0) uses the low seeds. Why: with the same seed the RL pool
would be the first problems of the very streams the demo policy was fine-tuned on for
many epochs, so an RL run would train on recalled problems while it is evaluated on
new ones."""


def make_problems(
    families: Sequence[str] | None = None,
    levels: int | Iterable[int] | None = None,
    n: int = 100,
    seed: int = 0,
    *,
    mix: Sequence[tuple[str, int]] | None = None,
    exclude_heldout: bool = True,
) -> list[Problem]:
    """A deterministic, shuffled mix of ``n`` problems.

    Args:
        families: family names; None means all families (or, with ``levels``
            also None, the ``DEFAULT_TRAIN_MIX``).
        levels: one level or several; None means every level of each family.
        n: number of problems, split evenly over the (family, level) pairs.
        seed: the same seed gives the same list.
        mix: explicit (family, level) pairs instead of ``families``/``levels``;
            a pair listed k times gets k shares.
        exclude_heldout: drop problems whose prompt is in the held-out pool
            (``heldout_problems``), so training never sees evaluation problems.
    """
    exclude = _heldout_prompts() if exclude_heldout else frozenset()
    if mix is not None:
        if families is not None or levels is not None:
            raise ValueError("give either mix or families/levels, not both")
        for name, level in mix:
            get_task(name)._require_level(level)
        pairs = list(mix)
    else:
        pairs = _resolve_mix(families, levels)
    return _generate_mix(pairs, n, seed, exclude)


_HELDOUT_CACHE: dict[tuple[tuple[str, int], ...], list[Problem]] = {}


def heldout_problems(n: int = 100, mix: Sequence[tuple[str, int]] = DEFAULT_TRAIN_MIX) -> list[Problem]:
    """The fixed held-out evaluation problems: the first ``n`` of a pool.

    The pool is generated from ``HELDOUT_SEED`` and is disjoint from
    everything ``make_problems`` returns (by prompt text). For ``n`` up to
    ``HELDOUT_POOL`` and the default mix the problems are reproducible
    forever; every consumer (tests, demo-policy card, trainer eval,
    benchmarks) uses this function.
    """
    if not 0 < n <= HELDOUT_POOL:
        raise ValueError(f"n must be in 1..{HELDOUT_POOL}, got {n}")
    key = tuple(mix)
    if key not in _HELDOUT_CACHE:
        pool = _generate_mix(key, HELDOUT_POOL, HELDOUT_SEED, set())
        # Interleave families/levels so any prefix is a balanced mix.
        by_pair: dict[tuple[str, int], list[Problem]] = {}
        for p in pool:
            by_pair.setdefault((p.family, p.level), []).append(p)
        queues = [by_pair[pair] for pair in key if pair in by_pair]
        ordered = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        _HELDOUT_CACHE[key] = ordered
    return _HELDOUT_CACHE[key][:n]


@functools.cache
def _heldout_prompts() -> frozenset[str]:
    pairs = {(name, level) for name, task in TASKS.items() for level in task.levels if name not in OWN_HELDOUT_POOL}
    prompts = {p.prompt for p in heldout_problems(HELDOUT_POOL)}
    for name in OWN_HELDOUT_POOL:
        for level in TASKS[name].levels:
            prompts |= {p.prompt for p in heldout_problems(HELDOUT_POOL, ((name, level),))}
    # Held-out problems of the non-default levels too, for evaluating the curriculum.
    extra = tuple(sorted(pairs - set(DEFAULT_TRAIN_MIX)))
    if extra:
        prompts |= {p.prompt for p in heldout_problems(HELDOUT_POOL, extra)}
    return frozenset(prompts)


def first_error_step(result: CheckResult | None, steps: Sequence[Step]) -> int | None:
    """Index of the segmented step holding the checker's first wrong line (None: no error found).

    A missing answer line (``first_error == len(result.steps)``, no character
    span) is blamed on the last step. The trainer's traces, the app and the
    credit-fidelity benchmark all map checker verdicts to steps through this.
    """
    if result is None or result.first_error is None:
        return None
    if result.first_error >= len(result.step_char_spans):
        return steps[-1].index
    return step_at_char(steps, result.step_char_spans[result.first_error][0])


def error_kind(result: CheckResult | None) -> str:
    """What a checker's ``first_error`` means, in words a verdict can print: a synthetic task knows every valid
    derivation ("first wrong step": the first step that leaves all of them), the free-form checker only the
    arithmetic of each line ("first false equation": a true equation computed for the wrong reason passes)."""
    return "first false equation" if isinstance(result, FreeformCheck) else "first wrong step"


def check(problem: Problem, completion: str) -> CheckResult:
    """Check ``completion`` with the checker of ``problem.family``; a problem of no synthetic family (a
    dataset's) gets the free-form checker, which judges the arithmetic of its lines and ``problem.answer``."""
    if problem.family in TASKS:
        return TASKS[problem.family].check(problem, completion)
    return check_freeform(completion, problem.answer or None)


FREEFORM = "freeform"
"""The checker name of the free-form checker (any prompt with a reference answer); the others are ``TASKS``'."""


def checker_for(family: str | None, answer: str | None) -> str | None:
    """The checker a row gets when none is chosen: its synthetic family's, else the free-form one when it
    has a reference answer, else None (no checker applies)."""
    if family in TASKS:
        return family
    return FREEFORM if answer not in (None, "") else None


def check_as(checker: str | None, prompt: str, answer: str | None, completion: str) -> CheckResult | None:
    """The verdict of the checker named ``checker`` (``FREEFORM``, a task family, or None for no checker).

    ValueError, saying why, when the checker cannot judge this row: the free-form
    checker without a reference answer, a family's checker on a prompt that is
    not that family's, or an unknown name.
    """
    if not checker:
        return None
    if checker == FREEFORM:
        if not answer:
            raise ValueError("the free-form checker needs the reference answer")
        return check_freeform(completion, answer)
    task = get_task(checker)
    return task.check(Problem("typed", checker, task.levels[0], prompt, answer or ""), completion)


def answer_scorer(checker: str | None, prompt: str, answer: str | None):
    """``score(i, text)`` for the resampling credit's continuations: a task checker's answer verdict, or None
    (a free-form or absent checker: the reference answer decides, as ``acpo.explain`` does by default)."""
    if checker not in TASKS:
        return None
    task = TASKS[checker]
    problem = Problem("typed", checker, task.levels[0], prompt, answer or "")
    return lambda i, text: float(task.check(problem, text).answer_correct)


def problem_from_text(prompt: str, answer: str | None = None, family: str | None = None) -> Problem:
    """A typed problem: its plain prompt, and the ``question`` a chat model is asked inside its instruction
    (:class:`acpo.prompts.PromptStyle`): ``family``'s wording when the prompt is that family's ``Q: ...``
    form (``Q: 2+3*4=?`` -> ``What is 2 + 3 * 4?``, as the generator words it), else the text after ``Q:``.

    >>> problem_from_text("Q: 2+3*4=?\\n", "14", "arith").question
    'What is 2 + 3 * 4?'
    >>> problem_from_text("Q: Tom has 3 apples. How many?\\n", "3").question
    'Tom has 3 apples. How many?'
    """
    text = prompt.strip()
    body = text.removeprefix("Q:").strip()
    question = TASKS[family].question(body) if family in TASKS and text.startswith("Q:") else body
    return Problem("typed", family or "typed", 1, prompt, answer or "", question=question)
