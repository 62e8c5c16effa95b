"""Step credit methods, one file each, behind one registry (``get_credit_method``)."""

from acpo.credit.base import (CREDIT_ALIASES, CREDIT_METHODS, CreditBatch, CreditMethod, CreditResult, credit_name,
                               get_credit_method, renamed_credit_columns)
from acpo.credit import (  # noqa: F401  (registers them)
    entropy_mask, hapo, info_gain, mc_reset, mean_logprob, result_logprob, uniform, verified_steps)
from acpo.credit.hapo import hapo_quadrants, hapo_token_advantages
from acpo.credit.info_gain import DEFAULT_PROBE, answer_values, answer_values_naive
from acpo.credit.mc_reset import mc_step_credits

__all__ = [
    "CREDIT_ALIASES",
    "CREDIT_METHODS",
    "CreditBatch",
    "CreditMethod",
    "CreditResult",
    "DEFAULT_PROBE",
    "answer_values",
    "answer_values_naive",
    "credit_name",
    "get_credit_method",
    "hapo_quadrants",
    "hapo_token_advantages",
    "mc_step_credits",
    "renamed_credit_columns",
]
