"""``entropy_mask``: gradient only on the top-rho highest-entropy tokens of the batch.

The 80/20 forking-token baseline (METHODS.md §3.5). A token's advantage is
the outcome advantage where it is selected, 0 elsewhere; the step credit is
the share of the step's tokens that keep their gradient.
"""

from __future__ import annotations

import torch

from acpo.advantage import AdvantageConfig
from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register


def top_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, rho: float = 0.2) -> torch.Tensor:
    """(batch, time) bool: the ceil(rho * n) highest-entropy unpadded tokens of the batch."""
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"entropy_mask rho must be in (0, 1], got {rho}")
    m = mask.bool()
    n = int(m.sum())
    keep = torch.zeros_like(m)
    if n == 0:
        return keep
    k = max(1, int(torch.ceil(torch.tensor(rho * n)).item()))
    flat = entropy.masked_fill(~m, float("-inf")).reshape(-1)
    keep.view(-1)[torch.topk(flat, k).indices] = True
    return keep


@register("entropy_mask")
class EntropyMaskCredit(CreditMethod):
    signed, unit = False, "share of tokens kept"
    meaning = ("the share of the step's tokens among the highest-entropy ones, which keep their gradient: darker = "
               "more of the step is trained")
    token_level = True

    def __init__(self, rho: float = 0.2):
        self.rho = rho

    def token_credit(self, batch, result=None, cfg: AdvantageConfig = AdvantageConfig(), normalised=None):
        """1 where the token keeps its gradient, 0 elsewhere."""
        return top_entropy_mask(batch.entropy, batch.completion_mask, self.rho).float()

    def compose(self, advantages, token_credit, mask, cfg: AdvantageConfig = AdvantageConfig()) -> torch.Tensor:
        return advantages.float()[:, None] * token_credit * mask.float()

    def credits(self, batch: CreditBatch) -> CreditResult:
        keep = top_entropy_mask(batch.entropy, batch.completion_mask, self.rho)
        return CreditResult(batch.step_means(keep.float()))
