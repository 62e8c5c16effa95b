"""The estimator inside verl's own advantage step, against verl's GRPO (runs where verl imports).

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

from acpo.integrations import verl as acpo_verl  # noqa: E402  (registers acpo_step_credit)


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
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask,
                                        "old_log_probs": -torch.rand(b, width, generator=g) * 4,
                                        "entropys": torch.rand(b, width, generator=g) * 2},
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


def test_the_registered_name_is_verls_to_look_up():
    assert core_algos.get_adv_estimator_fn(acpo_verl.ESTIMATOR).__name__ == acpo_verl.ESTIMATOR


def test_verls_advantage_step_passes_no_log_probs_so_mean_logprob_says_how_to_get_them():
    name = acpo_verl.register("acpo_mean_logprob_test", acpo_verl.VerlCreditConfig("mean_logprob"))
    with pytest.raises(ValueError, match="needs old_log_probs.*acpo.integrations.verl.compute_advantage"):
        verl_compute_advantage(random_batch(0), adv_estimator=name, config=AlgoConfig())


@pytest.mark.parametrize("credit", ["mean_logprob", "hapo", "entropy_mask"])
def test_credits_from_a_dataproto_keep_verls_sign_and_mask(credit):
    data = random_batch(3)
    grpo = verl_compute_advantage(random_batch(3), adv_estimator="grpo", config=AlgoConfig()).batch["advantages"]
    adv = acpo_verl.compute_advantage(data, AlgoConfig(), acpo_verl.VerlCreditConfig(credit)).batch["advantages"]
    mask = data.batch["response_mask"].bool()
    assert adv.shape == grpo.shape and adv.dtype == grpo.dtype
    assert torch.all(adv[~mask] == 0)
    kept = adv[mask] != 0  # entropy_mask zeroes the tokens it drops; no credit flips a sign
    assert torch.all(torch.sign(adv[mask][kept]) == torch.sign(grpo[mask][kept]))
    assert not torch.equal(adv, grpo)
