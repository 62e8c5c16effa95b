"""Policy loss against hand-computed values."""

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
