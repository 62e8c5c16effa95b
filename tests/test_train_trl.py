"""The trainer means what TRL means: its metrics, None rewards, reward functions, num_iterations, sampling."""

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from acpo.advantage import outcome_advantages
from acpo.config import make_config
from acpo.rewards import answer_reward
from acpo.reward_table import batch_metrics
from acpo.rollout import HFEngine, Sample
from acpo.trainer import Trainer, run

TINY = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 40, "eval_problems": 6, "trace_problems": 0,
        "pool_size": 200}
CALLS = []  # what the reward functions below were called with


def every_other_none(prompts, completions, answer, **kwargs):
    """The ``####`` check, but no reward (None) for every odd completion."""
    from acpo.rewards import hash_answer_reward

    scores = hash_answer_reward(prompts, completions, answer=answer)
    return [None if i % 2 else s for i, s in enumerate(scores)]


def length_reward(completions, **kwargs):
    """A TRL-style reward: keyword arguments only, records what it was given."""
    CALLS.append(kwargs | {"completions": completions})
    return [len(c) / 100 for c in completions]


def metrics_of(summary) -> list[dict]:
    return [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]


def trainer(tmp_path, name, **kw) -> Trainer:
    return Trainer(make_config({**TINY, "output_dir": str(tmp_path), "run_name": name, **kw}))


# ---------------------------------------------------------------- metrics
def logged(samples, rewards):
    """The trainer's batch metrics of one process's groups of 2, the reward named hash_answer_reward, an
    end-of-sequence id 2 and padding 0."""
    return batch_metrics(samples, rewards, rewards[:, None], ["hash_answer_reward"], 2, {2, 0})


def test_reward_and_reward_std_are_over_the_batch_as_trl_logs_them():
    # two groups whose rewards are each all equal: the mean of per-group stds is 0, the batch std is not
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])
    samples = [Sample([], ids, "", []) for ids in ([5, 2], [5, 6, 2], [5, 6, 7, 8], [5, 0])]
    m = logged(samples, rewards)
    assert m["reward"] == 0.5
    assert m["reward_std"] == pytest.approx(np.std([1, 1, 0, 0], ddof=1))
    assert m["frac_reward_zero_std"] == 1.0
    assert m["completions/mean_length"] == 2.75 and m["completions/max_length"] == 4
    assert m["completions/clipped_ratio"] == 0.25  # only [5, 6, 7, 8] ends without end-of-sequence or padding
    assert m["rewards/hash_answer_reward/mean"] == 0.5


def test_none_rewards_are_left_out_of_the_logged_reward():
    rewards = torch.tensor([1.0, math.nan, 0.0, 0.0])
    samples = [Sample([], [2], "", [])] * 4
    m = logged(samples, rewards)
    known = [1.0, 0.0, 0.0]
    assert m["reward"] == pytest.approx(np.mean(known))
    assert m["reward_std"] == pytest.approx(np.std(known, ddof=1))
    assert m["frac_reward_zero_std"] == 0.5  # the group [1, None] has one reward, so no std: not "zero std"


def test_every_step_logs_trls_metrics(tmp_path):
    summary = run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": "m", "recipe": "grpo", "steps": 2,
                               "warmup_steps": 4, "lr": 1e-3}))
    lines = [line for line in metrics_of(summary) if line["step"] > 0]
    for line in lines:
        for key in ("learning_rate", "grad_norm", "completions/mean_length", "completions/clipped_ratio",
                    "num_tokens", "rewards/hash_answer_reward/mean", "reward", "reward_std"):
            assert key in line, key
        assert line["reward"] == line["rewards/hash_answer_reward/mean"]  # one reward function, weight 1
        assert line["grad_norm"] > 0
    # the learning rate optimizer step s used (as the Trainer of transformers logs it): lr s / 4 in the warm-up
    assert [line["learning_rate"] for line in lines] == pytest.approx([1e-3 * 1 / 4, 1e-3 * 2 / 4])
    # num_tokens: prompt + completion tokens trained on so far, growing by each batch
    assert 0 < lines[0]["num_tokens"] < lines[1]["num_tokens"]


