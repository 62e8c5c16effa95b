"""A step checker for free-form text: the first line that states a false computation.

A real model writes its working in prose ("So she has 3 * 4 = 12 apples."),
not in a task family's fixed format, so no family's step rule applies. What
can still be checked is arithmetic: every line that states ``expr = value``
(or a chain ``a = b = c``, or a GSM8K calculator annotation ``<<48/2=24>>``)
is evaluated exactly, with fractions, by :func:`safe_eval` (an AST walker over
numbers and ``+ - * / // % **``, never ``eval``, bounded in length and size).

Each parsed line (``acpo.tasks.base.split_lines``: non-blank lines up to and
including the first ``####`` line) gets one status:

* ``right``: it holds at least one checkable computation and all of them hold
  (a stated decimal may be rounded: ``10/3 = 3.33`` holds; a calculator's float
  printed in full holds within a relative ``FLOAT_TOLERANCE`` of 1e-12:
  ``<<11/18*162=99.00000000000001>>`` holds, ``<<11/18*162=99.1>>`` does not);
* ``wrong``: one of its computations is false;
* ``uncheckable``: it holds no computation this checker can read (prose,
  algebra with variables, units in the middle of an expression, a division
  by zero, a huge power, a result off by exactly the factor of a scale word
  the line uses: ``$1 / 2 = 50 cents``, ``5 thousand ... 5 * 3 = $15,000``).
  It is never guessed right or wrong.

The verdict (:class:`FreeformCheck`, a :class:`~acpo.tasks.base.CheckResult`)
follows the shared convention with one difference: ``first_error`` is the
first ``wrong`` line; when no line is wrong, ``first_error`` is None even if
the answer is wrong, because a wrong answer reached through true arithmetic
(a misread problem, a wrong operation) has no line this checker can blame.
``acpo.verdict.localisable`` is False for such a trace, so it is counted,
not labelled. The checker tests each line on its own: a line that uses a
wrong number from an earlier line but computes with it correctly is right.
A last line that stops the text right after a digit may have been cut short
by a token limit, so it is not judged.

What counts as a computation in prose is read conservatively, so that prose
with numbers is never taken for a false equation: the expression must stand
on its own (``half of 48 = 24`` and ``2x + 3 = 7`` are not read as ``48 = 24``
or ``+ 3 = 7``); unit words between a number and an operator are dropped
(``3 days * 4 hours = 12 hours`` reads ``3 * 4 = 12``); a single letter after
a number is a variable, not a unit; ``$``, ``€``, ``£``, thousands separators,
``x``/``×``/``·`` between numbers, ``÷``, ``−``, ``^``, ``N%`` (N/100) and a
little LaTeX (``\\times``, ``\\cdot``, ``\\div``, ``\\frac{a}{b}``) are read as
arithmetic.

>>> check = check_freeform("48/2 = 24 clips in May.\\nSo 48 + 24 = 73 in all.\\n#### 73", "72")
>>> check.line_status, check.first_error, check.answer_correct
(('right', 'wrong', 'uncheckable'), 1, False)
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

from acpo.answers import ANSWER_MARKER, answers_equivalent, extract_answer
from acpo.tasks.base import CheckResult, split_lines

RIGHT, WRONG, UNCHECKABLE = "right", "wrong", "uncheckable"

MAX_EXPR_CHARS = 200
"""Longest expression ``safe_eval`` reads (after normalising); longer ones are uncheckable."""
MAX_WRITTEN_CHARS = 4 * MAX_EXPR_CHARS
"""Longest text ``safe_eval`` normalises at all (LaTeX and currency shrink when normalised): checked first,
so no pattern ever runs over more than this many characters."""
MAX_BITS = 4096
"""Largest numerator or denominator (in bits, about 1,200 digits) of any value met while evaluating."""


class Uncheckable(ValueError):
    """An expression ``safe_eval`` cannot evaluate exactly and cheaply; the message says why."""


# --- notation -> Python arithmetic ------------------------------------------------------------

_LATEX = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])"), " * "),
    (re.compile(r"\\div(?![A-Za-z])"), " / "),
    (re.compile(r"\\left|\\right"), ""),
    (re.compile(r"\\[()\[\],;!]|\\quad|\\qquad"), " "),
    (re.compile(r"\\([%$])"), r"\1"),
]
_SYMBOLS = str.maketrans({"×": "*", "✕": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "−": "-",
                          "\u2009": " ", "$": None, "€": None, "£": None, "¥": None})
_TIMES_X = re.compile(r"(?<=[\d)%])[ \t]*[xX][ \t]*(?=[\d(.]|[$€£¥][\d(.])")
_BOLD = re.compile(r"\*\*")
_PERCENT_WORD = re.compile(r"(?<=\d)\s*per\s?cent\b", re.IGNORECASE)


def _strip_bold(text: str) -> str:
    """Drop markdown ``**`` where it is not a power (a power sits between a number or ``)`` and a number or ``(``)."""
    out, last = [], 0
    for m in _BOLD.finditer(text):
        b, a = m.start() - 1, m.end()
        while b >= 0 and text[b].isspace():
            b -= 1
        while a < len(text) and text[a].isspace():
            a += 1
        before, after = text[b] if b >= 0 else "", text[a] if a < len(text) else ""
        if not ((before.isdigit() or before == ")") and (after.isdigit() or after in ("(", "-"))):
            out.append(text[last : m.start()])
            last = m.end()
    return "".join(out) + text[last:]


def normalise_notation(text: str) -> str:
    """Written arithmetic as Python arithmetic where it is unambiguous (module docstring): LaTeX
    operators, ``×``/``x`` between numbers, ``÷``, ``−``, currency symbols, markdown bold."""
    for pattern, repl in _LATEX:
        text = pattern.sub(repl, text)
    text = _strip_bold(text.translate(_SYMBOLS)).replace(" – ", " - ")  # an en dash between spaces: minus
    text = _TIMES_X.sub(" * ", text)
    return _PERCENT_WORD.sub("%", text)


_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?!\d|,\d)")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)%(?!\s*[\d(.])")
_LITERAL = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def _python_arithmetic(expr: str) -> str:
    expr = normalise_notation(expr).strip().rstrip(".").strip()
    expr = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), expr)
    expr = _PERCENT.sub(r"(\1/100)", expr)
    expr = _LEADING_ZEROS.sub("", expr)
    return expr.replace("^", "**")


def safe_eval(expr: str) -> Fraction:
    """The exact value of an arithmetic expression, or :class:`Uncheckable` saying why not.

    Reads numbers (``$1,200``, ``0.5``, ``50%``), ``+ - * / // % **`` (also
    ``x``/``×``/``·``, ``÷``, ``^``), unary minus and parentheses; anything
    else (names, calls, commas, ``=``) is refused. Bounded: at most
    ``MAX_WRITTEN_CHARS`` characters read and ``MAX_EXPR_CHARS`` once normalised, no value over ``MAX_BITS`` bits (a power
    is refused before it is computed), integer exponents only; division by
    zero is refused too.

    >>> safe_eval("$1,200 × 3"), safe_eval("48/2"), safe_eval("2^10 - 24")
    (Fraction(3600, 1), Fraction(24, 1), Fraction(1000, 1))
    >>> safe_eval("9**9**9")
    Traceback (most recent call last):
    ...
    acpo.tasks.freeform.Uncheckable: 9 ** 387420489 is too large to check (over 4096 bits)
    """
    if len(expr) > MAX_WRITTEN_CHARS:
        raise Uncheckable(f"expression longer than {MAX_EXPR_CHARS} characters")
    source = _python_arithmetic(expr)
    if not source:
        raise Uncheckable("empty expression")
    if len(source) > MAX_EXPR_CHARS:
        raise Uncheckable(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise Uncheckable(f"not arithmetic: {source!r}") from err
    return _evaluate(tree.body, source)


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise Uncheckable(f"a value is too large to check (over {MAX_BITS} bits)")
    return value


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise Uncheckable(f"{base} ** {exponent}: only whole exponents are checked exactly")
    n = exponent.numerator
    if base == 0 and n < 0:
        raise Uncheckable("division by zero (0 to a negative power)")
    if base.denominator == 1 and abs(base.numerator) <= 1:  # 0, 1, -1: any exponent is cheap
        return Fraction(base.numerator ** (n % 2)) if base else Fraction(int(n == 0))
    bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if (bits - 1) * abs(n) > MAX_BITS:
        raise Uncheckable(f"{base} ** {n} is too large to check (over {MAX_BITS} bits)")
    return _bounded(base**n)


def _evaluate(node: ast.AST, source: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        text = source[node.col_offset : node.end_col_offset]
        if not _LITERAL.fullmatch(text):
            raise Uncheckable(f"not a plain decimal number: {text!r}")
        return _bounded(Fraction(text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        op = type(node.op)
        if op is ast.Pow:
            return _power(left, right)
        if op not in _BINARY:
            raise Uncheckable(f"operator {op.__name__} is not arithmetic this checker reads")
        if right == 0 and op in (ast.Div, ast.FloorDiv, ast.Mod):
            raise Uncheckable("division by zero")
        return _bounded(_BINARY[op](left, right))
    raise Uncheckable(f"not arithmetic: {ast.get_source_segment(source, node) or type(node).__name__!r}")


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: Fraction(a // b),
           ast.Mod: lambda a, b: a % b}


# --- computations in a line ---------------------------------------------------------------------


@dataclass(frozen=True)
class Computation:
    """One stated equality ``left = right`` of a line (a chain ``a = b = c`` gives ``a = b`` and ``b = c``),
    its ``status`` (right / wrong / uncheckable) and, when uncheckable, why."""

    left: str
    right: str
    status: str
    reason: str = ""


_TOKEN = re.compile(
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|\.\d+%?)"
    r"|(?P<word>[^\W\d_][\w'’]*)"
    r"|(?P<op>\*\*|//|[-+*/^])"
    r"|(?P<paren>[()])"
    r"|(?P<eq>(?:==|<=|>=|!=|=>|=<)|=)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)"
)
_OPERATOR_WORDS = frozenset(
    "of times twice double triple thrice half quarter third thirds plus minus by over less more than "
    "multiplied divided add added adding subtract subtracted subtracting product sum difference quotient "
    "squared cubed percent per x".split()
)
"""Words that make the numbers beside them part of a larger expression (``half of 48``, ``3 times 4 + 1``,
``60 students x 2/3``, where ``x`` does not sit between two numbers)."""
_MAX_UNIT_WORDS = 2
_NOT_UNITS = frozenset(
    "and or is are was were be been will would can could so then thus to the it its he she they we you "
    "that this which what there here if when as at in on for from with equals equal gives makes get gets "
    "because since but not only also just about all".split()
)
_GLUE_OK = frozenset("\"'“”‘’[]{}")
"""Characters that may touch an expression without changing what it means."""
_SENTENCE_END = frozenset(".,;:!?")
_LABEL_WORDS = frozenset(
    "day week month year step page chapter number no grade level row column room line part round game test "
    "question problem item stage phase lap floor section option case".split()
)
"""Words after which a number names something (``day 1 * 2 = 20`` is not ``1 * 2``)."""
_RUN = ("num", "op", "paren", "space", "unit")
"""Token kinds an expression is made of (unit words count as spaces)."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _is_unit(word: str, article: bool = False) -> bool:
    """A word that may name a unit (``hours``, ``kg``; with ``article`` also ``a``, ``an``), not a variable
    (``x``, ``A``), an operator word or a word of the sentence (``or``, ``is``)."""
    lower = word.lower()
    if lower in ("a", "an"):
        return article
    return len(word) >= 2 and lower not in _OPERATOR_WORDS and lower not in _NOT_UNITS


