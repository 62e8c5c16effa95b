"""ACPO's entropy regulation (acpo.regulation) against hand-computed values."""

import math

import pytest
import torch

from acpo.loss import policy_loss
from acpo.regulation import adapt_entropy_coef, entropy_weights
from acpo.stats import token_stats


def test_beta_grows_when_entropy_falls_below_target_and_is_clipped():
    # 0.01 * exp(2 * (1.0 - 0.8)) = 0.014918
    assert adapt_entropy_coef(0.01, 1.0, 0.8, eta=2.0, lowest=0.0, highest=1.0) == pytest.approx((0.014918, 1.0),
                                                                                                  abs=1e-6)
    assert adapt_entropy_coef(0.01, 1.0, 0.8, eta=2.0, lowest=0.0, highest=0.012) == (0.012, 1.0)
    # 0.01 * exp(2 * (1.0 - 1.5)) = 0.003679, below the floor 0.005
    assert adapt_entropy_coef(0.01, 1.0, 1.5, eta=2.0, lowest=0.005, highest=1.0) == (0.005, 1.0)
    assert adapt_entropy_coef(0.01, 0.0, 0.3, eta=2.0, lowest=0.0, highest=1.0) == (0.01, 0.3)  # H* from step 1


def test_bonus_weights_fall_on_the_top_fraction_of_steps_by_absolute_normalised_credit():
    # one group: credits [1, 0, -1] and [3, 0]; mean 0.6, sample std sqrt(9.2 / 4) = 1.5166;
    # |c_hat| = 0.264, 0.396, 1.055 | 1.582, 0.396: the top 40% (ceil(0.4 * 5) = 2 steps) are c2's step 0 and
    # c1's step 2
    credits = [torch.tensor([1.0, 0.0, -1.0]), torch.tensor([3.0, 0.0])]
    step_index = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    w = entropy_weights(0.5, credits, torch.tensor([0, 0]), step_index, mask, top_frac=0.4)
    assert torch.equal(w, torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.0, 0.0, 0.0]]))


def test_bonus_gradient_on_the_logits_is_minus_beta_times_the_entropy_gradient():
    # H = -sum_v p_v log p_v; dH/dz_j = -p_j (log p_j + H). With zero advantages the loss is the bonus alone,
    # -(1/n) sum_t w_t H_t (token mean over n tokens), so dL/dz_{t,j} = (w_t / n) p_j (log p_j + H_t).
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 4, 0]])
    lp, ent = token_stats(logits, targets)
    weight = torch.tensor([[0.7, 0.0, 0.2]], dtype=torch.float64)
    loss, _ = policy_loss(lp, lp.detach(), torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3),
                          entropy=ent, entropy_weight=weight)
    loss.backward()
    z = logits.detach()[0]
    expected = torch.zeros_like(z)
    for t in range(3):
        p = [math.exp(v) for v in torch.log_softmax(z[t], -1).tolist()]
        h = -sum(pj * math.log(pj) for pj in p)
        expected[t] = torch.tensor([float(weight[0, t]) / 3 * pj * (math.log(pj) + h) for pj in p])
    assert torch.allclose(logits.grad[0], expected, atol=1e-12)
    assert logits.grad[0, 1].abs().max() == 0  # a token outside the chosen steps gets no bonus gradient
