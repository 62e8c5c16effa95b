"""Step credit in verl: a reward manager writes token credits as dense rewards; the estimator reads them back.

verl hands a registered advantage estimator only ``token_level_rewards``, ``response_mask``,
``index`` (the prompt uids) and ``config``; the route its maintainers point to for step-level
signals is a dense (batch, response_length) reward written by the reward manager. So the work is
split in two, both configured by one ``VerlCreditConfig`` and registered under one name:

1. The reward manager (verl's reward loop: ``reward.reward_manager.name=<name>``) scores each
   response as verl's ``naive`` manager does, then, for the whole batch at once, runs the credit
   pipeline (``acpo.pipeline.assign_credit``, as our trainer, ``explain`` and TRL) and writes
   the dense layout (``write_dense_rewards``)::

       r[i, t] = x[i, t]      every response token but the last (x: the method's token credit)
       r[i, n_i - 1] = score_i                  (where verl puts the outcome score)

   The token credit x is what the method folds into the outcome advantage: the group-normalised
   step credit c_hat of the token's step for step credits, the entropy z-score for ``hapo``,
   1/0 (kept or not) for ``entropy_mask``. The last token carries the score, so its credit is the
   one of the token before it (for a step credit: the same step, unless the last step is one token
   long). With ``uniform`` credit every x is 0: verl's own layout.
2. The estimator (``algorithm.adv_estimator=<name>``) reads score and token credit back
   (``read_dense_rewards``), computes the outcome advantage of each response in its group exactly
   as verl's GRPO does (a lone response keeps its score, Bessel-corrected std, epsilon 1e-6,
   ``norm_adv_by_std_in_grpo``) and composes the two with the method's own rule. With ``uniform``
   it equals verl's ``grpo``.

The credits are computed in the reward step, before verl's actor computes the old log-probs, so
they come from a frozen scorer model (``VerlCreditConfig.model``, e.g. the initial policy), not
from the policy being trained. Use it with ``algorithm.use_kl_in_reward=False`` (a KL penalty in
the reward would be read as credit; use the actor's KL loss instead).

Registering: ``register()`` (done on import when verl is installed; installing acpo in verl's
environment also declares it as a ``verl.plugins`` entry point, so ``import verl`` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from acpo.advantage import AdvantageConfig
from acpo.credit.base import CREDIT_METHODS, credit_name
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.pipeline import assign_credit, make_credit
from acpo.segment import SegmentConfig, resolve_segmentation
from acpo.tokens import decode_with_offsets

ESTIMATOR = "acpo_step_credit"


@dataclass
class VerlCreditConfig:
    """What the reward manager writes and the estimator reads; the outcome mode is verl's
    ``norm_adv_by_std_in_grpo``."""

    credit: str = "uniform"  # any registered credit (acpo.CREDIT_METHODS)
    model: str | None = None  # the scorer: a folder or hub id (load_policy); needed by every credit but uniform
    segmentation: str = "hybrid"
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    # composition, lambda, w_min, w_max, eps of the step z-score; its `outcome` is verl's to choose, not read here
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    credit_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"rho": 0.2} for entropy_mask
    probe: str = DEFAULT_PROBE  # info_gain's text before the answer
    batch_size: int = 8  # responses per no-grad forward of the scorer
    epsilon: float = 1e-6  # verl's GRPO epsilon

    def __post_init__(self):
        self.credit = credit_name(self.credit)  # ValueError naming the valid ones
        resolve_segmentation(self.segmentation)
        method = CREDIT_METHODS[self.credit]
        if self.model is None and (method.needs_stats or method.needs_steps or method.needs_policy):
            raise ValueError(f"credit {self.credit!r} reads a scorer model (token statistics, steps or probes): set "
                             "VerlCreditConfig(model=...) to its folder or hub id (e.g. the initial policy)")

    def method(self):
        return make_credit(self.credit, self.credit_options, probe=self.probe, batch_size=self.batch_size)


def _last_positions(mask: torch.Tensor) -> torch.Tensor:
    """(batch,) index of each row's last masked-in position (-1 for an empty row)."""
    pos = torch.arange(mask.shape[1]).expand_as(mask)
    return torch.where(mask.bool(), pos, -1).max(-1).values