def _tokens(text: str) -> list[_Tok]:
    """Tokens of a line. Up to two unit words, then perhaps ``per`` and a word, between a number and an
    operator, ``)`` or ``=`` become one ``unit`` token (``3 days * 4`` reads ``3 * 4``, ``10 chairs per table *``
    reads ``10 *``); a number glued to a short word (``2x``) is a word."""
    raw = [_Tok(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
    for index, tok in enumerate(raw):
        if tok.kind == "eq" and tok.text != "=":
            raw[index] = _Tok("other", tok.text)
        elif tok.kind == "word" and tok.text.lower() in _OPERATOR_WORDS:
            raw[index] = _Tok("opword", tok.text)
    out: list[_Tok] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        i += 1
        if tok.kind != "num":
            out.append(tok)
            continue
        if i < len(raw) and raw[i].kind in ("word", "opword") and not _is_unit(raw[i].text):
            out.append(_Tok("word", tok.text + raw[i].text))  # 2x, 3times: not a number on its own
            i += 1
            continue
        out.append(tok)
        j, words = i, 0
        if j < len(raw) and raw[j].kind == "word":  # glued unit: 20kg
            j, words = j + 1, 1
        while words < _MAX_UNIT_WORDS and j + 1 < len(raw) and raw[j].kind == "space" \
                and raw[j + 1].kind == "word" and _is_unit(raw[j + 1].text, article=words == 0):
            j, words = j + 2, words + 1
        if j + 3 < len(raw) and raw[j].kind == raw[j + 2].kind == "space" and raw[j + 1].text.lower() == "per" \
                and raw[j + 3].kind == "word" and _is_unit(raw[j + 3].text):  # "10 chairs per table"
            j, words = j + 4, words + 1
        k = j + (j < len(raw) and raw[j].kind == "space")
        if words and raw[j - 1].text.lower() not in ("a", "an") and k < len(raw) and (
                raw[k].text in ("+", "-", "*", "/", "//", ")") or raw[k].kind == "eq"):
            out.append(_Tok("unit", "".join(t.text for t in raw[i:j])))
            i = j
    return out


def _chains(tokens: list[_Tok]) -> list[list[tuple[str, str]]]:
    """Chains of ``=``-separated expressions in a line's tokens: lists of (expression, why it is unreadable)."""
    chains: list[list[tuple[str, str]]] = []
    chain: list[tuple[str, str]] = []
    i, n = 0, len(tokens)
    while i <= n:
        j = i
        while j < n and tokens[j].kind in _RUN:
            j += 1
        element = _element(tokens, i, j, first=not chain)
        if element is None:  # nothing between two "=" or before one: "Total = 5 + 3 = 8" starts at 5
            if len(chain) >= 2:
                chains.append(chain)
            chain = []
        else:
            chain.append(element)
        if j == n or tokens[j].kind != "eq":  # prose (or the end) closes the chain
            if len(chain) >= 2:
                chains.append(chain)
            chain = []
        i = j + 1
    return chains


def _element(tokens: list[_Tok], i: int, j: int, first: bool) -> tuple[str, str] | None:
    """The expression ``tokens[i:j]`` and why it cannot be trusted to stand on its own ("" when it can);
    None when it is empty."""
    run = tokens[i:j]
    core = [t for t in run if t.kind not in ("space", "unit")]
    while core and core[0].text == ")":
        core.pop(0)
    if not core:
        return None
    text = " ".join("".join(" " if t.kind == "unit" else t.text for t in run).split())
    before = tokens[i - 1] if i > 0 else None
    after = tokens[j] if j < len(tokens) else None
    return text, _problem(tokens, i, j, core, before, after, first)


def _problem(tokens: list[_Tok], i: int, j: int, core: list[_Tok], before: _Tok | None, after: _Tok | None,
             first: bool) -> str:
    """Why the expression ``tokens[i:j]`` (its operands and operators: ``core``) may not mean what it says
    on its own, judged from its neighbours ``before`` and ``after``; "" when nothing speaks against it."""
    prose_before = before is not None and before.kind != "eq"
    if first and prose_before:
        if before.kind == "opword":
            return f"continues '{before.text} ...'"
        if before.kind == "other" and before.text not in _SENTENCE_END | _GLUE_OK:
            return f"follows {before.text!r}"
        if tokens[i].kind != "space" and before.text not in _GLUE_OK:
            return f"glued to {before.text!r}"
        if core[0].kind == "op" and (core[0].text != "-" or before.kind == "word"):
            return f"continues an expression before it ('{before.text} {core[0].text}')"
        earlier = _next_solid(tokens, i - 2, -1)
        if earlier is not None and earlier.kind == "op":
            return f"continues an expression before it ('{earlier.text} {before.text}')"
        if before.text.lower() in ("and", "&") and earlier is not None and earlier.kind == "num" \
                and _fraction_at(tokens, i):
            return f"follows '{earlier.text} {before.text}' (a mixed number?)"
        if before.text == "," and earlier is not None and earlier.kind == "num":
            return f"follows '{earlier.text},' (a list, or a number written '14, 400'?)"
        if before.kind == "word" and before.text.lower().rstrip("s") in _LABEL_WORDS:
            return f"a label ('{before.text} {core[0].text}'), not a computation"
        if before.kind == "word" and len(core) == 1:
            return f"a number in prose ('{before.text} {core[0].text}'), not a computation"
    elif first and core[0].kind == "op" and core[0].text != "-":
        return f"starts with {core[0].text!r}"
    if after is not None and after.kind != "eq":
        following = tokens[j + 1].text if j + 1 < len(tokens) else ""
        # "75kg" is 75 (kg), "12." ends a sentence; "10:00", "1,5" and "16.66..." are not 10, 1 and 16.66
        if tokens[j - 1].kind != "space" and not (
                after.kind == "word" and _is_unit(after.text) or after.text in _GLUE_OK
                or (after.text in _SENTENCE_END and (not following or following[0] in " \t\"')"))):
            return f"glued to {after.text + following[:1]!r}"
        if after.text.lower() in ("and", "&") and _fraction_at(tokens, j + 1):
            return f"followed by '{after.text}' and a fraction (a mixed number?)"
    if core[-1].kind == "op":
        return f"ends with {core[-1].text!r}"
    body = list(core)
    while body and body[-1].text == "(":  # "= 12 (dollars)": the parenthesis opens into the prose
        body.pop()
    opens, closes = sum(t.text == "(" for t in body), sum(t.text == ")" for t in body)
    last = after is None or after.kind != "eq"
    if (closes > opens and not last) or (opens > closes and not (first and body[0].text == "(")):
        return "parentheses that open or close in the prose around it"
    if re.search(r"/\s+[\d.]+/\d|\d/[\d.]+\s+/", "".join(t.text for t in tokens[i:j] if t.kind != "unit")):
        return "a fraction inside a division whose spacing says more than its precedence (25 / 1/3)"
    numbers = [t.text for t in core if t.kind == "num"]
    if any(re.match(r"0\d", t) and t.strip("0") for t in numbers):
        return "a number with a leading zero (a clock time or a code?)"
    units = [t.text for t in tokens[i:j] if t.kind == "unit"]
    if units and len(core) == 1:
        return "a quantity with units, not a computation"
    if len({_unit_key(u) for u in units}) > 1 and any(t.text in "+-" for t in core if t.kind == "op"):
        return f"adds or subtracts different units ({', '.join(units)})"
    if len(units) == 1 and _unit_key(units[0]) not in ("each", "apiece") and after is not None \
            and after.kind == "eq" and next(t for t in reversed(tokens[i:j]) if t.kind != "space").kind == "unit":
        # "1/2 a cup = 4 ounces" converts units; "60 cakes / 2 = 30 cakes" does not
        then = next((tokens[k] for k in range(j + 1, len(tokens)) if tokens[k].kind not in _RUN), None)
        if then is None or _unit_key(then.text) != _unit_key(units[-1]):
            return f"the units change across '=' ({units[-1].strip()} = {then.text if then else '?'})"
    if any(t.endswith("%") for t in numbers) and not all(t.endswith("%") for t in numbers) \
            and any(t.text in "+-" for t in core[1:] if t.kind == "op"):
        return "a percentage added to a plain number (10 + 5% is ambiguous)"
    return ""


def _next_solid(tokens: list[_Tok], k: int, step: int) -> _Tok | None:
    """The first token that is not a space from index ``k`` on, going by ``step`` (+1 or -1)."""
    while 0 <= k < len(tokens) and tokens[k].kind == "space":
        k += step
    return tokens[k] if 0 <= k < len(tokens) else None


def _fraction_at(tokens: list[_Tok], k: int) -> bool:
    """The tokens from ``k`` start with a fraction ``a/b`` or ``(a/b``, spaces skipped."""
    texts = [t.text for t in tokens[k : k + 8] if t.kind != "space"]
    texts = texts[1:] if texts[:1] == ["("] else texts
    return len(texts) >= 3 and texts[1] == "/" and texts[0][:1].isdigit() and texts[2][:1].isdigit()


def _unit_key(unit: str) -> str:
    """A unit's last word, lower case, without a plural s: ``an hour`` and ``hours`` agree."""
    words = unit.split()
    return words[-1].lower().removesuffix("s") if words else ""


def _trim_parens(text: str) -> str:
    """Drop parentheses that belong to the surrounding prose: a leading ``)``, a trailing ``(``, and
    unmatched ones at the ends (``(3 + 4 = 7)`` reads ``3 + 4`` and ``7``)."""
    text = text.strip().lstrip(")").rstrip("(").strip()
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].strip()
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].strip()
    return text


