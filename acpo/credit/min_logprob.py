"""``min_logprob``: a step's credit is the lowest log-probability of any of its tokens.

The cheapest error detector we have measured: a step the policy itself found
surprising is where a slip most often starts (docs/BENCHMARKS.md, credit
fidelity). Lowest credit = most suspicious step. The values are log-probs
(<= 0, in nats), not signed contributions to the reward.
"""

from __future__ import annotations

import torch

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register


@register("min_logprob")
class MinLogprobCredit(CreditMethod):
    signed, unit = False, "nats"
    def credits(self, batch: CreditBatch) -> CreditResult:
        return CreditResult([
            torch.stack([batch.logprobs[i, s.token_start : s.token_end].float().min() for s in steps])
            for i, steps in enumerate(batch.steps)
        ])
