"""``uniform`` (GRPO): every step gets credit 0, so every token gets the outcome advantage."""

from __future__ import annotations

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register


@register("uniform")
class UniformCredit(CreditMethod):
    needs_stats = needs_steps = False  # reads no step and no statistic: no scoring forward at all

    meaning = "0 for every step: GRPO gives every token the outcome advantage"

    def credits(self, batch: CreditBatch) -> CreditResult:
        return CreditResult([torch.zeros(len(steps)) for steps in batch.steps])