def _has_operator(text: str) -> bool:
    return bool(re.search(r"(?<=[\d)%.\s])\s*(?:\*\*|//|[-+*/^×÷·])", text))


def _chain_computations(elements: list[tuple[str, str]], prose: bool = True,
                        remainder: bool = False) -> list[Computation]:
    """The links of one chain. In prose, two bare numbers said to be equal (``a 40,000 foot mountain =
    10 round trips``) count only inside a chain that holds arithmetic, and a chain may run on (``600 / 50 =
    12 * 60 = 720`` holds: the right side starts from the left side's value); a calculator annotation is read
    strictly.
    ``remainder``: the line speaks of a remainder (or what is left over), so ``13 / 6 = 2`` (the whole part)
    holds."""
    elements = [(text, problem or (len(text) > MAX_EXPR_CHARS and f"expression longer than {MAX_EXPR_CHARS} "
                                    "characters")) for text, problem in elements]
    sides = [text if problem else _trim_parens(text) for text, problem in elements]
    arithmetic = not prose or any(_has_operator(side) for side, (_, problem) in zip(sides, elements) if not problem)
    unreadable = []
    for side, (_, problem) in zip(sides, elements):
        if not problem:
            try:
                safe_eval(side)
            except Uncheckable as err:
                problem = str(err)
        unreadable.append(problem)
    out = []
    for left, right, lp, rp in zip(sides, sides[1:], unreadable, unreadable[1:]):
        if lp or rp:
            out.append(Computation(left, right, UNCHECKABLE, lp or rp))
        elif not arithmetic:
            out.append(Computation(left, right, UNCHECKABLE, "no arithmetic: two numbers said to be equal"))
        else:
            running = prose and _LEADING_OPERAND.match(right)  # "600 / 50 = 12 * 60 = 720": 600 / 50 gave 12
            holds = _equal(left, right, remainder) or bool(running and _equal(left, running.group(1), remainder))
            out.append(Computation(left, right, RIGHT if holds else WRONG))
    return out


