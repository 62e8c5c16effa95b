"""``verified_steps``: blame the first step whose arithmetic is false or that computes with a number from nowhere.

Two checks that need no model, then a model signal for the rest:

1. **False computation**: the free-form checker (``acpo.tasks.freeform.line_computations``) evaluates every
   ``expr = value`` the step states, exactly; one false equation makes the step ``wrong``.
2. **Unsupported operand**: a number the step computes *with* (left of an ``=``) that appears neither in the
   problem (digits or number words) nor anywhere earlier in the solution, nor is a common constant (0-12, 24,
   30, 52, 60, 100, 365, 1000), nor a percentage rewritten (25% as 0.25, 0.75, 1.25 or 75), was copied wrong or
   made up: the step is ``unsupported``. This is what "a result used consistently later"
   comes to: a later step that uses 15 where an earlier one found 16 is caught here.

Credit = a level per verdict (``wrong`` -4, ``unsupported`` -2, otherwise 0) plus the scoring model's
``result_logprob`` squashed into (-1, 0] (lp / (1 + |lp|)), so the model orders steps only within a level. A
true equation does not clear a step: a step can compute correctly what it should not have computed, and there
only the model signal can speak. Lowest = most suspicious. Cost: the text checks (microseconds per step) and
no forward beyond the scoring one.
"""

from __future__ import annotations

import re

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register
from acpo.credit.result_logprob import result_logprobs
from acpo.tasks.freeform import WRONG, line_computations

WRONG_LEVEL, UNSUPPORTED_LEVEL = -4.0, -2.0
COMMON_CONSTANTS = frozenset([*range(13), 24, 30, 52, 60, 100, 365, 1000])
"""Numbers a solution may bring in without the problem stating them (units, percent, a week, a year...)."""
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
         "seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
NUMBER_WORDS = {**{w: float(i) for i, w in enumerate(_UNITS)}, **{w: float(v) for w, v in _TENS.items()},
                "hundred": 100.0, "thousand": 1000.0, "dozen": 12.0, "half": 0.5, "quarter": 0.25, "third": 1 / 3}
_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)


def numbers_in(text: str, words: bool = False) -> set[float]:
    """The numbers written in ``text`` (``1,200`` is 1200); with ``words`` also number words (``twenty``)."""
    out = set()
    for m in _NUMBER.finditer(text):
        try:
            out.add(float(m.group().replace(",", "")))
        except ValueError:
            pass
    if words:
        out |= {NUMBER_WORDS[w.lower()] for w in _WORD.findall(text)}
    return out


def stated(numbers: set[float]) -> set[float]:
    """The numbers and what a solution may rewrite them as: a percentage as a fraction and its complement
    (25 -> 0.25, 0.75, 1.25; 100 - 25 = 75), cents as dollars."""
    out = set(numbers)
    for x in numbers:
        out |= {x / 100, 1 - x / 100, 1 + x / 100, 100 - x}
    return {round(x, 9) for x in out}


def step_verdicts(problem: str, steps: list[str]) -> list[str]:
    """``wrong`` / ``unsupported`` / ``ok`` for each step text (module docstring), in order."""
    known = stated(numbers_in(problem, words=True) | {float(c) for c in COMMON_CONSTANTS})
    verdicts = []
    for text in steps:
        verdict = "ok"
        for line in text.split("\n"):
            computations = line_computations(line)
            if any(c.status == WRONG for c in computations):
                verdict = "wrong"
                break
            for c in computations:
                if verdict == "ok" and {round(x, 9) for x in numbers_in(c.left)} - known:
                    verdict = "unsupported"
                known |= stated(numbers_in(c.right))  # a chain's running value is known to the next link
            known |= stated(numbers_in(line))
        verdicts.append(verdict)
    return verdicts


def squash(logprob: torch.Tensor) -> torch.Tensor:
    """A log-prob (<= 0) into (-1, 0], order kept."""
    return logprob / (1 + logprob.abs())


@register("verified_steps")
class VerifiedStepsCredit(CreditMethod):
    signed, unit = False, "level + model"
    LEVELS = {"wrong": WRONG_LEVEL, "unsupported": UNSUPPORTED_LEVEL, "ok": 0.0}

    needs_policy = True  # the tokenizer: the problem's text, whose numbers count as stated
    needs_texts = True  # the model signal finds the stated results in the completion's text
    meaning = ("-4 for a false equation, -2 for a number from nowhere, 0 otherwise, plus the model's log-prob of "
               "the stated results squashed into (-1, 0]: darker = more suspicious")

    def __init__(self, model_fallback: bool = True):
        self.model_fallback = model_fallback  # False: the checks alone (ties broken by position)
        self.needs_stats = self.needs_texts = bool(model_fallback)  # the checks alone read only the steps' text

    def credits(self, batch: CreditBatch) -> CreditResult:
        fallback = result_logprobs(batch) if self.model_fallback else None
        out, flags = [], []
        for i, steps in enumerate(batch.steps):
            problem = ""
            if batch.tokenizer is not None:
                n = int(batch.prompt_mask[i].sum())
                problem = batch.tokenizer.decode(batch.prompt_ids[i, -n:].tolist(), skip_special_tokens=True) if n else ""
            verdicts = step_verdicts(problem, [s.text for s in steps])
            level = torch.tensor([self.LEVELS[v] for v in verdicts])
            model = squash(fallback[i].float()) if fallback is not None else torch.zeros(len(steps))
            out.append(level + model)
            flags.append(level)
        return CreditResult(out, {"verified_level": flags})
