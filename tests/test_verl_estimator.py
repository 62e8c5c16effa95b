"""The verl advantage estimator's tensor contract, without verl (test_verl_against_verl.py runs verl's own code)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from acpo.advantage import AdvantageConfig
from acpo.credit.hapo import hapo_token_advantages
from acpo.integrations.verl import VerlCreditConfig, compute_advantage, step_credit_advantages
from acpo.segment import SegmentConfig

UIDS = ["a", "a", "a", "a", "b"]  # a group of four and a lone response


def batch(lengths=(6, 4, 5, 3, 2), width=7, scores=(1.0, 0.0, 0.0, 1.0, 0.7), seed=0):
    """verl's layout: responses right-padded, the score on each response's last token."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    rewards = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        rewards[i, n - 1] = scores[i]
    logp = -torch.rand(len(lengths), width, generator=g) * 3
    ent = torch.rand(len(lengths), width, generator=g) * 2
    return rewards, mask, logp, ent


def test_uniform_is_grpo_with_verls_conventions_by_hand():
    rewards, mask, _, _ = batch()
    adv, ret = step_credit_advantages(rewards, mask, UIDS)
    a = 0.5 / math.sqrt(1 / 3) / (1 + 1e-6 / math.sqrt(1 / 3))  # (1 - 0.5) / (sample std + 1e-6)
    expected = torch.tensor([a, -a, -a, a, 0.7])[:, None] * mask  # the lone response keeps its score, as in verl
    assert adv.dtype == ret.dtype == torch.float32 and adv.shape == ret.shape == mask.shape
    torch.testing.assert_close(adv, expected.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ret, adv)


def test_dr_grpo_when_verl_does_not_divide_by_std():
    rewards, mask, _, _ = batch()
    adv, _ = step_credit_advantages(rewards, mask, UIDS, SimpleNamespace(norm_adv_by_std_in_grpo=False))
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.5, -0.5, -0.5, 0.5, 0.7]))


def test_mean_logprob_is_the_factorised_reward_of_step_means_by_hand():
    rewards, mask, logp, _ = batch()
    cfg = VerlCreditConfig("mean_logprob", segment=SegmentConfig(fixed_tokens=2))
    adv, _ = step_credit_advantages(rewards, mask, UIDS, old_log_probs=logp, credit=cfg)
    outcome = step_credit_advantages(rewards, mask, UIDS)[0][:, 0].double()
    # reference in float64: step means over windows of 2 tokens, z-scored over all steps of each group
    steps = {i: [(s, min(s + 2, n)) for s in range(0, n, 2)] for i, n in enumerate(mask.sum(-1).tolist())}
    means = {(i, k): logp[i, a:b].double().mean() for i in steps for k, (a, b) in enumerate(steps[i])}
    expected = torch.zeros(mask.shape, dtype=torch.float64)
    for group in ([0, 1, 2, 3], [4]):
        vals = torch.stack([means[key] for key in means if key[0] in group])
        mu, sd = vals.mean(), (vals.std() if len(vals) > 1 else torch.tensor(0.0, dtype=torch.float64))
        for i in group:
            for k, (a, b) in enumerate(steps[i]):
                c_hat = (means[(i, k)] - mu) / (sd + 1e-4)
                weight = (1 + torch.sign(outcome[i]) * c_hat).clamp(0.2, 3.0)
                expected[i, a:b] = outcome[i] * weight
    torch.testing.assert_close(adv.double(), expected, rtol=0, atol=1e-5)
    assert torch.all(torch.sign(adv[mask.bool()]) == torch.sign(outcome[:, None].expand_as(adv)[mask.bool()]))


def test_a_hole_in_the_mask_gets_nothing_and_leaves_the_steps_alone():
    """Tool outputs inside a response (mask 0) are skipped: same advantages as the response without them."""
    rewards, mask, logp, _ = batch()
    cfg = VerlCreditConfig("mean_logprob", segment=SegmentConfig(fixed_tokens=2))
    plain, _ = step_credit_advantages(rewards, mask, UIDS, old_log_probs=logp, credit=cfg)
    # row 1 (4 tokens) becomes 4 tokens with a 2-token hole after the first two
    holed_mask, holed_logp, holed_rewards = mask.clone(), logp.clone(), rewards.clone()
    holed_mask[1] = torch.tensor([1, 1, 0, 0, 1, 1, 0])
    holed_logp[1, 4:6], holed_logp[1, 2:4] = logp[1, 2:4], -50.0  # the hole's log-probs must not count
    holed_rewards[1] = 0.0
    holed, _ = step_credit_advantages(holed_rewards, holed_mask, UIDS, old_log_probs=holed_logp, credit=cfg)
    assert torch.all(holed[1, 2:4] == 0) and holed[1, 6] == 0
    torch.testing.assert_close(holed[1, [0, 1, 4, 5]], plain[1, :4])
    torch.testing.assert_close(holed[[0, 2, 3, 4]], plain[[0, 2, 3, 4]])


