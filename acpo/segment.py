"""Segmentation: a completion's tokens -> contiguous reasoning steps (METHODS.md §2).

Every method returns steps that partition the completion exactly: token spans
``[token_start, token_end)`` that cover ``0..T`` with no gap or overlap, and
character spans that cover ``0..len(text)`` the same way, so
``"".join(step.text) == text`` always holds.

Token character spans come from the tokenizer's offset mapping (see
``acpo.tokens``). Offsets may leave gaps (tokenizers that drop spaces from
offsets); a token's *owned* characters are therefore ``[start_j, start_{j+1})``,
the first token owning everything from 0 and the last everything to the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Step:
    """One reasoning step: a token span and the characters it owns."""

    index: int
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    text: str

    @property
    def n_tokens(self) -> int:
        return self.token_end - self.token_start


@dataclass
class SegmentConfig:
    """Knobs of every segmentation; unused ones are ignored by each method."""

    entropy_quantile: float = 0.1  # q: top-q entropy tokens are "decisions"
    min_step_tokens: int = 4  # m: entropy boundaries closer than this merge
    max_reasoning_steps: int = 32  # hybrid: the most steps per completion
    fixed_tokens: int = 16  # N for fixed
    open_markers: Sequence[str] = (r"(?i)\bstep[ \t]*\d+[ \t]*[:.)]", r"<step>", r"<thought>")
    close_markers: Sequence[str] = (r"</step>", r"</thought>")
    extra: dict = field(default_factory=dict)


def owned_char_starts(offsets: Sequence[tuple[int, int]], text_len: int) -> list[int]:
    """Start of the characters each token owns; monotone, first is 0 (see module doc)."""
    starts, last = [], 0
    for j, (s, _) in enumerate(offsets):
        s = 0 if j == 0 else max(last, min(int(s), text_len))
        starts.append(s)
        last = s
    return starts


def _token_texts(text: str, starts: list[int]) -> list[str]:
    ends = starts[1:] + [len(text)]
    return [text[a:b] for a, b in zip(starts, ends)]


def _steps_from_boundaries(text: str, starts: list[int], bounds: Sequence[int]) -> list[Step]:
    """Build steps from sorted token indices where a step starts (0 implied)."""
    n = len(starts)
    cuts = sorted({0, *[b for b in bounds if 0 < b < n]})
    steps = []
    for k, a in enumerate(cuts):
        b = cuts[k + 1] if k + 1 < len(cuts) else n
        ca = starts[a]
        cb = starts[b] if b < n else len(text)
        steps.append(Step(k, a, b, ca, cb, text[ca:cb]))
    return steps


def _merge_blank(text: str, starts: list[int], bounds: Sequence[int]) -> list[int]:
    """Step starts with every whitespace-only step merged into a neighbour.

    A blank step joins the step before it; a blank first step joins the next one.
    """
    n = len(starts)
    cuts = sorted({0, *[b for b in bounds if 0 < b < n]})
    char = lambda j: starts[j] if j < n else len(text)  # noqa: E731
    kept = [0]
    for a, b in zip(cuts[1:], cuts[2:] + [n]):
        if text[char(a) : char(b)].strip():
            kept.append(a)
    if len(kept) > 1 and not text[: char(kept[1])].strip():
        del kept[1]
    return kept


def line_boundaries(text: str, starts: list[int]) -> list[int]:
    """Token indices where a new line starts.

    A token containing a newline ends its line unless everything before its
    first newline is blank (BPE tokens like ``"\\nThe"``): then the line break
    belongs to the next step and the boundary goes before the token.
    """
    bounds = []
    for j, tok in enumerate(_token_texts(text, starts)):
        if "\n" not in tok:
            continue
        head = tok.split("\n", 1)[0]
        if head.strip() == "" and tok.strip() != "":
            bounds.append(j)
        else:
            bounds.append(j + 1)
    return bounds


def _token_at(starts: list[int], char: int) -> int:
    """Index of the token owning character ``char``."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= char:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _quantile_threshold(entropy: torch.Tensor, q: float) -> float:
    if not 0.0 < q <= 1.0:
        raise ValueError(f"entropy_quantile must be in (0, 1], got {q}")
    return float(torch.quantile(entropy.double(), 1.0 - q))


