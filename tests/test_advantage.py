"""Outcome and factorised advantages against hand-computed groups."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acpo.advantage import AdvantageConfig, factorised_advantages, normalize_step_credits, outcome_advantages


def test_grpo_matches_hand_computed_group():
    # rewards 1, 0, 0, 0: mean 0.25, sample std sqrt(0.75 / 3) = 0.5
    adv = outcome_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long), eps=0.0)
    assert adv.tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])


def test_dr_grpo_drops_the_std():
    adv = outcome_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long), mode="dr_grpo")
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_groups_are_normalised_separately_and_equal_groups_give_zero():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    for mode in ("grpo", "dr_grpo"):
        adv = outcome_advantages(rewards, groups, mode)
        assert not torch.isnan(adv).any()
        assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    adv = outcome_advantages(rewards, groups, "grpo", eps=0.0)
    s = math.sqrt((2 * (1 / 3) ** 2 + (2 / 3) ** 2) / 2)
    assert adv[3:].tolist() == pytest.approx([-1 / 3 / s, 2 / 3 / s, -1 / 3 / s])


def test_step_credits_normalised_over_the_whole_group():
    credits = [torch.tensor([1.0, 3.0]), torch.tensor([2.0]), torch.tensor([10.0, 20.0])]
    hat = normalize_step_credits(credits, torch.tensor([0, 0, 1]), eps=0.0)
    assert torch.cat(hat[:2]).tolist() == pytest.approx([-1.0, 1.0, 0.0])  # mean 2, std 1
    s = math.sqrt(50)
    assert hat[2].tolist() == pytest.approx([-5 / s, 5 / s])


def test_additive_and_sign_preserving_formulas():
    adv = torch.tensor([2.0, -1.0])
    hat = torch.tensor([[0.5, -3.0], [0.5, 4.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    add = factorised_advantages(adv, hat, mask, AdvantageConfig(composition="additive", credit_scale=0.5))
    assert torch.allclose(add, torch.tensor([[2.25, 0.5], [-0.75, 0.0]]))
    sp = factorised_advantages(adv, hat, mask, AdvantageConfig(composition="sign_preserving", w_min=0.2, w_max=3.0))
    # 2 * clip(1.5) = 3; 2 * clip(-2 -> 0.2) = 0.4; -1 * clip(1 - 0.5 = 0.5) = -0.5
    assert torch.allclose(sp, torch.tensor([[3.0, 0.4], [-0.5, 0.0]]))


@settings(max_examples=200, deadline=None)
@given(
    adv=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=5),
    hat=st.floats(-50, 50, allow_nan=False),
    lam=st.floats(0, 5),
)
def test_sign_preserving_never_flips_a_sign(adv, hat, lam):
    a = torch.tensor(adv)
    h = torch.full((len(adv), 3), hat)
    out = factorised_advantages(a, h, torch.ones(len(adv), 3), AdvantageConfig(credit_scale=lam))
    assert (out * a[:, None] >= 0).all()
    assert (out.abs() >= 0.2 * a[:, None].abs() - 1e-6).all()
