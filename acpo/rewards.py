"""Verifiable rewards with TRL's signature: ``fn(prompts, completions, **kwargs) -> list[float | None]``.

The trainer calls every reward function by keyword, as TRL does:
``fn(prompts=..., completions=..., completion_ids=..., answer=..., <column>=...)``
with the dataset row's columns; gold answers arrive as ``answer=[...]``. ``None``
means "no reward for this row": as in TRL it is left out of its group's baseline
and its advantage is 0 (used when the gold answer itself cannot be parsed). Any
importable ``module:function`` with that signature works (:func:`get_reward`).

* ``answer``: the answer a real model writes (``####``, ``\\boxed{}``, "the answer
  is", else the last number: :func:`acpo.answers.extract_answer`), equal to the
  gold answer numerically or, through math-verify, symbolically;
* ``hash_answer``: exact / numeric match of the text after ``####`` only (the
  synthetic tasks, which teach that format);
* ``math_verify``: symbolic equivalence with Hugging Face math-verify
  (``\\boxed{}`` or ``$...$`` answers: ``\\frac{1}{2}``, ``0.5`` and ``1/2`` agree);
* ``format``: the fixed step format (step lines, then a final ``#### answer`` line).

All answer parsing goes through :mod:`acpo.answers`; math parsing through
:func:`acpo.answers.symbolic_verdict`. One helper each, not copies.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from acpo.answers import (
    ANSWER_MARKER, answers_equivalent, answers_match, extract_answer, extract_final_answer, symbolic_verdict,
)

Completion = str | list[dict[str, Any]]
RewardFn = Callable[..., list[float | None]]



def completion_text(completion: Completion) -> str:
    """The text of a completion: a plain string, or TRL's conversational form.

    Conversational completions are lists of ``{"role", "content"}`` messages;
    the assistant's contents are joined.
    """
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, (list, tuple)) or not all(isinstance(m, dict) for m in completion):
        raise ValueError(f"a completion is {type(completion).__name__} {completion!r:.60}; completions are strings "
                         "or lists of chat messages ({'role': 'assistant', 'content': '...'})")
    parts = [m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant"]
    if not all(isinstance(p, str) for p in parts):
        raise ValueError(f"a chat completion has a message whose content is not text: {completion!r:.80}")
    return "".join(parts)


def _gold_column(kwargs: dict[str, Any], n: int, fn: str) -> Sequence[str]:
    gold = kwargs.get("answer", kwargs.get("solution"))
    if gold is None:
        raise ValueError(f"{fn} needs the gold answers as a keyword column: {fn}(prompts, completions, answer=[...])")
    if len(gold) != n:
        raise ValueError(f"{fn} got {n} completions but {len(gold)} gold answers; pass one answer per completion")
    return gold


def hash_answer_reward(prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any) -> list[float | None]:
    """1.0 when the text after ``####`` equals the gold answer, numerically if both are numbers.

    Args:
        prompts: the prompts (unused; part of the TRL signature).
        completions: completion strings (or TRL conversational messages).
        answer: gold answers, one per completion (keyword column).

    Example:
        >>> hash_answer_reward(["Q: 2+2=?\\n"] * 3, ["2+2=4\\n#### 4", "#### 4.0", "2+2=5\\n#### 5"], answer=["4"] * 3)
        [1.0, 1.0, 0.0]
    """
    gold = _gold_column(kwargs, len(completions), "hash_answer_reward")
    return [float(answers_match(extract_final_answer(completion_text(c)), str(g))) for c, g in zip(completions, gold)]


def answer_reward(prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any) -> list[float | None]:
    """1.0 when the completion's final answer (:func:`acpo.answers.extract_answer`) equals the gold answer.

    Numbers compare by value (``$1,200`` = ``1200.0``); other answers through
    math-verify where it is installed.

    Args:
        prompts: the prompts (unused; part of the TRL signature).
        completions: completion strings (or TRL conversational messages).
        answer: gold answers, one per completion (keyword column).

    Example:
        >>> answer_reward(None, ["#### 18", "so \\boxed{18}", "The answer is $18.", "12+7=19"], answer=["18"] * 4)
        [1.0, 1.0, 1.0, 0.0]
    """
    gold = _gold_column(kwargs, len(completions), "answer_reward")
    return [float(answers_equivalent(extract_answer(completion_text(c)), str(g))) for c, g in zip(completions, gold)]


def row_reward(completion: str, answer: str | None = None, check=None,
               given: float | None = None) -> tuple[float | None, str]:
    """(reward, where it came from) for one completion: the ``given`` reward, else a step checker's answer
    verdict (``check.answer_correct``), else the final answer against ``answer``, else (None, "unknown").

    The app's Explore, Compare and Batch tabs all decide a row's reward this way.

    >>> row_reward("2+12=14\\n#### 14", "14")
    (1.0, 'answer match')
    >>> row_reward("#### 14", "14", given=0.0)
    (0.0, 'given')
    """
    if given is not None:
        return float(given), "given"
    if check is not None:
        return float(check.answer_correct), "checker"
    if answer not in (None, ""):
        return float(answers_equivalent(extract_answer(completion), str(answer))), "answer match"
    return None, "unknown"


def format_reward(prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any) -> list[float | None]:
    """1.0 when a completion is step lines, one per line, then a final ``#### answer`` line.

    Args:
        prompts: the prompts (unused; part of the TRL signature).
        completions: completion strings (or TRL conversational messages).

    Example:
        >>> format_reward(None, ["3*4=12\\n#### 12", "#### 12", "3*4=12\\n", "3*4=12\\n#### 12\\nmore"])
        [1.0, 0.0, 0.0, 0.0]
    """
    return [float(step_format(completion_text(c))) for c in completions]


def step_format(text: str) -> bool:
    """Whether ``text`` is one or more lines that each hold a non-space character, then a ``#### answer``
    line, then only whitespace. One pass over the lines: linear in the length of the text."""
    lines = text.rstrip().split("\n")
    final = lines[-1].lstrip(" \t")
    if len(lines) < 2 or not final.startswith(ANSWER_MARKER):
        return False
    answer = final[len(ANSWER_MARKER):].lstrip(" \t")
    return bool(answer) and not answer[0].isspace() and all(line.strip() for line in lines[:-1])


def math_verify_reward(prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any) -> list[float | None]:
    """1.0 when math-verify finds the completion's answer equivalent to the gold answer.

    The gold answer is parsed first and ``verify(gold, answer)`` is called in
    that order (math-verify's comparison is not symmetric). Rows whose gold
    answer math-verify cannot parse get ``None`` and one warning counts them.

    Args:
        prompts: the prompts (unused; part of the TRL signature).
        completions: completion strings (or TRL conversational messages),
            answers in ``\\boxed{}`` or ``$...$``.
        answer: gold answers (LaTeX, with or without ``$``), one per completion.

    Example:
        >>> math_verify_reward(None, ["so \\\\boxed{0.5}", "\\\\boxed{1/2}", "\\\\boxed{2}"], answer=["\\\\frac{1}{2}"] * 3)
        [1.0, 1.0, 0.0]
    """
    import math_verify  # noqa: F401 (this reward needs it: an ImportError names the package)

    gold_column = _gold_column(kwargs, len(completions), "math_verify_reward")
    rewards: list[float | None] = []
    unparseable = 0
    for completion, gold_text in zip(completions, gold_column):
        gold_parsed, equivalent = symbolic_verdict(str(gold_text), completion_text(completion), completion=True)
        if not gold_parsed:
            unparseable += 1
            rewards.append(None)
            continue
        rewards.append(float(equivalent))
    if unparseable:
        warnings.warn(
            f"math_verify_reward: {unparseable} of {len(completions)} gold answers could not be parsed; "
            "their rewards are None (skipped). Check the answer column.",
            stacklevel=2,
        )
    return rewards


REWARDS: dict[str, RewardFn] = {
    "answer": answer_reward,
    "hash_answer": hash_answer_reward,
    "math_verify": math_verify_reward,
    "format": format_reward,
}


def call_reward(fn: RewardFn, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any
                ) -> list[float | None]:
    """``fn(prompts=..., completions=..., **columns)`` as TRL calls it, its result checked: one finite number
    (or None) per completion. ValueError naming the function and what is wrong; its own errors too.

    >>> call_reward(format_reward, ["Q"], ["1+1=2\\n#### 2"])
    [1.0]
    >>> call_reward(lambda prompts, completions, **kw: 1.0, ["Q"], ["2"])
    Traceback (most recent call last):
    ...
    ValueError: reward function '<lambda>' returned float 1.0; it must return a list with one reward (a number, or None for none) per completion
    """
    name = reward_name(fn)
    try:
        values = fn(prompts=prompts, completions=completions, **columns)
    except TypeError as err:
        if "keyword argument" in str(err):
            raise ValueError(f"reward function {name!r} does not take the keywords it is called with ({err}); "
                             "define it as def f(prompts, completions, **kwargs), as TRL calls it") from None
        raise ValueError(f"reward function {name!r} failed: TypeError: {err}") from None
    except Exception as err:  # noqa: BLE001 (a user's function can raise anything; say whose it was)
        raise ValueError(f"reward function {name!r} failed: {type(err).__name__}: {err}") from None
    shape = ("; it must return a list with one reward (a number, or None for none) per completion")
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence) and not hasattr(values, "tolist"):
        raise ValueError(f"reward function {name!r} returned {type(values).__name__} {values!r:.60}{shape}")
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    if len(values) != len(completions):
        raise ValueError(f"reward function {name!r} returned {len(values)} rewards for {len(completions)} "
                         f"completions{shape}")
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            raise ValueError(f"reward function {name!r} returned {v!r:.60} for completion {i}{shape}")
        f = float(v)
        if not math.isfinite(f) or abs(f) > MAX_REWARD:
            raise ValueError(f"reward function {name!r} returned {v!r} for completion {i}; rewards must be finite "
                             f"numbers of at most {MAX_REWARD:g} in size (None for no reward)")
        out.append(f)
    return out


MAX_REWARD = 1e6
"""Largest reward in size: beyond it a group's variance overflows float32 (1e300 logged as Infinity)."""


def check_reward_function(spec: str, prompt: str = "Q: 2+3=?\n", completion: str = "2+3=5\n#### 5",
                          answer: str = "5", **columns: Any) -> None:
    """Call the reward function ``spec`` names on one row (the trainer's keywords), before a run starts;
    ValueError naming it when it cannot be imported, fails, or returns no list of one reward per completion."""
    call_reward(get_reward(spec), [prompt], [completion], completion_ids=[[0]], answer=[answer], **columns)


def get_reward(spec: str) -> RewardFn:
    """The reward function ``spec`` names: a registered one (:data:`REWARDS`) or any importable ``module:function``.

    The module is looked up on ``sys.path`` and then in the current folder, so a
    ``my_rewards.py`` beside the command works. ValueError names what is wrong.

    >>> get_reward("format") is format_reward
    True
    >>> get_reward("acpo.rewards:answer_reward") is answer_reward
    True
    """
    if spec in REWARDS:
        return REWARDS[spec]
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ValueError(f"unknown reward {spec!r}; valid: auto, {', '.join(sorted(REWARDS))}, or module:function")
    try:
        module = _import_from_here(module_name)
    except ImportError as err:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r} ({err})") from None
    except SyntaxError as err:
        raise ValueError(f"reward {spec!r}: module {module_name!r} has a syntax error ({err.msg}, "
                         f"{err.filename} line {err.lineno})") from None
    except Exception as err:  # noqa: BLE001 (importing runs the module's code)
        raise ValueError(f"reward {spec!r}: importing module {module_name!r} failed: "
                         f"{type(err).__name__}: {err}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"reward {spec!r}: module {module_name!r} has no function {attr!r}")
    return fn


def _import_from_here(module_name: str):
    """``importlib.import_module``, with the current folder on the path as ``python -m`` would have it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise
    sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(os.getcwd())


def reward_name(fn: RewardFn) -> str:
    """The name TRL logs a reward function under (``rewards/<name>/mean``): its ``__name__``."""
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or type(fn).__name__