_LEADING_OPERAND = re.compile(r"(-?[\d,]*\.?\d+%?)\s*(?:[-+*/]|\*\*)")
"""The first number of an expression that goes on computing with it (``12 * 60``)."""
_BARE_NUMBER = re.compile(r"-?(?:[\d,]*\.(\d+)|[\d,]+)(%?)")


def _readings(text: str, other: str) -> list[tuple[Fraction, int | None]]:
    """What ``text`` may mean, each value with the decimal places it was rounded to (None: exact).

    A bare decimal ``3.33`` is rounded to 2 places; a bare percentage ``33%`` is 0.33 rounded to 2 places;
    against a side without ``%``, percentages are also read as percentage points (``100 - 40 = 60%``,
    ``9 / 21 * 100% = 42.857``).
    """
    bare = _BARE_NUMBER.fullmatch(text.strip().rstrip("."))
    digits = len(bare.group(1) or "") if bare else 0
    percent = bool(bare and bare.group(2))
    out = [(safe_eval(text), digits + 2 if percent else digits or None if bare else None)]
    if "%" in text and "%" not in other:
        out.append((safe_eval(text.replace("%", "")), digits or None if bare else None))
    return out


def _close(exact: Fraction, stated: Fraction, places: int | None) -> bool:
    """``stated`` is ``exact`` rounded (half a unit either way) or truncated to ``places`` decimals."""
    if places is None:
        return False
    unit = Fraction(1, 10**places)
    truncated = Fraction(int(exact / unit)) * unit
    return abs(exact - stated) <= unit / 2 or stated == truncated


