"""acpo: step-level credit assignment for RL with verifiable rewards.

    import acpo
    trace = acpo.explain(model, tokenizer, prompt, completion, method="info_gain", answer="42")
    print(trace.to_frame())
"""

from acpo.advantage import AdvantageConfig, factorised_advantages, outcome_advantages
from acpo.credit import CREDIT_METHODS, get_credit_method
from acpo.explain import explain, explain_batch
from acpo.segment import SEGMENTATIONS, SegmentConfig, Step, segment
from acpo.stats import token_stats
from acpo.trace import Trace

__all__ = [
    "AdvantageConfig",
    "CREDIT_METHODS",
    "SEGMENTATIONS",
    "SegmentConfig",
    "Step",
    "Trace",
    "explain",
    "explain_batch",
    "factorised_advantages",
    "get_credit_method",
    "outcome_advantages",
    "segment",
    "token_stats",
]