def _previous_positions(mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(batch,) index of the masked-in position before ``last`` (-1 when there is none)."""
    pos = torch.arange(mask.shape[1]).expand_as(mask)
    before = mask.bool() & (pos < last[:, None])
    return torch.where(before, pos, -1).max(-1).values


def write_dense_rewards(scores: torch.Tensor, token_credit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) dense rewards: the token credit on every masked-in token but the last, the score on the last.

    >>> write_dense_rewards(torch.tensor([1.0]), torch.tensor([[0.5, -0.5, 9.0, 9.0]]), torch.tensor([[1, 1, 1, 0]]))
    tensor([[ 0.5000, -0.5000,  1.0000,  0.0000]])
    """
    out = token_credit.float() * mask.float()
    last = _last_positions(mask)
    rows = torch.nonzero(last >= 0).flatten()
    out[rows, last[rows]] = scores.float()[rows]
    return out


def read_dense_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (batch,), token credit (batch, time)) from ``write_dense_rewards``' layout; the last token's
    credit is the one before it (0 for a one-token response).

    >>> read_dense_rewards(torch.tensor([[0.5, -0.5, 1.0, 0.0]]), torch.tensor([[1, 1, 1, 0]]))
    (tensor([1.]), tensor([[ 0.5000, -0.5000, -0.5000,  0.0000]]))
    """
    rewards = rewards.float()
    last = _last_positions(mask)
    rows = torch.nonzero(last >= 0).flatten()
    scores = torch.zeros(rewards.shape[0])
    scores[rows] = rewards[rows, last[rows]]
    credit = rewards * mask.float()
    prev = _previous_positions(mask, last)
    credit[rows, last[rows]] = torch.where(prev[rows] >= 0, rewards[rows, prev[rows].clamp(min=0)], 0.0)
    return scores, credit


def verl_grpo_outcome(scores: torch.Tensor, index: Sequence, norm_by_std: bool = True,
                      epsilon: float = 1e-6) -> torch.Tensor:
    """(batch,) GRPO advantage of each response in its group, with verl's conventions (float64).

    A group of one keeps its score (mean 0, std 1), as verl does; ours gives such a response 0.
    """
    scores = scores.double()
    out = torch.empty_like(scores)
    groups: dict[Any, list[int]] = {}
    for i, uid in enumerate(index):
        groups.setdefault(uid, []).append(i)
    for rows in groups.values():
        s = scores[rows]
        mean, std = (s.mean(), s.std()) if len(rows) > 1 else (s.new_tensor(0.0), s.new_tensor(1.0))
        out[rows] = (s - mean) / (std + epsilon) if norm_by_std else s - mean
    return out


def group_ids_of(index: Sequence) -> torch.Tensor:
    """(batch,) integer group ids from verl's uids, numbered in order of first appearance."""
    ids: dict[Any, int] = {}
    return torch.tensor([ids.setdefault(uid, len(ids)) for uid in index], dtype=torch.long)


def dense_credit_rewards(
    model,
    tokenizer,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    scores: torch.Tensor,
    index: Sequence,
    credit: VerlCreditConfig,
    answers: Sequence[str | None] | None = None,
) -> torch.Tensor:
    """The reward manager's batch step: token credits of ``credit`` (``acpo.pipeline.assign_credit``) written with
    the scores in the dense layout. Prompts left-padded, responses right-padded (verl's layout and ours)."""
    method = credit.method()
    mask = response_mask.long().cpu()
    lengths = mask.sum(-1).tolist()
    response_ids = response_ids.cpu()
    decoded = [decode_with_offsets(tokenizer, response_ids[i, :n].tolist()) for i, n in enumerate(lengths)]
    credited = assign_credit(
        model, tokenizer, prompt_ids.cpu(), prompt_mask.long().cpu(), response_ids, mask, [t for t, _ in decoded],
        [o for _, o in decoded], {method.name: method}, group_ids=group_ids_of(index), rewards=scores.float().cpu(),
        answers=answers, segmentation=credit.segmentation, segment_config=credit.segment,
        advantage_config=credit.advantage, batch_size=credit.batch_size)
    return write_dense_rewards(scores.cpu(), credited.token_credit[method.name], mask)


