"""Step credit as a verl advantage estimator: ``algorithm.adv_estimator=acpo_step_credit``.

verl (0.9) hands a registered estimator ``token_level_rewards``, ``response_mask``,
``index`` (the prompt uid of each row) and ``config`` (its ``AlgoConfig``), and takes
back ``(advantages, returns)``, both (batch, response_length). This module computes
them as our own trainer does: the outcome advantage of each response in its group,
then step credits folded in by the factorised reward (``acpo.advantage``). The
outcome part follows verl's GRPO exactly (a lone response keeps its score, std
with Bessel's correction, epsilon 1e-6, ``norm_adv_by_std_in_grpo``), so with
``uniform`` credit the estimator equals verl's ``grpo``.

Only credits computable from what verl holds are offered: ``uniform``,
``mean_logprob`` (the policy's token log-probs before the update, verl's ``old_log_probs``),
``hapo`` and ``entropy_mask`` (token entropies, verl's ``entropys``). verl's own
``compute_advantage`` passes neither tensor to a registered estimator, so those
three need a trainer whose advantage step calls ``compute_advantage`` below with
the batch (docs/VERL.md). There is no text here, so steps are token windows
(``fixed``, every ``fixed_tokens`` tokens) or the entropy segmentation, or ids a
caller computed (``step_ids``, e.g. from newline tokens).

Registering: ``register()`` (done on import when verl is installed; installing
acpo in verl's environment also declares it as a ``verl.plugins`` entry point, so
``import verl`` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from acpo.advantage import AdvantageConfig
from acpo.credit.base import CreditBatch, get_credit_method
from acpo.segment import SegmentConfig, Step, seg_entropy, seg_fixed

ESTIMATOR = "acpo_step_credit"
VERL_CREDITS = ("uniform", "mean_logprob", "hapo", "entropy_mask")
TOKEN_SEGMENTATIONS = {"fixed": seg_fixed, "entropy": seg_entropy}  # the two that need no text
NEEDS = {"mean_logprob": "old_log_probs", "hapo": "entropys", "entropy_mask": "entropys"}


@dataclass
class VerlCreditConfig:
    """What the estimator computes; the outcome mode comes from verl's ``norm_adv_by_std_in_grpo``."""

    credit: str = "uniform"  # one of VERL_CREDITS
    segmentation: str = "fixed"  # fixed | entropy (ignored when step_ids are given)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    # composition, lambda, w_min, w_max, eps of the step z-score; its `outcome` is verl's to choose, not read here
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    credit_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"rho": 0.2} for entropy_mask
    epsilon: float = 1e-6  # verl's GRPO epsilon

    def __post_init__(self):
        if self.credit not in VERL_CREDITS:
            raise ValueError(f"credit {self.credit!r} cannot run inside verl's advantage step; "
                             f"valid: {', '.join(VERL_CREDITS)} (the others need the model or the text)")
        if self.segmentation not in TOKEN_SEGMENTATIONS:
            raise ValueError(f"segmentation {self.segmentation!r} needs the text; inside verl use one of "
                             f"{', '.join(TOKEN_SEGMENTATIONS)} or pass step_ids")


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


def _is_prefix(keep: torch.Tensor) -> bool:
    """Whether every row's kept positions come first (verl's usual right padding, no holes)."""
    return bool((keep == (torch.arange(keep.shape[1])[None, :] < keep.sum(-1, keepdim=True))).all())


def _pack(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each row's kept positions moved to its front, zeros after (our layout: completion tokens first)."""
    if _is_prefix(keep):
        return values * keep
    out = torch.zeros_like(values)
    for i in range(values.shape[0]):
        row = values[i][keep[i]]
        out[i, : row.numel()] = row
    return out


def _unpack(packed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    if _is_prefix(keep):
        return packed * keep
    out = torch.zeros_like(packed)
    for i in range(packed.shape[0]):
        n = int(keep[i].sum())
        out[i][keep[i]] = packed[i, :n]
    return out


def _steps(n: int, bounds: Sequence[int]) -> list[Step]:
    edges = [0, *bounds, n]
    return [Step(k, a, b, 0, 0, "") for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])) if b > a]


def _steps_from_ids(ids: torch.Tensor) -> list[Step]:
    """Runs of equal id, in order, as steps."""
    bounds = [t for t in range(1, ids.numel()) if ids[t] != ids[t - 1]]
    return _steps(ids.numel(), bounds)


