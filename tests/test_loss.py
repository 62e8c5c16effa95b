"""Policy loss against hand-computed values."""

import math

import pytest
import torch

from acpo.loss import aggregate, k3_kl, policy_loss


def test_on_policy_loss_is_minus_mean_advantage():
    lp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, -2.0, 4.0]])
    loss, metrics = policy_loss(lp, lp.clone(), adv, torch.ones(1, 3))
    assert float(loss) == pytest.approx(-(1 - 2 + 4) / 3)
    assert metrics["clip_ratio/low_mean"] == 0 and metrics["clip_ratio/high_mean"] == 0


def test_clip_higher_bounds_the_ratio_per_sign():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, metrics = policy_loss(new, old, adv, torch.ones(1, 4), eps_low=0.2, eps_high=0.28)
    # A>0, r=1.5 -> clipped to 1.28; A<0, r=1.5 -> unclipped 1.5; A>0, r=0.5 -> 0.5; A<0, r=0.5 -> clipped 0.8
    expected = -(1.28 - 1.5 + 0.5 - 0.8) / 4
    assert float(loss) == pytest.approx(expected)
    assert metrics["clip_ratio/high_mean"] == pytest.approx(0.25)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(0.25)


def test_gradient_pushes_up_positive_advantage_tokens():
    lp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, _ = policy_loss(lp, lp.detach().clone(), torch.tensor([[2.0, -1.0]]), torch.ones(1, 2))
    loss.backward()
    assert lp.grad[0, 0] < 0 < lp.grad[0, 1]  # descending the loss raises token 0, lowers token 1


def test_aggregations():
    per = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert float(aggregate(per, mask, "token_mean", 3)) == pytest.approx(10 / 4)
    assert float(aggregate(per, mask, "seq_mean_token_mean", 3)) == pytest.approx((2 + 4) / 2)
    assert float(aggregate(per, mask, "dr_grpo", 5)) == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError, match="valid: token_mean"):
        aggregate(per, mask, "sum", 3)


def test_k3_is_nonnegative_and_zero_on_policy():
    lp = torch.tensor([-0.5, -1.0, -3.0])
    ref = torch.tensor([-0.7, -1.0, -1.0])
    kl = k3_kl(lp, ref)
    d = ref - lp
    assert torch.allclose(kl, torch.exp(d) - d - 1)
    assert (kl >= 0).all() and kl[1] == 0


def test_kl_term_enters_with_its_coefficient():
    lp = torch.zeros(1, 2)
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    with_kl, metrics = policy_loss(lp, lp, torch.zeros(1, 2), torch.ones(1, 2), ref_logprobs=ref, kl_coef=0.1)
    assert metrics["kl"] == pytest.approx(float(k3_kl(lp, ref).mean()))
    assert float(with_kl) == pytest.approx(0.1 * metrics["kl"])


def test_truncated_is_weight_against_float64_by_hand():
    from acpo.loss import truncated_is_weight

    train = [-0.5, -2.0, -0.1, -3.0]
    rollout = [-0.7, -1.0, -1.5, -3.0]  # weights e^0.2, e^-1, e^1.4 (capped at 3), 1
    got = truncated_is_weight(torch.tensor([train], dtype=torch.float64), torch.tensor([rollout], dtype=torch.float64),
                              cap=3.0)
    want = [math.exp(0.2), math.exp(-1.0), 3.0, 1.0]  # e^1.4 = 4.06 > 3
    assert got.dtype == torch.float64 and got[0].tolist() == pytest.approx(want, rel=1e-12)


def test_truncated_is_weight_multiplies_the_clipped_surrogate_only():
    """Per token: -w * min(r A, clip(r) A) + kl_coef * k3, reduced by the aggregation (float64)."""
    from acpo.loss import truncated_is_weight

    f64 = dict(dtype=torch.float64)
    lp = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, 0.0]], **f64)
    old = torch.tensor([[-1.1, -0.5, -1.0], [-0.3, -1.0, 0.0]], **f64)
    rollout = torch.tensor([[-1.0, -0.9, -0.2], [-0.4, -2.5, 0.0]], **f64)
    adv = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 3.0, 0.0]], **f64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ref = torch.tensor([[-1.5, -0.4, -2.0], [-0.2, -1.0, 0.0]], **f64)
    w = truncated_is_weight(old, rollout, cap=2.0)
    loss, _ = policy_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28, aggregation="token_mean",
                          ref_logprobs=ref, kl_coef=0.1, is_weight=w)
    total = 0.0
    for i in range(2):
        for t in range(3):
            if not mask[i, t]:
                continue
            r = math.exp(float(lp[i, t]) - float(old[i, t]))
            a = float(adv[i, t])
            weight = min(math.exp(float(old[i, t]) - float(rollout[i, t])), 2.0)
            surrogate = -min(r * a, min(max(r, 0.8), 1.28) * a)
            d = float(ref[i, t]) - float(lp[i, t])
            total += weight * surrogate + 0.1 * (math.exp(d) - d - 1)
    assert float(loss) == pytest.approx(total / 5, rel=1e-12)
    unweighted, _ = policy_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28,
                                ref_logprobs=ref, kl_coef=0.1)
    ones, _ = policy_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28,
                          ref_logprobs=ref, kl_coef=0.1, is_weight=torch.ones(2, 3, **f64))
    assert float(ones) == float(unweighted) != pytest.approx(float(loss))  # weight 1 (hf rollouts) is no weight


def test_rollout_mismatch_sums_over_real_tokens():
    from acpo.loss import rollout_mismatch

    train = torch.tensor([[-1.0, -0.5, -9.0]], dtype=torch.float64)
    rollout = torch.tensor([[-1.2, -0.5, 0.0]], dtype=torch.float64)  # the third token is padding
    got = rollout_mismatch(train, rollout, torch.tensor([[1, 1, 0]]))
    # k3 of KL(rollout || train) on the rollout's samples: e^(train - rollout) - (train - rollout) - 1
    assert got["sampling/sampling_logp_difference/mean"] == pytest.approx(0.2, rel=1e-12)
    assert got["sampling/kl_k3"] == pytest.approx(math.exp(0.2) - 0.2 - 1, rel=1e-12)