FLOAT_DIGITS = 15
"""A stated decimal with at least this many significant digits is a binary float printed in full (a
calculator's ``99.00000000000001``, ``0.30000000000000004``), not a number a person chose to write."""
FLOAT_TOLERANCE = Fraction(1, 10**12)
"""Relative difference within which such a float equals the exact value: a double holds about 16 significant
digits, so a few operations' rounding stays far below 1e-12, while any arithmetic slip is far above it."""


def _float_noise(exact: Fraction, stated: str) -> bool:
    """``stated`` is a float printed in full (``FLOAT_DIGITS``) that equals ``exact`` up to rounding
    (``FLOAT_TOLERANCE``): ``11/18*162 = 99.00000000000001`` holds."""
    bare = _BARE_NUMBER.fullmatch(stated.strip().rstrip("."))
    if not bare or bare.group(2):
        return False
    digits = re.sub(r"\D", "", stated).lstrip("0")
    if len(digits) < FLOAT_DIGITS:
        return False
    return abs(safe_eval(stated) - exact) <= FLOAT_TOLERANCE * max(abs(exact), 1)


def _equal(left: str, right: str, remainder: bool = False) -> bool:
    """Whether ``left = right`` holds: exactly, or as a rounded bare number (``10/3 = 3.33``), or as a float
    printed in full (``_float_noise``), or reading percentages as points, or (``remainder``) as a division's
    whole part."""
    for lv, lp in _readings(left, right):
        for rv, rp in _readings(right, left):
            if lv == rv or _close(lv, rv, rp) or _close(rv, lv, lp) or _float_noise(lv, right) \
                    or _float_noise(rv, left):
                return True
            if remainder and rv.denominator == 1 and rv == lv // 1:
                return True
    return False


