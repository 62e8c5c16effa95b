"""verl's reward-manager + estimator contract, without verl (test_verl_against_verl.py runs verl's own code).

The reward manager writes each method's token credit as dense rewards (score on the last token); the
estimator reads them back and composes them with verl's GRPO outcome advantage.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import acpo
from acpo.advantage import AdvantageConfig
from acpo.integrations.verl import (VerlCreditConfig, dense_credit_rewards, group_ids_of, read_dense_rewards,
                                    step_credit_advantages, verl_grpo_outcome, write_dense_rewards)
from acpo.pipeline import assign_credit, make_credit
from acpo.tokens import encode_with_offsets, pad_batch

UIDS = ["a", "a", "a", "a", "b"]  # a group of four and a lone response


def batch(lengths=(6, 4, 5, 3, 2), width=7, scores=(1.0, 0.0, 0.0, 1.0, 0.7)):
    """verl's own layout: responses right-padded, the score on each response's last token."""
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    rewards = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        rewards[i, n - 1] = scores[i]
    return rewards, mask


def test_uniform_is_grpo_with_verls_conventions_by_hand():
    rewards, mask = batch()
    adv, ret = step_credit_advantages(rewards, mask, UIDS)
    a = 0.5 / math.sqrt(1 / 3) / (1 + 1e-6 / math.sqrt(1 / 3))  # (1 - 0.5) / (sample std + 1e-6)
    expected = torch.tensor([a, -a, -a, a, 0.7])[:, None] * mask  # the lone response keeps its score, as in verl
    assert adv.dtype == ret.dtype == torch.float32 and adv.shape == ret.shape == mask.shape
    torch.testing.assert_close(adv, expected.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ret, adv)


def test_dr_grpo_when_verl_does_not_divide_by_std():
    rewards, mask = batch()
    adv, _ = step_credit_advantages(rewards, mask, UIDS, SimpleNamespace(norm_adv_by_std_in_grpo=False))
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.5, -0.5, -0.5, 0.5, 0.7]))


def test_dense_layout_round_trip_by_hand():
    """Score on the last token, credit everywhere else; the last token reads the credit before it."""
    scores = torch.tensor([1.0, 0.0, 0.5])
    credit = torch.tensor([[0.1, 0.2, 0.3, 0.4], [-1.0, 7.0, 7.0, 7.0], [0.6, 0.6, 0.6, 0.6]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 1]])  # row 2 has a hole (a tool output)
    dense = write_dense_rewards(scores, credit, mask)
    torch.testing.assert_close(dense, torch.tensor([[0.1, 0.2, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                                    [0.6, 0.6, 0.0, 0.5]]))
    assert torch.allclose(dense.sum(-1) - torch.tensor([0.3, 0.0, 1.2]), scores)  # not verl's sum: read it back
    got_scores, got_credit = read_dense_rewards(dense, mask)
    torch.testing.assert_close(got_scores, scores)
    torch.testing.assert_close(got_credit, torch.tensor([[0.1, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0],
                                                         [0.6, 0.6, 0.0, 0.6]]))


def test_sign_preserving_composition_of_a_written_credit_by_hand():
    scores = torch.tensor([1.0, 0.0])
    credit = torch.tensor([[2.0, -0.5, 0.0], [1.0, -1.0, 0.0]])
    mask = torch.ones(2, 3, dtype=torch.long)
    cfg = VerlCreditConfig("mean_logprob", model="unused", advantage=AdvantageConfig(credit_scale=0.5))
    adv, _ = step_credit_advantages(write_dense_rewards(scores, credit, mask), mask, ["p", "p"], credit=cfg)
    a = 0.5 / (math.sqrt(0.5) + 1e-6)  # verl's GRPO: (1 - 0.5) / (std + eps), std = sqrt(0.5)
    # weight = clip(1 + 0.5 sign(A) c, 0.2, 3); the last token takes the credit before it (-0.5, then -1)
    expected = torch.tensor([[a * 2.0, a * 0.75, a * 0.75], [-a * 0.5, -a * 1.5, -a * 1.5]])
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)


def explained_batch(char_tok):
    """Four responses to one prompt and one lone one; every last line is several tokens long."""
    prompts = ["Q: 7-3*4+2=?\n"] * 4 + ["Q: 1+1=?\n"]
    responses = ["3*4=12\n7-12=-5\n-5+2=-3\n#### -3", "3*4=12\n7-12=5\n#### 7", "7-3=4\n4*4=16\n#### 18",
                 "3*4=12\n#### -3", "1+1=2\n#### 2"]
    enc = [encode_with_offsets(char_tok, r) for r in responses]
    tensors = pad_batch([char_tok(p, add_special_tokens=False)["input_ids"] for p in prompts], [e[0] for e in enc],
                        char_tok.pad_token_id)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    return prompts, responses, enc, tensors, scores


CREDIT_OPTIONS = {"mc_reset": {"samples": 2, "max_new_tokens": 4, "batch_size": 16}}


@pytest.mark.parametrize("credit", sorted(acpo.CREDIT_METHODS))
def test_every_registered_credit_through_manager_and_estimator_equals_the_pipeline(credit, char_tok):
    """What verl trains on = the pipeline's token advantages with verl's outcome advantage (step credits: exactly;
    token-level ones: on every token but the last, which takes its predecessor's credit)."""
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok))
    prompts, responses, enc, tensors, scores = explained_batch(char_tok)
    answers = ["-3", "-3", "-3", "-3", "2"]
    cc = VerlCreditConfig(credit, model="tiny", segmentation="lines", credit_options=CREDIT_OPTIONS.get(credit, {}),
                          probe="#### ")
    dense = dense_credit_rewards(model, char_tok, *tensors, scores, UIDS, cc, answers)
    mask = tensors[3]
    adv, _ = step_credit_advantages(dense, mask, UIDS, credit=cc)

    outcome = verl_grpo_outcome(scores, UIDS).float()
    method = make_credit(credit, CREDIT_OPTIONS.get(credit), probe="#### ")
    reference = assign_credit(model, char_tok, *tensors, responses, [e[1] for e in enc], {credit: method},
                              group_ids=group_ids_of(UIDS), rewards=scores, advantages=outcome, answers=answers,
                              segmentation="lines").token_advantages[credit]
    last = mask.sum(-1) - 1
    body = mask.bool().clone()
    body[torch.arange(len(last)), last] = False
    torch.testing.assert_close(adv[body], reference[body], rtol=0, atol=1e-5)
    if not method.token_level:  # the last token is in the last line's step, which has more than one token
        torch.testing.assert_close(adv, reference, rtol=0, atol=1e-5)
    assert torch.all(adv[~mask.bool()] == 0)


def test_uniform_needs_no_scorer_and_every_other_credit_says_it_needs_one():
    assert VerlCreditConfig("uniform").model is None
    for credit in sorted(acpo.CREDIT_METHODS.keys() - {"uniform"}):
        with pytest.raises(ValueError, match=rf"credit '{credit}' reads a scorer model .* set "
                                             r"VerlCreditConfig\(model=...\)"):
            VerlCreditConfig(credit)


def test_bad_settings_and_shapes_say_what_to_do():
    rewards, mask = batch()
    with pytest.raises(ValueError, match="unknown credit method 'vineppo'; valid: entropy_mask"):
        VerlCreditConfig("vineppo")
    with pytest.raises(ValueError, match="unknown segmentation 'words'"):
        VerlCreditConfig(segmentation="words")
    with pytest.raises(ValueError, match="index has 2 entries for 5"):
        step_credit_advantages(rewards, mask, ["a", "b"])
    with pytest.raises(ValueError, match=r"must both be \(batch, response_length\)"):
        step_credit_advantages(rewards, mask[:, :3], UIDS)


def test_old_credit_name_acpo_is_the_information_gain():
    assert VerlCreditConfig("acpo", model="x").credit == "info_gain"