@pytest.mark.parametrize("credit", ["uniform", "mean_logprob", "hapo", "entropy_mask"])
def test_an_empty_response_gets_zero_and_still_counts_in_its_groups_baseline(credit):
    rewards, mask, logp, ent = batch(lengths=(6, 4, 5, 3, 2))
    mask[1] = 0  # score 0, no tokens
    adv, _ = step_credit_advantages(rewards, mask, UIDS, old_log_probs=logp, entropys=ent,
                                    credit=VerlCreditConfig(credit))
    assert torch.all(adv[1] == 0) and torch.isfinite(adv).all()
    if credit == "uniform":  # the group's mean is still (1 + 0 + 0 + 1) / 4
        torch.testing.assert_close(adv[0, 0], step_credit_advantages(*batch()[:2], UIDS)[0][0, 0])


def test_hapo_and_entropy_mask_read_verls_entropies():
    rewards, mask, _, ent = batch()
    outcome = step_credit_advantages(rewards, mask, UIDS)[0][:, 0]
    adv, _ = step_credit_advantages(rewards, mask, UIDS, entropys=ent, credit=VerlCreditConfig("hapo"))
    torch.testing.assert_close(adv, hapo_token_advantages(outcome, ent, mask))  # mask is a prefix: same layout
    kept, _ = step_credit_advantages(rewards, mask, UIDS, entropys=ent, credit=VerlCreditConfig("entropy_mask"))
    n = int(mask.sum())
    assert int((kept != 0).sum()) == math.ceil(0.2 * n)  # the top 20% entropy tokens of the batch keep their advantage
    top = ent.masked_fill(mask == 0, -1).flatten().topk(math.ceil(0.2 * n)).indices
    torch.testing.assert_close(kept.flatten()[top], (outcome[:, None] * mask).flatten()[top])


def test_step_ids_set_the_steps():
    rewards, mask, logp, _ = batch()
    ids = torch.zeros_like(mask)
    ids[0] = torch.tensor([0, 0, 0, 1, 1, 1, 0])  # two steps of three tokens in row 0; one step elsewhere
    additive = VerlCreditConfig("mean_logprob", advantage=AdvantageConfig("grpo", "additive"))
    adv, _ = step_credit_advantages(rewards, mask, UIDS, old_log_probs=logp, step_ids=ids, credit=additive)
    assert len(set(adv[0, :3].tolist())) == 1 and len(set(adv[0, 3:6].tolist())) == 1 and adv[0, 0] != adv[0, 3]
    assert len(set(adv[1, :4].tolist())) == 1


def test_missing_inputs_and_bad_settings_say_what_to_do():
    rewards, mask, _, _ = batch()
    with pytest.raises(ValueError, match="needs old_log_probs.*compute_advantage"):
        step_credit_advantages(rewards, mask, UIDS, credit=VerlCreditConfig("mean_logprob"))
    with pytest.raises(ValueError, match="needs entropys"):
        step_credit_advantages(rewards, mask, UIDS, credit=VerlCreditConfig("hapo"))
    with pytest.raises(ValueError, match="cannot run inside verl.*valid: uniform"):
        VerlCreditConfig("acpo")
    with pytest.raises(ValueError, match="needs the text"):
        VerlCreditConfig(segmentation="lines")
    with pytest.raises(ValueError, match="index has 2 entries for 5"):
        step_credit_advantages(rewards, mask, ["a", "b"])
    with pytest.raises(ValueError, match="old_log_probs .* must match"):
        step_credit_advantages(rewards, mask, UIDS, old_log_probs=torch.zeros(5, 3))


def test_compute_advantage_fills_a_verl_style_batch():
    rewards, mask, logp, _ = batch()
    data = SimpleNamespace(batch={"token_level_rewards": rewards, "response_mask": mask, "old_log_probs": logp},
                           non_tensor_batch={"uid": UIDS})
    cfg = VerlCreditConfig("mean_logprob")
    out = compute_advantage(data, credit=cfg)
    expected, _ = step_credit_advantages(rewards, mask, UIDS, old_log_probs=logp, credit=cfg)
    torch.testing.assert_close(out.batch["advantages"], expected)
    torch.testing.assert_close(out.batch["returns"], expected)