_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_SCALE_WORDS = ((re.compile(r"\bcents?\b|¢"), 100, "cents"), (re.compile(r"\bthousands?\b", re.I), 1000, "thousand"),
                (re.compile(r"\bmillions?\b", re.I), 10**6, "million"),
                (re.compile(r"\bbillions?\b", re.I), 10**9, "billion"))
"""Words by which a line changes a quantity's scale outside its arithmetic (``$1 / 2 = 50 cents``, ``5 thousand
dollars ... 5 * 3 = $15,000``): a prose computation whose sides differ by exactly that factor is not judged."""


def _scale_change(computation: Computation, line: str) -> Computation:
    """``computation``, uncheckable when it is wrong only by the factor of a scale word in ``line``."""
    if computation.status != WRONG:
        return computation
    left, right = safe_eval(computation.left), safe_eval(computation.right)
    for pattern, factor, word in _SCALE_WORDS:
        if pattern.search(line) and right and left and left / right in (factor, Fraction(1, factor)):
            return Computation(computation.left, computation.right, UNCHECKABLE,
                               f"the sides differ by {factor}x and the line speaks of {word} (a change of unit)")
    return computation


def line_computations(line: str) -> list[Computation]:
    """Every computation stated in ``line``: GSM8K annotations ``<<a=b>>`` first, then the prose's."""
    out = []
    remainder = bool(re.search(r"\b(?:remainders?|remaining|left ?over)\b", line, re.IGNORECASE))
    for m in _ANNOTATION.finditer(line):
        parts = m.group(1).split("=")
        if len(parts) >= 2:
            out += _chain_computations([(p, "" if p.strip() else "empty side") for p in parts], False, remainder)
    prose = _ANNOTATION.sub("", line)
    prose = re.sub(r"^\s*(?:[-*+•]|#{1,6})\s+", "", prose)  # a markdown bullet or heading, not a minus
    for chain in _chains(_tokens(normalise_notation(prose))):
        out += [_scale_change(c, line) for c in _chain_computations(chain, True, remainder)]
    return out