def seg_lines(text, starts, entropy, cfg):
    return _merge_blank(text, starts, line_boundaries(text, starts))


def seg_markers(text, starts, entropy, cfg):
    bounds = []
    for pat in cfg.open_markers:
        bounds += [_token_at(starts, m.start()) for m in re.finditer(pat, text)]
    for pat in cfg.close_markers:
        bounds += [_token_at(starts, m.end() - 1) + 1 for m in re.finditer(pat, text)]
    return _merge_blank(text, starts, bounds)


def seg_entropy(text, starts, entropy, cfg):
    """[ours] A step starts at each top-q entropy token; boundaries closer than m merge."""
    n, m = len(starts), max(1, cfg.min_step_tokens)
    thr = _quantile_threshold(entropy, cfg.entropy_quantile)
    bounds, last = [], 0
    for t in range(1, n):
        if entropy[t] >= thr and t - last >= m:
            bounds.append(t)
            last = t
    if bounds and n - bounds[-1] < m:  # the last step would be shorter than m
        bounds.pop()
    return bounds


def seg_hybrid(text, starts, entropy, cfg):
    """[ours] Line (or sentence) candidates; undecided steps merge; at most max_reasoning_steps steps."""
    cands = _merge_blank(text, starts, line_boundaries(text, starts))
    if len(cands) <= 1:  # no line structure: fall back to sentence ends
        sent = [_token_at(starts, m.end() - 1) + 1 for m in re.finditer(r"[.!?;](?=\s)", text)]
        cands = _merge_blank(text, starts, sent)
    n = len(starts)
    thr = _quantile_threshold(entropy, cfg.entropy_quantile)
    decided = entropy >= thr
    kept = [cands[0]]
    for k in range(1, len(cands)):
        end = cands[k + 1] if k + 1 < len(cands) else n
        if bool(decided[cands[k] : end].any()):
            kept.append(cands[k])
    # at most max_reasoning_steps: merge the adjacent pair with the smallest summed entropy
    while len(kept) > max(1, cfg.max_reasoning_steps):
        ends = kept[1:] + [n]
        sums = [float(entropy[a:b].sum()) for a, b in zip(kept, ends)]
        pair = min(range(len(kept) - 1), key=lambda k: sums[k] + sums[k + 1])
        del kept[pair + 1]
    return kept


def seg_fixed(text, starts, entropy, cfg):
    size = max(1, cfg.fixed_tokens)
    return list(range(size, len(starts), size))


SEGMENTATIONS: dict[str, Callable] = {
    "lines": seg_lines,
    "markers": seg_markers,
    "entropy": seg_entropy,
    "hybrid": seg_hybrid,
    "fixed": seg_fixed,
}


def resolve_segmentation(name: str, cfg: SegmentConfig | None = None) -> tuple[Callable, SegmentConfig]:
    """Look up a segmentation by name; ``fixed-N`` sets the fixed step size to N."""
    cfg = SegmentConfig() if cfg is None else cfg
    m = re.fullmatch(r"fixed-(\d+)", name)
    if m:
        if int(m.group(1)) < 1:
            raise ValueError(f"segmentation {name!r}: a fixed step holds at least 1 token; use e.g. fixed-8")
        cfg = SegmentConfig(**{**cfg.__dict__, "fixed_tokens": int(m.group(1))})
        name = "fixed"
    if name not in SEGMENTATIONS:
        valid = ", ".join([*SEGMENTATIONS, "fixed-N"])
        raise ValueError(f"unknown segmentation {name!r}; valid: {valid}")
    return SEGMENTATIONS[name], cfg


