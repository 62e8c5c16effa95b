"""``hapo``: entropy-capacity reallocation at the token level (METHODS.md §3.3).

    A_{i,t} = A_i + alpha * sign(A_i) * clip(z_{i,t}, -|A_i| / phi, +|A_i| / phi)

with z the entropy z-scored over the tokens of completion i. High-entropy
(forking) tokens get more of the advantage, low-entropy ones less, and since
the change is at most (alpha / phi) |A_i| no token flips sign. The step credit
shown in tables is the step mean of A_{i,t} - A_i.
"""

from __future__ import annotations

import torch

from acpo.advantage import AdvantageConfig
from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register

QUADRANTS = ("pos_high", "pos_low", "neg_high", "neg_low")


def entropy_z(entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) float64: each token's entropy z-scored over the tokens of its completion; padding gets 0."""
    m = mask.bool()
    ent = entropy.double()
    n = m.sum(-1, keepdim=True).clamp(min=1)
    mean = (ent * m).sum(-1, keepdim=True) / n
    var = (((ent - mean) * m) ** 2).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
    return torch.where(m, (ent - mean) / (var.sqrt() + 1e-6), 0.0)


def hapo_compose(advantages: torch.Tensor, z: torch.Tensor, mask: torch.Tensor, alpha: float = 0.2,
                 phi: float = 2.0) -> torch.Tensor:
    """(batch, time) A + alpha sign(A) clip(z, -|A| / phi, |A| / phi); padding gets 0."""
    a = advantages.double()[:, None]
    bound = a.abs() / phi
    adj = alpha * torch.sign(a) * torch.maximum(torch.minimum(z.double(), bound), -bound)
    return ((a + adj) * mask.bool()).float()


def hapo_token_advantages(
    advantages: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, alpha: float = 0.2, phi: float = 2.0
) -> torch.Tensor:
    """(batch, time) HAPO token advantages; padding gets 0."""
    return hapo_compose(advantages, entropy_z(entropy, mask), mask, alpha, phi)


def hapo_quadrants(token_advantages: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Share of gradient mass sum|A_t| per (advantage sign) x (entropy vs batch median) quadrant."""
    m = mask.bool()
    adv, ent = token_advantages[m].double(), entropy[m].double()
    if adv.numel() == 0:
        return {q: 0.0 for q in QUADRANTS}
    high = ent > ent.median()
    pos = adv > 0
    mass = adv.abs()
    total = float(mass.sum()) or 1.0
    parts = {"pos_high": pos & high, "pos_low": pos & ~high, "neg_high": ~pos & high, "neg_low": ~pos & ~high}
    return {q: float(mass[sel].sum()) / total for q, sel in parts.items()}


@register("hapo")
class HapoCredit(CreditMethod):
    unit = "advantage"
    meaning = ("how far HAPO moves the step's tokens from the outcome advantage (step mean of token advantage − "
               "outcome advantage): its sign follows the outcome, its size the step's entropy; not blame")
    token_level = True

    def __init__(self, alpha: float = 0.2, phi: float = 2.0):
        self.alpha, self.phi = alpha, phi

    def token_credit(self, batch, result=None, cfg: AdvantageConfig = AdvantageConfig(), normalised=None):
        """The entropy z-score of each token in its completion."""
        return entropy_z(batch.entropy, batch.completion_mask).float()

    def compose(self, advantages, token_credit, mask, cfg: AdvantageConfig = AdvantageConfig()) -> torch.Tensor:
        return hapo_compose(advantages, token_credit, mask, self.alpha, self.phi)

    def credits(self, batch: CreditBatch) -> CreditResult:
        adj = self.token_advantages(batch, None) - batch.advantages.float()[:, None]
        return CreditResult(batch.step_means(adj))

    def batch_metrics(self, token_advantages, batch: CreditBatch) -> dict[str, float]:
        """Share of gradient mass per (advantage sign) x (entropy vs median) quadrant."""
        quadrants = hapo_quadrants(token_advantages, batch.entropy, batch.completion_mask)
        return {f"hapo/{k}": v for k, v in quadrants.items()}