def line_status(line: str) -> str:
    """``wrong`` if a computation of ``line`` is false, else ``right`` if one holds, else ``uncheckable``."""
    statuses = {c.status for c in line_computations(line)}
    return WRONG if WRONG in statuses else RIGHT if RIGHT in statuses else UNCHECKABLE


# --- the checker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreeformCheck(CheckResult):
    """:class:`CheckResult` plus ``line_status``: right / wrong / uncheckable for each of ``steps``.

    ``answer`` is the completion's final answer as ``acpo.answers.extract_answer`` reads it
    (``####``, ``\\boxed{}``, "the answer is", last number).
    """

    line_status: tuple[str, ...] = ()

    @property
    def checkable(self) -> bool:
        """Some line holds a computation this checker could judge."""
        return any(s != UNCHECKABLE for s in self.line_status)


def check_freeform(completion: str, answer: str | None) -> FreeformCheck:
    """Judge each line's arithmetic and the final answer of a free-form completion (module docstring).

    Args:
        completion: the model's text.
        answer: the reference answer; None when unknown (then ``answer_correct`` is False and only
            false computations locate an error).

    Returns:
        A :class:`FreeformCheck`: ``first_error`` is the first ``wrong`` line or None (none is wrong,
        whatever the answer), ``answer_correct`` whether the final answer is equivalent to ``answer``.
    """
    lines = split_lines(completion)
    statuses = [line_status(text) for text, _ in lines]
    if lines and _cut_off(completion, *lines[-1]):
        statuses[-1] = UNCHECKABLE
    first_error = next((i for i, s in enumerate(statuses) if s == WRONG), None)
    predicted = extract_answer(completion)
    correct = answer is not None and answers_equivalent(predicted, str(answer))
    return FreeformCheck(first_error, correct, [t for t, _ in lines], [s for _, s in lines], predicted,
                         line_status=tuple(statuses))


def _cut_off(completion: str, line: str, span: tuple[int, int]) -> bool:
    """The text stops right after a digit of its last line (no newline, no answer marker): a token limit
    may have cut a number short (``10 * 10 = 1`` of ``100``), so that line is not judged."""
    return (span[1] == len(completion) and line[-1:].isdigit() and not line.lstrip().startswith(ANSWER_MARKER))
