"""What every credit method receives and returns, what it declares it needs, and the registry that names them.

A credit method is one class behind one name. It says what it reads with class
attributes (``needs_stats``, ``needs_answers``, ...), and ``acpo.pipeline`` provides
exactly that, the same way for ``explain``, the trainer, TRL and verl: no code
outside this package tests a method's name.

Every method turns a batch into a per-token *credit* (``token_credit``) and folds it
into the outcome advantage (``compose``). For step credits the token credit is the
group-normalised step credit c_hat of the token's step and ``compose`` is the
factorised reward (``acpo.advantage``); token-level methods (``hapo``,
``entropy_mask``) define both themselves.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from acpo.advantage import AdvantageConfig, broadcast_steps, factorised_advantages, normalize_step_credits
from acpo.segment import Step, step_index_of_tokens


@dataclass
class CreditBatch:
    """A batch of scored completions in the shared layout (see ``acpo.tokens``).

    ``logprobs``/``entropy``/``completion_mask`` are (batch, time); ``steps``
    holds each completion's segmentation. Fields a method does not declare it
    needs may be left at their defaults (``acpo.pipeline`` fills what it needs).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor | None
    entropy: torch.Tensor | None
    steps: list[list[Step]]
    advantages: torch.Tensor  # (batch,) outcome advantage; 0 where unknown
    group_ids: torch.Tensor  # (batch,) completions of one prompt share an id
    rewards: torch.Tensor | None = None  # (batch,) outcome rewards, when known (NaN: no reward)
    answers: list[str | None] = field(default_factory=list)  # target answer per completion (needs_answers)
    reference_answers: list[str | None] = field(default_factory=list)  # the reference answers as given (or None)
    reset_values: list[dict[int, list[float]]] | None = None  # boundary k -> continuation rewards (mc_reset)
    texts: list[str] = field(default_factory=list)  # the completions' texts (mc_reset scores prefix + continuation)
    model: Any = None
    tokenizer: Any = None
    trace_cache: Any = None  # KV cache of one forward over all rows in this layout (uses_trace_cache), or None

    @property
    def step_index(self) -> torch.Tensor:
        """(batch, time) step id of each token; padding gets 0."""
        b, t = self.completion_mask.shape
        out = torch.zeros((b, t), dtype=torch.long)
        for i, steps in enumerate(self.steps):
            n = int(self.completion_mask[i].sum())
            out[i, :n] = step_index_of_tokens(steps, n)
        return out

    def step_means(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Mean of a (batch, time) tensor over each step's tokens."""
        return [
            torch.stack([values[i, s.token_start : s.token_end].float().mean() for s in steps])
            for i, steps in enumerate(self.steps)
        ]


@dataclass
class CreditResult:
    """Per-step credits of each completion, plus method-specific per-step extras."""

    step_credits: list[torch.Tensor]
    extras: dict[str, list[torch.Tensor]] = field(default_factory=dict)


class CreditMethod:
    """Base class: step credits, folded into token advantages by the factorised reward.

    The class attributes declare what the method reads; ``acpo.pipeline`` provides it.
    """

    name: str = ""
    needs_stats = True  # reads the scoring forward's token log-probs or entropies (CreditBatch.logprobs, .entropy)
    needs_steps = True  # reads the steps (cut with those entropies); False: one step per completion will do
    needs_answers = False  # reads CreditBatch.answers (each completion's target answer)
    needs_policy = False  # runs the model itself (CreditBatch.model and .tokenizer): probes, continuations
    needs_texts = False  # reads the completions' texts (CreditBatch.texts)
    uses_trace_cache = False  # can reuse the KV cache of the scoring forward (CreditBatch.trace_cache)
    samples_continuations = False  # draws new text from the policy: seconds per step boundary
    token_level = False  # True when the method's token credit is per token, not per step
    signed = True  # credits are signed contributions (0 = neutral); False: a score on a one-sided scale
    unit = ""  # what one unit of credit is, for legends ("nats", "reward")
    meaning = ""  # what a step's number says, in one sentence under the legend (blue/red or dark/pale)

    def credits(self, batch: CreditBatch) -> CreditResult:
        raise NotImplementedError

    def token_credit(self, batch: CreditBatch, result: CreditResult, cfg: AdvantageConfig = AdvantageConfig(),
                     normalised: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(batch, time) per-token credit: c_hat of each token's step, the step credits z-scored over each group's
        steps (``normalised``: already z-scored, e.g. over a group that spans processes)."""
        hat = normalised if normalised is not None else normalize_step_credits(result.step_credits, batch.group_ids,
                                                                               cfg.eps)
        return broadcast_steps(hat, batch.step_index, batch.completion_mask)

    def compose(self, advantages: torch.Tensor, token_credit: torch.Tensor, mask: torch.Tensor,
                cfg: AdvantageConfig = AdvantageConfig()) -> torch.Tensor:
        """(batch, time) token advantages from the (batch,) outcome advantages and the token credit."""
        return factorised_advantages(advantages, token_credit, mask, cfg)

    def token_advantages(self, batch: CreditBatch, result: CreditResult,
                         cfg: AdvantageConfig = AdvantageConfig()) -> torch.Tensor:
        return self.compose(batch.advantages, self.token_credit(batch, result, cfg), batch.completion_mask, cfg)

    def batch_metrics(self, token_advantages: torch.Tensor, batch: CreditBatch) -> dict[str, float]:
        """Metrics of one trained batch that only this method has (logged beside ``credit/mean``)."""
        return {}


CREDIT_METHODS: dict[str, Callable[..., CreditMethod]] = {}
CREDIT_ALIASES = {"acpo": "info_gain"}  # old name -> name; kept for one release, with a warning
_warned: set[str] = set()


def register(name: str):
    """Class decorator: make a credit method available by name."""

    def wrap(cls):
        cls.name = name
        CREDIT_METHODS[name] = cls
        return cls

    return wrap


def credit_name(name: str) -> str:
    """The registered name of ``name``: itself, or the credit an old alias stands for (warning once per alias).

    >>> credit_name("info_gain")
    'info_gain'
    """
    if name in CREDIT_ALIASES:
        new = CREDIT_ALIASES[name]
        if name not in _warned:
            _warned.add(name)
            warnings.warn(f"credit {name!r} is now called {new!r}; the old name works for one more release",
                          DeprecationWarning, stacklevel=3)
        return new
    if name not in CREDIT_METHODS:
        raise ValueError(f"unknown credit method {name!r}; valid: {', '.join(sorted(CREDIT_METHODS))}")
    return name


def renamed_credit_columns(frame):
    """A table written under old credit names, read under the current ones: columns ``credit_<old>`` and
    ``adv_<stat>_<old>`` renamed, and the values of a ``credit`` column mapped (traces, CSV exports, tables).

    >>> import pandas as pd
    >>> list(renamed_credit_columns(pd.DataFrame({"credit_acpo": [0.1], "adv_mean_acpo": [1.0]})).columns)
    ['credit_info_gain', 'adv_mean_info_gain']
    """
    renames = {}
    for col in frame.columns:
        for old, new in CREDIT_ALIASES.items():
            if col == f"credit_{old}":
                renames[col] = f"credit_{new}"
            elif col.startswith("adv_") and col.endswith(f"_{old}") and col.count("_") == 2:
                renames[col] = col[: -len(old)] + new
    frame = frame.rename(columns={k: v for k, v in renames.items() if v not in frame.columns})
    if "credit" in frame.columns:
        frame = frame.assign(credit=frame["credit"].replace(CREDIT_ALIASES))
    return frame


def get_credit_method(name: str, **kwargs) -> CreditMethod:
    """An instance of the credit method called ``name`` (kwargs go to its constructor)."""
    return CREDIT_METHODS[credit_name(name)](**kwargs)


def per_step(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32)