def test_a_shaped_reward_has_its_own_name(tmp_path):
    # stage 2 from step 1 on, with the confidence-weighted reward: `reward` stays the raw reward
    summary = run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": "s", "recipe": "acpo", "steps": 2,
                               "eval_every": 1, "stage1_steps": 1, "conf_gamma": 0.5}))
    last = metrics_of(summary)[-1]
    assert last["stage"] == 2 and "shaped_reward" in last
    assert last["reward"] == last["rewards/hash_answer_reward/mean"]


# ---------------------------------------------------------------- None rewards
def test_a_none_reward_is_left_out_of_the_group_baseline():
    rewards = torch.tensor([1.0, 0.0, math.nan, 1.0, 0.0])
    adv = outcome_advantages(rewards, torch.zeros(5, dtype=torch.long))
    known = np.array([1.0, 0.0, 1.0, 0.0])
    want = (known - known.mean()) / (known.std(ddof=1) + 1e-4)
    assert adv[[0, 1, 3, 4]].tolist() == pytest.approx(want.tolist(), abs=1e-6)
    assert adv[2] == 0


def test_a_none_reward_gets_no_advantage_in_training(tmp_path):
    tr = trainer(tmp_path, "none", recipe="acpo", composition="additive", steps=1,
                 reward=["test_train_trl:every_other_none"])
    problems, samples, rewards = tr.sample_groups(2)
    assert rewards[1::2].isnan().all() and not rewards[::2].isnan().any()
    scored = tr.score(problems, samples, rewards)
    assert (scored.token_adv[1::2] == 0).all()  # additive credit would give them a non-zero advantage
    for g in range(2):  # the others: GRPO's advantage among the group's known rewards only
        known = rewards[g * 4 : g * 4 + 4 : 2].double()
        want = (known - known.mean()) / (known.std() + 1e-4)
        assert scored.batch.advantages[g * 4 : g * 4 + 4 : 2].tolist() == pytest.approx(want.tolist(), abs=1e-5)


# ---------------------------------------------------------------- reward functions
def test_reward_functions_are_called_by_keyword_with_the_dataset_columns(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}", "source": f"s{i}"}
            for i in range(10)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    CALLS.clear()
    tr = trainer(tmp_path, "kw", recipe="grpo", dataset=str(data), chat_template=False, steps=1,
                 reward=["answer", "test_train_trl:length_reward"], reward_weights=[1.0, 0.5])
    problems, samples, rewards = tr.sample_groups(2)
    call = CALLS[-1]
    assert {"prompts", "completions", "completion_ids", "question", "answer", "source"} <= set(call)
    owners = [problems[i // 4] for i in range(8)]
    assert call["source"] == [p.columns["source"] for p in owners]  # a column nothing else reads
    assert call["answer"] == [p.answer for p in owners]  # the gold answer, read from the answer column
    assert call["completion_ids"] == [s.completion_ids for s in samples]
    assert call["completions"] == [s.text for s in samples]
    texts = [s.text for s in samples]
    want = [a + 0.5 * len(t) / 100 for a, t in zip(answer_reward(None, texts, answer=[p.answer for p in owners]),
                                                    texts)]
    assert rewards.tolist() == pytest.approx(want)
    assert set(tr.rollout_metrics) >= {"rewards/answer_reward/mean", "rewards/length_reward/mean"}
    assert tr.rollout_metrics["rewards/length_reward/mean"] == pytest.approx(
        np.mean([len(s.text) / 100 for s in samples]))


# ---------------------------------------------------------------- num_iterations
@pytest.mark.parametrize("mu", [1, 2])
def test_num_iterations_reuses_the_rollouts_so_the_clip_binds(tmp_path, mu):
    summary = run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": f"mu{mu}", "recipe": "grpo",
                               "steps": 2, "num_iterations": mu, "lr": 3e-3}))
    first, second = [line for line in metrics_of(summary) if line["step"] > 0]
    assert first["clip_ratio/region_mean"] == 0  # the first step on a batch: the ratio is exactly 1
    if mu == 1:  # a fresh batch, sampled by the policy that trains on it
        assert second["clip_ratio/region_mean"] == 0
        assert second["num_tokens"] > first["num_tokens"]
    else:  # the same batch (no new tokens), against the log-probs of the policy that sampled it
        assert second["clip_ratio/region_mean"] > 0
        assert second["num_tokens"] == first["num_tokens"] and second["reward"] == first["reward"]
        assert second["clip_ratio/region_mean"] == pytest.approx(
            second["clip_ratio/low_mean"] + second["clip_ratio/high_mean"])