def step_credit_advantages(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence,
    config: Any = None,
    *,
    old_log_probs: torch.Tensor | None = None,
    entropys: torch.Tensor | None = None,
    step_ids: torch.Tensor | None = None,
    credit: VerlCreditConfig | None = None,
    **unused,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator contract: (advantages, returns), both (batch, response_length) float32, 0 off the mask.

    ``token_level_rewards`` (B, T) sums to each response's score; ``response_mask``
    (B, T) marks the response's own tokens (holes, e.g. tool outputs, allowed: they
    get 0 and are left out of the steps); ``index`` groups responses by prompt;
    ``config`` is verl's ``AlgoConfig`` (``norm_adv_by_std_in_grpo`` is read from it).
    ``old_log_probs``/``entropys`` (B, T) are needed by the credits that read them;
    ``step_ids`` (B, T) sets the steps instead of the segmentation. Extra keyword
    arguments verl may add (``reward_baselines``) are ignored.
    """
    cc = credit or VerlCreditConfig()
    if token_level_rewards.dim() != 2 or response_mask.shape != token_level_rewards.shape:
        raise ValueError(f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
                         f"{tuple(response_mask.shape)} must both be (batch, response_length)")
    b = token_level_rewards.shape[0]
    if len(index) != b:
        raise ValueError(f"index has {len(index)} entries for {b} responses")
    given = {"old_log_probs": old_log_probs, "entropys": entropys, "step_ids": step_ids}
    for name, value in given.items():
        if value is not None and value.shape != response_mask.shape:
            raise ValueError(f"{name} {tuple(value.shape)} must match response_mask {tuple(response_mask.shape)}")
    need = NEEDS.get(cc.credit)
    if need and given[need] is None:
        raise ValueError(f"credit {cc.credit!r} needs {need} (batch, response_length); verl's own "
                         "compute_advantage does not pass it: call acpo.integrations.verl.compute_advantage(data) "
                         "from the trainer's advantage step (docs/VERL.md)")
    if cc.segmentation == "entropy" and step_ids is None and entropys is None:
        raise ValueError("segmentation 'entropy' needs entropys; pass them, step_ids, or use 'fixed'")

    device = token_level_rewards.device
    keep = response_mask.detach().bool().cpu()
    norm_by_std = True if config is None else bool(getattr(config, "norm_adv_by_std_in_grpo", True))
    scores = token_level_rewards.detach().float().cpu().sum(-1)  # as verl: the reward sits on the last token
    outcome = verl_grpo_outcome(scores, index, norm_by_std, cc.epsilon).float()

    def packed(x: torch.Tensor | None) -> torch.Tensor:
        return _pack(x.detach().float().cpu(), keep) if x is not None else torch.zeros(keep.shape)

    logprobs, entropy = packed(old_log_probs), packed(entropys)
    ids = _pack(step_ids.detach().long().cpu(), keep) if step_ids is not None else None
    lengths = keep.sum(-1)
    rows = torch.nonzero(lengths > 0).flatten()  # an empty response has no step; it keeps advantage 0
    seg = TOKEN_SEGMENTATIONS[cc.segmentation]
    steps = [
        _steps_from_ids(ids[i, :n]) if ids is not None else _steps(n, seg("", range(n), entropy[i, :n], cc.segment))
        for i, n in zip(rows.tolist(), lengths[rows].tolist())
    ]
    completion_mask = torch.arange(keep.shape[1])[None, :] < lengths[rows, None]
    batch = CreditBatch(
        prompt_ids=torch.zeros((len(rows), 0), dtype=torch.long), prompt_mask=torch.zeros((len(rows), 0)),
        completion_ids=torch.zeros(completion_mask.shape, dtype=torch.long), completion_mask=completion_mask.long(),
        logprobs=logprobs[rows], entropy=entropy[rows], steps=steps, advantages=outcome[rows],
        group_ids=torch.tensor(_group_ids(index))[rows], rewards=scores[rows],
    )
    method = get_credit_method(cc.credit, **cc.credit_options)
    result = None if method.token_level else method.credits(batch)
    packed_adv = torch.zeros(keep.shape)
    packed_adv[rows] = method.token_advantages(batch, result, cc.advantage).float()
    advantages = _unpack(packed_adv, keep).to(device)
    return advantages, advantages.clone()


def _group_ids(index: Sequence) -> list[int]:
    ids: dict[Any, int] = {}
    return [ids.setdefault(uid, len(ids)) for uid in index]


def compute_advantage(data, config: Any = None, credit: VerlCreditConfig | None = None, step_ids_key: str = "step_ids"):
    """A verl ``DataProto`` in, the same with ``advantages`` and ``returns`` set: the advantage step of a trainer.

    Reads ``token_level_rewards``, ``response_mask``, ``old_log_probs``, ``entropys``
    and ``step_ids`` (where present) from ``data.batch`` and ``uid`` from
    ``data.non_tensor_batch``, which verl's own ``compute_advantage`` does not hand
    to an estimator.
    """
    batch = data.batch
    optional = {k: batch[k] for k in ("old_log_probs", "entropys") if k in batch.keys()}
    if step_ids_key in batch.keys():
        optional["step_ids"] = batch[step_ids_key]
    adv, ret = step_credit_advantages(batch["token_level_rewards"], batch["response_mask"],
                                      data.non_tensor_batch["uid"], config, credit=credit, **optional)
    batch["advantages"], batch["returns"] = adv, ret
    return data


def register(name: str = ESTIMATOR, credit: VerlCreditConfig | None = None) -> str:
    """Register the estimator with verl under ``name`` (``algorithm.adv_estimator=<name>``); returns the name."""
    from verl.trainer.ppo.core_algos import register_adv_est

    def estimator(token_level_rewards, response_mask, index=None, config=None, **kwargs):
        if index is None:
            raise ValueError(f"adv_estimator={name} groups responses by prompt: the batch needs verl's 'uid'")
        return step_credit_advantages(token_level_rewards, response_mask, index, config, credit=credit, **kwargs)

    estimator.__name__ = estimator.__qualname__ = name
    register_adv_est(name)(estimator)
    return name


try:  # registering needs verl; without it the functions above still work
    import verl.trainer.ppo.core_algos  # noqa: F401
except ImportError:
    pass
else:
    register()