def segment(
    text: str,
    offsets: Sequence[tuple[int, int]],
    entropy: torch.Tensor | Sequence[float],
    method: str = "hybrid",
    cfg: SegmentConfig | None = None,
) -> list[Step]:
    """Split one completion into steps.

    Args:
        text: the decoded completion.
        offsets: per-token ``(start, end)`` character offsets into ``text``.
        entropy: per-token entropy (only ``entropy`` / ``hybrid`` use it).
        method: ``lines``, ``markers``, ``entropy``, ``hybrid``, ``fixed`` or ``fixed-N``.
        cfg: knobs (quantile q, minimum length m, max_reasoning_steps, N, marker patterns).
    """
    fn, cfg = resolve_segmentation(method, cfg)
    n = len(offsets)
    if n == 0:
        raise ValueError("cannot segment an empty completion (0 tokens)")
    entropy = torch.as_tensor(entropy, dtype=torch.float32).reshape(-1)
    if entropy.numel() != n:
        raise ValueError(f"got {entropy.numel()} entropies for {n} tokens; pass one per token")
    starts = owned_char_starts(offsets, len(text))
    return _steps_from_boundaries(text, starts, fn(text, starts, entropy, cfg))


GIVEN = "given"
"""The segmentation of steps the caller split already (``given_steps`` at their character starts)."""
STEP_SEPARATOR = "\n"
"""What joins steps given already split (``join_steps``): each step's text carries the separator after it,
as a line step carries its newline."""


def join_steps(steps: Sequence[str], separator: str = STEP_SEPARATOR) -> tuple[str, list[int]]:
    """(completion, character start of each step) of steps given already split: their join with ``separator``.

    >>> join_steps(["48/2 = 24", "48 + 24 = 72"])
    ('48/2 = 24\\n48 + 24 = 72', [0, 10])
    """
    steps = [str(s) for s in steps]
    if not steps:
        raise ValueError("no steps given; pass at least one step string")
    empty = [k for k, s in enumerate(steps) if not s.strip()]
    if empty:
        raise ValueError(f"given step {empty[0]} is empty; every step needs some text (drop the empty ones)")
    starts, at = [], 0
    for s in steps:
        starts.append(at)
        at += len(s) + len(separator)
    return separator.join(steps), starts


def given_steps(text: str, offsets: Sequence[tuple[int, int]], char_starts: Sequence[int]) -> list[Step]:
    """Steps at given character starts (``char_starts[0] == 0``): step k owns ``text[char_starts[k]:
    char_starts[k+1]]`` and the tokens from the one owning its first character up to the next step's.

    The characters partition the text as every segmentation does; a token that straddles a boundary
    (``"\\nThe"``) goes to the step whose first character it holds. A step that shares its only token with
    the step before it cannot own a token of its own: that is an error naming it.
    """
    n = len(offsets)
    if n == 0:
        raise ValueError("cannot segment an empty completion (0 tokens)")
    char_starts = [int(c) for c in char_starts]
    if not char_starts or char_starts[0] != 0 or any(b <= a for a, b in zip(char_starts, char_starts[1:])) \
            or char_starts[-1] >= len(text):
        raise ValueError(f"step starts {char_starts} must begin at 0 and rise strictly inside the text "
                         f"({len(text)} characters)")
    starts = owned_char_starts(offsets, len(text))
    tokens = [_token_at(starts, c) for c in char_starts]
    for k in range(1, len(tokens)):
        if tokens[k] <= tokens[k - 1]:
            raise ValueError(f"given step {k - 1} ({text[char_starts[k - 1]:char_starts[k]]!r}) has no token of its "
                             "own (it shares one with the next step); join it to a neighbour")
    bounds = tokens[1:] + [n]
    ends = char_starts[1:] + [len(text)]
    return [Step(k, a, b, ca, cb, text[ca:cb])
            for k, (a, b, ca, cb) in enumerate(zip(tokens, bounds, char_starts, ends))]


def step_index_of_tokens(steps: Sequence[Step], n_tokens: int) -> torch.Tensor:
    """(n_tokens,) long tensor: the step each token belongs to."""
    idx = torch.empty(n_tokens, dtype=torch.long)
    for s in steps:
        idx[s.token_start : s.token_end] = s.index
    return idx


def step_at_char(steps: Sequence[Step], char: int) -> int:
    """Index of the step whose character span holds ``char`` (e.g. a checker's first-error offset)."""
    for s in steps:
        if s.char_start <= char < s.char_end:
            return s.index
    return steps[-1].index if steps and char >= steps[-1].char_end else 0
