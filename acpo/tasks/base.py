"""The shared shape of a verifiable task: problems, the text format, step checking.

Every task family speaks the same text format, because the core depends on it:

* prompt:     ``"Q: <problem>\\n"`` (one line, ending with a newline);
* completion: one step per line, each ending with ``"\\n"``, then a final
  answer line ``"#### <answer>"``, e.g. ``"3*4=12\\n7-12=-5\\n-5+2=-3\\n#### -3"``.

Newline-separated steps matter twice: ``acpo.segment``'s ``lines`` method splits
on newlines, and the credit-fidelity benchmark (METHODS.md §9) maps the
checker's first wrong step onto a segmented step by character span.

"First erroneous step" (the same convention in every family):

* The completion is read line by line. Blank lines are skipped. Every other
  line up to and including the first answer line (a line starting with
  ``####``) is a *parsed step*; anything after the answer line is ignored,
  so ``CheckResult.steps`` ends with the answer line when there is one.
* A step line is wrong when the family's rule says its stated result does not
  follow from the problem state reached by the earlier (correct) steps;
  unparseable text is wrong. ``first_error`` is the index of the first wrong
  line.
* When every step line is right, the answer line is judged: if the answer is
  wrong, ``first_error`` is the answer line's index (``len(steps) - 1``); if
  there is no answer line at all, ``first_error == len(steps)``, an index one
  past the end that means "the answer that should have followed" and has no
  character span.
* All steps right and the answer right: ``first_error is None``. The steps do
  not have to reach the end: a correct answer after a correct but partial
  derivation is not flagged (the reward is outcome-based; ``first_error``
  only locates mistakes).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from acpo.answers import ANSWER_MARKER, answers_match, extract_final_answer, parse_number  # noqa: F401 (re-exported)



@dataclass(frozen=True)
class Problem:
    """One problem: the text the policy sees and what counts as right.

    ``prompt`` is the plain-text prompt (``"Q: ...\\n"``) or, for datasets in
    TRL's conversational format, a list of chat messages; ``question`` is the
    bare problem text a chat model gets inside an instruction
    (:class:`acpo.prompts.PromptStyle`). ``solution`` is a reference completion
    in the fixed format (steps, then ``#### answer``), empty when unknown (e.g.
    dataset rows whose worked solution is not in that format).
    """

    id: str
    family: str
    level: int
    prompt: str | list[dict[str, str]]
    answer: str
    solution: str = ""
    question: str = ""
    columns: dict[str, Any] = field(default_factory=dict, compare=False)  # a dataset row's other columns


@dataclass(frozen=True)
class CheckResult:
    """A step checker's verdict on one completion (see the module docstring).

    ``first_error``: 0-based index into ``steps`` of the first wrong line,
    ``len(steps)`` when every line is right but the answer line is missing,
    ``None`` when the steps and the answer are all right.
    ``step_char_spans``: ``[start, end)`` of each parsed line in the
    completion string, trailing newline excluded.
    ``answer``: the text after ``####`` (``None`` when there is no answer line).
    """

    first_error: int | None
    answer_correct: bool
    steps: list[str]
    step_char_spans: list[tuple[int, int]]
    answer: str | None = None

    @property
    def correct(self) -> bool:
        """True when the answer is right and no step was flagged."""
        return self.answer_correct and self.first_error is None

    @property
    def shows_working(self) -> bool:
        """More than one parsed line: some working besides (or instead of) the answer line."""
        return len(self.steps) >= 2


def format_prompt(problem_text: str) -> str:
    """The prompt for a problem: ``"Q: <problem>\\n"``, the one format of every family.

    >>> format_prompt("7-3*4+2=?")
    'Q: 7-3*4+2=?\\n'
    """
    return f"Q: {problem_text.strip()}\n"


def split_lines(completion: str) -> list[tuple[str, tuple[int, int]]]:
    """Non-blank lines of ``completion`` up to the first answer line, with spans.

    Spans are ``[start, end)`` character offsets into ``completion`` of the
    line without its trailing newline (and without a trailing ``\\r``).
    """
    out: list[tuple[str, tuple[int, int]]] = []
    start = 0
    for raw in completion.split("\n"):
        end = start + len(raw)
        line = raw.rstrip("\r")
        if line.strip():
            out.append((line, (start, start + len(line))))
            if line.lstrip().startswith(ANSWER_MARKER):
                break
        start = end + 1
    return out


class TaskFamily(abc.ABC):
    """A family of generated problems with a step-level checker.

    Subclasses set ``name`` and ``levels``, and implement ``_make_one`` (one
    problem from a ``random.Random``), ``_initial_state`` and ``_advance``
    (the step rule). ``generate`` and ``check`` are shared.
    """

    name: str
    levels: tuple[int, ...]
    answer_probe: str = "#### "
    """The text that introduces the answer, for ``acpo`` credit probes (§3.2)."""

    def _require_level(self, level: int) -> None:
        if level not in self.levels:
            raise ValueError(
                f"task family {self.name!r} has no level {level!r}; valid levels: {list(self.levels)}"
            )

    def generate(self, n: int, level: int, seed: int) -> list[Problem]:
        """``n`` distinct problems at ``level``, the same list for the same seed."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        stream = self.stream(level, seed)
        return [next(stream) for _ in range(n)]

    def stream(self, level: int, seed: int) -> Iterator[Problem]:
        """Distinct problems at ``level``, deterministic for ``seed``, on demand.

        The generator is ``random.Random`` seeded with a string naming the
        family, level and seed (string seeds hash the same on every run and
        platform), so each (family, level, seed) has its own stream. Raises
        ValueError once no new problem turns up (a small level's space is
        exhausted) instead of looping forever.
        """
        self._require_level(level)
        rng = random.Random(f"{self.name}-L{level}-s{seed}")
        seen: set[str] = set()
        misses = 0
        while True:
            problem_text, solution_steps, answer = self._make_one(rng, level)
            if problem_text in seen:
                misses += 1
                if misses > 5000:
                    raise ValueError(
                        f"{self.name} level {level} ran out of distinct problems after {len(seen)}; "
                        "ask for fewer or use another level"
                    )
                continue
            misses = 0
            seen.add(problem_text)
            yield Problem(
                id=f"{self.name}-L{level}-s{seed}-{len(seen) - 1}",
                family=self.name,
                level=level,
                prompt=format_prompt(problem_text),
                question=self.question(problem_text),
                answer=str(answer),
                solution="".join(f"{s}\n" for s in solution_steps) + f"{ANSWER_MARKER} {answer}",
            )

    def question(self, problem_text: str) -> str:
        """The problem as a chat model is asked it (inside :class:`acpo.prompts.PromptStyle`'s instruction)."""
        return problem_text

    def check(self, problem: Problem, completion: str) -> CheckResult:
        """Parse ``completion`` and locate its first wrong step (module docstring)."""
        lines = split_lines(completion)
        steps = [text for text, _ in lines]
        spans = [span for _, span in lines]
        answer = extract_final_answer(completion)
        answer_correct = answers_match(answer, problem.answer)
        state = self._initial_state(problem)
        first_error: int | None = None
        for index, text in enumerate(steps):
            if text.lstrip().startswith(ANSWER_MARKER):
                if not answer_correct:
                    first_error = index
                break
            state = self._advance(state, text.replace(" ", "").replace("\t", ""))
            if state is None:
                first_error = index
                break
        else:
            first_error = len(steps)  # no answer line: the missing answer is the error
        return CheckResult(first_error, answer_correct, steps, spans, answer)

    @abc.abstractmethod
    def _make_one(self, rng: Any, level: int) -> tuple[str, list[str], int]:
        """Return (problem text without ``Q: ``, reference step lines, answer)."""

    @abc.abstractmethod
    def _initial_state(self, problem: Problem) -> Any:
        """The state the first step is judged against, rebuilt from the prompt."""

    @abc.abstractmethod
    def _advance(self, state: Any, step: str) -> Any | None:
        """The state after a right ``step`` (spaces removed), or None if it is wrong."""
