"""Reading the final answer of a completion, and deciding whether two answers agree.

One extractor for everything that grades text (rewards, task checkers, the
dataset loader, the app), in a documented order:

1. a ``#### x`` line (the synthetic tasks and GSM8K);
2. the last ``\\boxed{x}`` (MATH, and what TRL's math recipes ask for);
3. "the (final) answer is x";
4. the last number in the text.

Every extractor here is linear in the length of the text (no backtracking
regular expression over unbounded input), so a hostile 100 KB completion
costs milliseconds, not minutes; math-verify, which is not, runs on answers
of at most ``MAX_ANSWER_CHARS`` characters and under a timeout in any thread
(:func:`symbolic_verdict`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

ANSWER_MARKER = "####"
"""Marks the final answer line of a completion (GSM8K convention)."""

MATH_VERIFY_TIMEOUT_S = 5
MAX_ANSWER_CHARS = 200
"""Longest answer (or gold answer) compared symbolically; a longer one is not an answer (and is never parsed:
math-verify's parse grows with the square of the length)."""

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
    as wrong instead of raising. A typeset minus (U+2212, as chat models and
    LaTeX-rendered datasets write it) reads as ``-``.

    >>> parse_number("-3"), parse_number("1,000"), parse_number("0.5") == parse_number("1/2")
    (Fraction(-3, 1), Fraction(1000, 1), True)
    """
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").replace("\u2212", "-").rstrip(".")
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
    # elsewhere its own timeout is off, and :func:`symbolic_verdict` runs it in a worker process instead.
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def answers_equivalent(predicted: str | None, gold: str) -> bool:
    """``answers_match``, then math-verify's symbolic equivalence (``\\frac{1}{2}`` = ``0.5``) where installed.

    An answer (or gold) longer than :data:`MAX_ANSWER_CHARS` is no answer: not equivalent, never parsed.

    >>> answers_equivalent("18.0", "18"), answers_equivalent("\\\\frac{1}{2}", "0.5"), answers_equivalent(None, "1")
    (True, True, False)
    """
    if predicted is None or len(predicted) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    if answers_match(predicted, gold):
        return True
    if parse_number(predicted) is not None and parse_number(gold) is not None:
        return False  # two numbers that differ: nothing symbolic to add
    # both are single extracted answers, so both are read as a gold answer is
    return symbolic_verdict(gold, predicted, completion=False)[1]


def symbolic_verdict(gold: str, text: str, *, completion: bool) -> tuple[bool, bool]:
    """``(gold parsed, equivalent)``: math-verify's reading of ``gold`` and of ``text`` (a whole completion when
    ``completion``, else one extracted answer), and ``verify(gold, text)``; ``(False, False)`` without math-verify.

    Bounded in every thread: in the main thread by math-verify's own timeout (``signal.alarm``); in any other
    thread (a Gradio worker, a rollout thread), where that timeout is off, in a worker process that is killed
    after :data:`MATH_VERIFY_TIMEOUT_S` seconds (then the verdict is ``(True, False)``: not equivalent).
    """
    if importlib.util.find_spec("math_verify") is None:
        return False, False
    if threading.current_thread() is threading.main_thread() or os.name != "posix":
        return _verdict(gold, text, completion)
    return _WORKERS.ask([gold, text, completion], MATH_VERIFY_TIMEOUT_S, default=(True, False))


def _verdict(gold: str, text: str, completion: bool) -> tuple[bool, bool]:
    from math_verify import verify

    gold_parsed = math_parse(gold, gold=True)
    if not gold_parsed:
        return False, False
    parsed = math_parse(text, gold=not completion)
    return True, bool(parsed and verify(gold_parsed, parsed, timeout_seconds=math_verify_timeout()))


class _WorkerPool:
    """Child Python processes that run :func:`_verdict` one request at a time; one that overruns is killed.

    Plain processes talking JSON lines over pipes (not ``multiprocessing``, which would re-import the
    caller's ``__main__``, the whole app, in each child). At most ``size`` at once; more callers wait.
    """

    def __init__(self, size: int = 2):
        self.size, self.started = size, 0
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        """A new worker, once it has imported math-verify (so its start is not counted against a request)."""
        root = str(Path(__file__).resolve().parent.parent)
        code = f"import sys; sys.path.insert(0, {root!r}); from acpo.answers import _serve; _serve()"
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1)
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        if not ready or proc.stdout.readline().strip() != "ready":
            proc.kill()
            proc.wait()
            raise OSError("the math-verify worker process did not start")
        return proc

    def close(self) -> None:
        """End the idle workers (at exit; a busy one ends when its pipe closes)."""
        while True:
            try:
                proc = self.idle.get_nowait()
            except queue.Empty:
                return
            proc.stdin.close()
            proc.wait()
            proc.stdout.close()

    def _acquire(self) -> subprocess.Popen:
        """An idle worker, else a new one while fewer than ``size`` run, else the next one freed."""
        while True:
            try:
                return self.idle.get_nowait()
            except queue.Empty:
                pass
            with self.lock:
                fresh = self.started < self.size
                self.started += fresh
            if fresh:
                try:
                    return self._start()
                except Exception:
                    with self.lock:
                        self.started -= 1
                    raise
            try:
                return self.idle.get(timeout=0.1)
            except queue.Empty:
                continue

    def ask(self, request: list, timeout: float, default):
        """The worker's answer to ``request``, or ``default`` when it takes over ``timeout`` seconds (it is killed)."""
        proc = self._acquire()
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise TimeoutError
        except (TimeoutError, OSError, ValueError):
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
            with self.lock:
                self.started -= 1
            return default
        self.idle.put(proc)
        return tuple(json.loads(line))


_WORKERS = _WorkerPool()
atexit.register(_WORKERS.close)


def start_math_workers() -> None:
    """Start the math-verify worker processes now (a server calls this at launch), so that no request
    waits for one to start (importing math-verify takes seconds)."""
    if importlib.util.find_spec("math_verify") is not None and os.name == "posix":
        for proc in [_WORKERS._acquire() for _ in range(_WORKERS.size)]:
            _WORKERS.idle.put(proc)


def _serve() -> None:
    """A worker process's loop: one JSON request per line in, one verdict per line out."""
    import math_verify  # noqa: F401 (imported before saying ready)

    print("ready", flush=True)
    for line in sys.stdin:
        gold, text, completion = json.loads(line)
        try:
            verdict = _verdict(gold, text, completion)
        except Exception:  # noqa: BLE001 (math-verify's own errors, a timeout: not equivalent)
            verdict = (True, False)
        sys.stdout.write(json.dumps(verdict) + "\n")
        sys.stdout.flush()


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
