"""Reading the final answer of a completion, and deciding whether two answers agree.

One extractor for everything that grades text (rewards, task checkers, the
dataset loader, the app), in a documented order:

1. a ``#### x`` line (the synthetic tasks and GSM8K);
2. the last ``\\boxed{x}`` (MATH, and what TRL's math recipes ask for);
3. "the (final) answer is x";
4. the last number in the text.

Every function here is linear in the length of the text (no backtracking
regular expression over unbounded input), so a hostile 100 KB completion
costs milliseconds, not minutes.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

ANSWER_MARKER = "####"
"""Marks the final answer line of a completion (GSM8K convention)."""

MATH_VERIFY_TIMEOUT_S = 5

_NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS_RE = re.compile(r"\b(?:final\s+)?answer\s*(?:is|:|=)\s*", re.IGNORECASE)
_NUMBER_FULL_RE = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)(/[-+]?\d+)?")


def extract_final_answer(text: str) -> str | None:
    """The text after the first ``####`` line marker, stripped; None if there is none.

    >>> extract_final_answer("3*4=12\\n#### 12")
    '12'
    >>> extract_final_answer("no marker") is None
    True
    """
    for line in text.split("\n"):
        body = line.lstrip(" \t")
        if body.startswith(ANSWER_MARKER):
            return body[len(ANSWER_MARKER) :].strip(" \t\r")
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if none.

    >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip() or None
        i += 1
    return None


def _answer_is(text: str) -> str | None:
    """The number (or short phrase) after the last "the (final) answer is"."""
    found = None
    for m in _ANSWER_IS_RE.finditer(text):
        found = m.end()
    if found is None:
        return None
    rest = text[found : found + 200].split("\n", 1)[0]
    number = _NUMBER_RE.search(rest)
    if number is not None:
        return _clean_number(number.group(0))
    phrase = rest.strip().rstrip(".").strip()
    return phrase or None


def _clean_number(text: str) -> str:
    return text.replace("$", "").replace(",", "")


def last_number(text: str) -> str | None:
    """The last number in ``text`` (``$`` and thousands separators dropped).

    >>> last_number("She pays $1,200 in total.")
    '1200'
    """
    found = None
    for m in _NUMBER_RE.finditer(text):
        found = m.group(0)
    return None if found is None else _clean_number(found)


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: ``####``, else last ``\\boxed{}``, else "the answer is", else last number.

    >>> [extract_answer(t) for t in ["2+2=4\\n#### 4", "so \\\\boxed{18}.", "The answer is $18.", "3+4=7"]]
    ['4', '18', '18', '7']
    """
    for rule in (extract_final_answer, last_boxed, _answer_is, last_number):
        answer = rule(text)
        if answer:
            return answer
    return None


def parse_number(text: str | None) -> Fraction | None:
    """Parse an integer, decimal or ``a/b`` fraction (commas and ``$`` allowed).

    Returns None for anything else, so callers can treat unparseable answers
    as wrong instead of raising.

    >>> parse_number("-3"), parse_number("1,000"), parse_number("0.5") == parse_number("1/2")
    (Fraction(-3, 1), Fraction(1000, 1), True)
    """
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    if len(cleaned) > 100 or not _NUMBER_FULL_RE.fullmatch(cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(predicted: str | None, gold: str) -> bool:
    """Numeric equality when both parse as numbers, else exact string match."""
    if predicted is None:
        return False
    p, g = parse_number(predicted), parse_number(gold)
    if p is not None and g is not None:
        return p == g
    return predicted.strip() == gold.strip()


def math_verify_timeout() -> int | None:
    # math_verify uses signal.alarm(), which only works in the main thread;
    # elsewhere (a Gradio worker, a rollout thread) run without its timeout.
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def answers_equivalent(predicted: str | None, gold: str) -> bool:
    """``answers_match``, then math-verify's symbolic equivalence (``\\frac{1}{2}`` = ``0.5``) where installed.

    >>> answers_equivalent("18.0", "18"), answers_equivalent("\\\\frac{1}{2}", "0.5"), answers_equivalent(None, "1")
    (True, True, False)
    """
    if predicted is None:
        return False
    if answers_match(predicted, gold):
        return True
    if parse_number(predicted) is not None and parse_number(gold) is not None:
        return False  # two numbers that differ: nothing symbolic to add
    try:
        from math_verify import verify
    except ImportError:
        return False
    # both are single extracted answers, so both are read as a gold answer is
    gold_parsed, answer_parsed = math_parse(gold, gold=True), math_parse(predicted, gold=True)
    timeout = math_verify_timeout()
    return bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def math_parse(text: str, *, gold: bool) -> list:
    """math-verify's parse, reading bare LaTeX gold answers as LaTeX.

    A gold answer from a dataset is often bare LaTeX (``3\\sqrt{2}``) that
    math-verify reads as the number ``3`` unless it sits inside ``$...$``;
    wrapping it is safe because the gold is known to be a single answer. A
    completion whose only answer is a ``#### x`` line is parsed from that line.
    """
    from math_verify import parse

    timeout = math_verify_timeout()
    if gold and "$" not in text and "\\boxed" not in text and text.strip():
        parsed = parse(f"${text.strip()}$", parsing_timeout=timeout)
        if parsed:
            return parsed
    parsed = parse(text, parsing_timeout=timeout)
    if not parsed and not gold:
        hashed = extract_final_answer(text)
        if hashed:
            parsed = parse(hashed, parsing_timeout=timeout)
    return parsed
