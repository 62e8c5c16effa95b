"""What every credit method receives and returns, and the registry that names them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from acpo.advantage import AdvantageConfig, broadcast_steps, factorised_advantages, normalize_step_credits
from acpo.segment import Step, step_index_of_tokens


@dataclass
class CreditBatch:
    """A batch of scored completions in the shared layout (see ``acpo.tokens``).

    ``logprobs``/``entropy``/``completion_mask`` are (batch, time); ``steps``
    holds each completion's segmentation. Fields a method does not need may be
    left at their defaults.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor
    entropy: torch.Tensor
    steps: list[list[Step]]
    advantages: torch.Tensor  # (batch,) outcome advantage; 0 where unknown
    group_ids: torch.Tensor  # (batch,) completions of one prompt share an id
    rewards: torch.Tensor | None = None  # (batch,) outcome rewards, when known
    answers: list[str | None] = field(default_factory=list)  # target answer per completion (acpo)
    reset_values: list[dict[int, list[float]]] | None = None  # boundary k -> continuation rewards (mc_reset)
    texts: list[str] = field(default_factory=list)  # the completions' texts (mc_reset scores prefix + continuation)
    model: Any = None
    tokenizer: Any = None
    trace_cache: Any = None  # KV cache of one forward over all rows in this layout (acpo reuses it), or None

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
    """Base class: step credits, folded into token advantages by the factorised reward."""

    name: str = ""
    token_level = False  # True when the method sets token advantages itself
    signed = True  # credits are signed contributions (0 = neutral); False: a score on a one-sided scale
    unit = ""  # what one unit of credit is, for legends ("nats", "reward")
    meaning = ""  # what a step's number says, in one sentence under the legend (blue/red or dark/pale)

    def credits(self, batch: CreditBatch) -> CreditResult:
        raise NotImplementedError

    def token_advantages(
        self, batch: CreditBatch, result: CreditResult, cfg: AdvantageConfig = AdvantageConfig()
    ) -> torch.Tensor:
        hat = normalize_step_credits(result.step_credits, batch.group_ids, cfg.eps)
        per_token = broadcast_steps(hat, batch.step_index, batch.completion_mask)
        return factorised_advantages(batch.advantages, per_token, batch.completion_mask, cfg)


CREDIT_METHODS: dict[str, Callable[..., CreditMethod]] = {}


def register(name: str):
    """Class decorator: make a credit method available by name."""

    def wrap(cls):
        cls.name = name
        CREDIT_METHODS[name] = cls
        return cls

    return wrap


def get_credit_method(name: str, **kwargs) -> CreditMethod:
    """An instance of the credit method called ``name`` (kwargs go to its constructor)."""
    if name not in CREDIT_METHODS:
        raise ValueError(f"unknown credit method {name!r}; valid: {', '.join(sorted(CREDIT_METHODS))}")
    return CREDIT_METHODS[name](**kwargs)


def per_step(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32)
