"""The reward manager and the estimator inside verl's own reward and advantage steps, against verl's GRPO
(runs where verl imports).

verl pins transformers < 5.11, so it lives in its own environment (docs/VERL.md):

    python3 -m venv .venv-verl && .venv-verl/bin/pip install -r requirements-verl.txt -c constraints.txt
    .venv-verl/bin/python -m pytest tests/test_verl_against_verl.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl is not installed (docs/VERL.md)")
from verl import DataProto  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage as verl_compute_advantage  # noqa: E402

from acpo.integrations import verl as acpo_verl  # noqa: E402  (registers acpo_step_credit, estimator and manager)


def random_batch(seed: int, n_groups: int = 4, width: int = 9):
    """Groups of 1 to 5 responses (some with equal rewards), right-padded, the score on the last token."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 6, (n_groups,), generator=g).tolist()
    uids = np.array([f"p{j}" for j, s in enumerate(sizes) for _ in range(s)], dtype=object)
    b = len(uids)
    lengths = torch.randint(1, width + 1, (b,), generator=g)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    scores = torch.randint(0, 2, (b,), generator=g).float()
    scores[uids == "p0"] = 1.0  # one group with no signal
    rewards = torch.zeros(b, width)
    rewards[torch.arange(b), lengths - 1] = scores
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors={"uid": uids})
    return data


@pytest.mark.parametrize("norm_by_std", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_uniform_credit_through_verls_compute_advantage_equals_verls_grpo(seed, norm_by_std):
    config = AlgoConfig(norm_adv_by_std_in_grpo=norm_by_std)
    ours = verl_compute_advantage(random_batch(seed), adv_estimator=acpo_verl.ESTIMATOR,
                                  norm_adv_by_std_in_grpo=norm_by_std, config=config)
    grpo = verl_compute_advantage(random_batch(seed), adv_estimator="grpo", norm_adv_by_std_in_grpo=norm_by_std,
                                  config=config)
    torch.testing.assert_close(ours.batch["advantages"], grpo.batch["advantages"], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.batch["returns"], grpo.batch["returns"], rtol=0, atol=1e-6)


def test_the_registered_names_are_verls_to_look_up():
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    assert core_algos.get_adv_estimator_fn(acpo_verl.ESTIMATOR).__name__ == acpo_verl.ESTIMATOR
    assert get_reward_manager_cls(acpo_verl.ESTIMATOR).credit_config.credit == "uniform"


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A tiny Llama and its character tokenizer saved as a folder (safetensors), as a scorer model is given."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import char_tokenizer, tiny_llama

    folder = tmp_path_factory.mktemp("scorer")
    tok = char_tokenizer()
    tiny_llama(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), tok


def rollout_batch(tok, answers=("-3", "-3", "-3", "2", "2")):
    """What verl's reward loop hands the manager: left-padded prompts, right-padded responses, uids, ground truth."""
    prompts = ["Q: 7-3*4+2=?\n"] * 3 + ["Q: 1+1=?\n"] * 2
    responses = ["3*4=12\n7-12=-5\n-5+2=-3\n#### -3", "3*4=12\n7-12=5\n#### 7", "7-3=4\n4*4=16\n#### 18",
                 "1+1=2\n#### 2", "1+1=3\n#### 3"]
    p_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    r_ids = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in responses]
    P, R = max(map(len, p_ids)), max(map(len, r_ids))
    prompt_t = torch.full((5, P), tok.pad_token_id)
    resp_t = torch.full((5, R), tok.pad_token_id)
    attention = torch.zeros(5, P + R, dtype=torch.long)
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        prompt_t[i, P - len(p):] = torch.tensor(p)
        resp_t[i, : len(r)] = torch.tensor(r)
        attention[i, P - len(p): P + len(r)] = 1
    uids = np.array(["a", "a", "a", "b", "b"], dtype=object)
    ground_truth = np.array([{"ground_truth": a} for a in answers], dtype=object)
    scores = [1.0, 0.0, 0.0, 1.0, 0.0]
    return DataProto.from_dict(tensors={"prompts": prompt_t, "responses": resp_t, "attention_mask": attention},
                               non_tensors={"uid": uids, "reward_model": ground_truth}), scores


@pytest.mark.parametrize("credit", ["uniform", "mean_logprob", "hapo", "entropy_mask", "info_gain", "mc_reset"])
def test_every_credit_through_the_reward_manager_and_verls_compute_advantage(credit, scorer):
    """The manager's dense rewards go through verl's own compute_advantage with our estimator: same signs and
    mask as verl's grpo on the same scores, equal to it for uniform, and equal to our pipeline's advantages."""
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    from acpo.pipeline import assign_credit, make_credit
    from acpo.tokens import decode_with_offsets

    folder, tok = scorer
    options = {"mc_reset": {"samples": 2, "max_new_tokens": 4, "batch_size": 16}}.get(credit, {})
    cc = acpo_verl.VerlCreditConfig(credit, model=None if credit == "uniform" else folder, segmentation="lines",
                                    credit_options=options, probe="#### ")
    name = acpo_verl.register(f"acpo_test_{credit}", cc)
    data, scores = rollout_batch(tok)
    dense = get_reward_manager_cls(name).assemble_rm_scores(data, scores)
    prompt_len = data.batch["prompts"].shape[1]
    mask = data.batch["attention_mask"][:, prompt_len:]
    plain = torch.zeros(mask.shape)  # verl's naive layout of the same scores
    plain[torch.arange(5), mask.sum(-1) - 1] = torch.tensor(scores)

    def through_verl(rewards, estimator):
        batch = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                                    non_tensors={"uid": data.non_tensor_batch["uid"]})
        return verl_compute_advantage(batch, adv_estimator=estimator, config=AlgoConfig()).batch["advantages"]

    ours, grpo = through_verl(dense, name), through_verl(plain, "grpo")
    m = mask.bool()
    assert torch.all(ours[~m] == 0) and ours.dtype == grpo.dtype
    kept = ours[m] != 0  # entropy_mask zeroes the tokens it drops; no credit flips a sign
    assert torch.all(torch.sign(ours[m][kept]) == torch.sign(grpo[m][kept]))
    if credit == "uniform":
        torch.testing.assert_close(ours, grpo, rtol=0, atol=1e-6)
        return
    assert not torch.equal(ours, grpo)
    model = get_reward_manager_cls(name).scorer()[0]
    decoded = [decode_with_offsets(tok, data.batch["responses"][i, :n].tolist()) for i, n in
               enumerate(mask.sum(-1).tolist())]
    method = make_credit(credit, options, probe="#### ")
    outcome = acpo_verl.verl_grpo_outcome(torch.tensor(scores), list(data.non_tensor_batch["uid"])).float()
    reference = assign_credit(model, tok, data.batch["prompts"], data.batch["attention_mask"][:, :prompt_len],
                              data.batch["responses"], mask, [t for t, _ in decoded], [o for _, o in decoded],
                              {credit: method},
                              group_ids=acpo_verl.group_ids_of(list(data.non_tensor_batch["uid"])),
                              rewards=torch.tensor(scores), advantages=outcome,
                              answers=["-3", "-3", "-3", "2", "2"], segmentation="lines").token_advantages[credit]
    body = m.clone()
    body[torch.arange(5), mask.sum(-1) - 1] = False  # the last token (EOS) takes the credit of the one before it
    torch.testing.assert_close(ours[body], reference[body], rtol=0, atol=1e-5)