def step_credit_advantages(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence,
    config: Any = None,
    *,
    credit: VerlCreditConfig | None = None,
    **unused,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator contract: (advantages, returns), both (batch, response_length) float32, 0 off the mask.

    ``token_level_rewards`` holds the dense layout of ``write_dense_rewards`` (verl's own layout, the score on the
    last token and 0 elsewhere, reads as zero credit); ``index`` groups responses by prompt; ``config`` is verl's
    ``AlgoConfig`` (``norm_adv_by_std_in_grpo`` is read from it). Extra keyword arguments verl may add
    (``reward_baselines``) are ignored.
    """
    cc = credit or VerlCreditConfig()
    if token_level_rewards.dim() != 2 or response_mask.shape != token_level_rewards.shape:
        raise ValueError(f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
                         f"{tuple(response_mask.shape)} must both be (batch, response_length)")
    if len(index) != token_level_rewards.shape[0]:
        raise ValueError(f"index has {len(index)} entries for {token_level_rewards.shape[0]} responses")
    device = token_level_rewards.device
    mask = response_mask.detach().long().cpu()
    scores, token_credit = read_dense_rewards(token_level_rewards.detach().cpu(), mask)
    norm_by_std = True if config is None else bool(getattr(config, "norm_adv_by_std_in_grpo", True))
    outcome = verl_grpo_outcome(scores, index, norm_by_std, cc.epsilon).float()
    advantages = cc.method().compose(outcome, token_credit, mask, cc.advantage).float() * mask
    advantages = advantages.to(device)
    return advantages, advantages.clone()


def reward_manager_class(credit: VerlCreditConfig):
    """A verl reward-loop manager: verl's ``naive`` scoring per response, then ``dense_credit_rewards`` over the
    batch (its ``assemble_rm_scores``, which verl calls with the whole batch). The scorer loads on first use."""
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    class StepCreditRewardManager(NaiveRewardManager):
        credit_config = credit
        _scorer: tuple | None = None

        @classmethod
        def scorer(cls):
            if cls._scorer is None and cls.credit_config.model is not None:
                from acpo.models import load_policy

                device = "cuda" if torch.cuda.is_available() else "cpu"
                cls._scorer = load_policy(cls.credit_config.model, device=device)
            return cls._scorer or (None, None)

        @classmethod
        def assemble_rm_scores(cls, data, scores: list[float]) -> torch.Tensor:
            batch = data.batch
            prompt_len = batch["prompts"].shape[1]
            attention = batch["attention_mask"]
            model, tokenizer = cls.scorer()
            references = [r.get("ground_truth") if isinstance(r, dict) else None
                          for r in data.non_tensor_batch.get("reward_model", [None] * len(data))]
            index = data.non_tensor_batch.get("uid")
            if index is None:
                raise ValueError("the step-credit reward manager groups responses by prompt: the batch needs 'uid'")
            if model is None:  # uniform: no scorer, zero credit, verl's own layout
                return write_dense_rewards(torch.tensor(scores), torch.zeros(batch["responses"].shape),
                                           attention[:, prompt_len:].cpu())
            return dense_credit_rewards(model, tokenizer, batch["prompts"], attention[:, :prompt_len],
                                        batch["responses"], attention[:, prompt_len:], torch.tensor(scores),
                                        list(index), cls.credit_config, references)

    return StepCreditRewardManager


def register(name: str = ESTIMATOR, credit: VerlCreditConfig | None = None) -> str:
    """Register the estimator (``algorithm.adv_estimator=<name>``) and the reward manager
    (``reward.reward_manager.name=<name>``) with verl, both for ``credit``; returns the name."""
    from verl.experimental.reward_loop.reward_manager import register as register_reward_manager
    from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    cc = credit or VerlCreditConfig()

    def estimator(token_level_rewards, response_mask, index=None, config=None, **kwargs):
        if index is None:
            raise ValueError(f"adv_estimator={name} groups responses by prompt: the batch needs verl's 'uid'")
        return step_credit_advantages(token_level_rewards, response_mask, index, config, credit=cc, **kwargs)

    estimator.__name__ = estimator.__qualname__ = name
    ADV_ESTIMATOR_REGISTRY.pop(name, None)  # registering a name again replaces its settings
    REWARD_MANAGER.pop(name, None)
    register_adv_est(name)(estimator)
    register_reward_manager(name)(reward_manager_class(cc))
    return name


try:  # registering needs verl; without it the functions above still work
    import verl.trainer.ppo.core_algos  # noqa: F401
except ImportError:
    pass
else:
    register()