# ---------------------------------------------------------------- sampling from pi
def test_rollouts_ignore_the_models_own_generation_config(model_and_tok):
    model, tok = model_and_tok
    leaky = copy.deepcopy(model)
    leaky.generation_config.repetition_penalty = 5.0
    leaky.generation_config.top_k = 3
    leaky.generation_config.no_repeat_ngram_size = 2
    leaky.generation_config.suppress_tokens = list(range(5, 15))
    prompts = [tok("Q: 12+7=?\n")["input_ids"]] * 3

    def sample(m):
        torch.manual_seed(0)
        engine = HFEngine(m, tok, max_new_tokens=24, temperature=1.0)
        return [s.completion_ids for s in engine.generate(prompts, n=2)] + [
            s.completion_ids for s in engine.generate(prompts, greedy=True)]

    assert sample(leaky) == sample(model)
    assert leaky.generation_config.repetition_penalty == 5.0  # the model's own config is left as it was


# ---------------------------------------------------------------- trackers
def test_a_tracker_that_is_not_installed_is_refused_before_the_run_folder_exists(tmp_path):
    import importlib.util

    missing = [t for t in ("tensorboard", "trackio", "wandb") if importlib.util.find_spec(t) is None]
    if not missing:
        pytest.skip("tensorboard, trackio and wandb are all installed")
    with pytest.raises(ValueError, match=f"--report-to {missing[0]} needs the {missing[0]} package"):
        trainer(tmp_path, "t", report_to=[missing[0]])
    assert not (tmp_path / "t").exists()


def test_tensorboard_gets_what_metrics_jsonl_gets(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": "tb", "recipe": "grpo", "steps": 2,
                               "report_to": "tensorboard"}))
    events = EventAccumulator(str(Path(summary["run_dir"]) / "tensorboard"))
    events.Reload()
    logged = [line for line in metrics_of(summary) if "reward" in line]
    assert [(e.step, e.value) for e in events.Scalars("reward")] == [
        (line["step"], pytest.approx(line["reward"])) for line in logged]
    assert "learning_rate" in events.Tags()["scalars"]


def test_step_is_the_loops_step_and_teaches_the_curriculum_only_known_rewards(tmp_path):
    """Two ``Trainer.step()`` calls (what the benches call) leave the weights ``train()`` leaves after two steps,
    and a None reward never reaches the curriculum's pass rates (they stay finite)."""
    kw = dict(recipe="grpo", steps=2, lr=1e-3, curriculum=True, reward=["test_train_trl:every_other_none"])
    stepped = trainer(tmp_path, "stepped", **kw)
    for _ in range(2):
        metrics = stepped.step()
    assert metrics["step"] == 2 and stepped.state.step == 2
    assert stepped.curriculum.hits and all(math.isfinite(h) for h in stepped.curriculum.hits.values())
    assert all(math.isfinite(r) for recent in stepped.curriculum.recent.values() for r in recent)
    # every other completion had no reward: the curriculum counted the known ones only
    assert sum(stepped.curriculum.counts.values()) == 2 * TINY["prompts_per_step"] * TINY["group_size"] // 2
    trained = trainer(tmp_path, "trained", **kw)
    trained.train()
    for a, b in zip(stepped.policy.parameters(), trained.policy.parameters()):
        assert torch.equal(a, b)
