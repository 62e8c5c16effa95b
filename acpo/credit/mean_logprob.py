"""``mean_logprob``: a step's credit is the mean log-probability of its tokens under the policy.

The cheap error detector that localised the first wrong step best on the demo
policy (docs/BENCHMARKS.md, credit fidelity): a step the policy itself found
surprising is where a slip most often starts. Lowest credit = most suspicious
step. The values are log-probs (<= 0, nats per token), not signed
contributions to the reward. (The step's *minimum* token log-prob was measured
too and localised less well.)
"""

from __future__ import annotations

from acpo.credit.base import CreditBatch, CreditMethod, CreditResult, register


@register("mean_logprob")
class MeanLogprobCredit(CreditMethod):
    signed, unit = False, "nats/token"
    meaning = "the mean log-probability of the step's tokens (≤ 0): darker = the model was less sure of this step"

    def credits(self, batch: CreditBatch) -> CreditResult:
        return CreditResult([m.float() for m in batch.step_means(batch.logprobs)])
