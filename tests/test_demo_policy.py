"""The committed demo policy: loads offline, matches its model card, its sample traces check out."""

from __future__ import annotations

import json

import pytest
import torch

from acpo.demo_policy import (
    DEFAULT_PATH,
    DEFAULT_SAMPLES_PATH,
    _encode_batch,
    build_tokenizer,
    card_pass_at_1,
    evaluate,
    load_demo_policy,
)
from acpo.rewards import hash_answer_reward
from acpo.tasks import Problem, check, heldout_problems


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(2)
    return load_demo_policy(DEFAULT_PATH)


def test_loads_offline_with_the_auto_classes():
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(DEFAULT_PATH, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_PATH, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    assert tokenizer.padding_side == "left"
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<s>", "</s>")
    assert model.config.vocab_size == len(tokenizer)


def test_weights_are_safetensors_and_small():
    files = {f.name: f.stat().st_size for f in DEFAULT_PATH.iterdir()}
    assert "model.safetensors" in files and not any(n.endswith(".bin") for n in files)
    assert sum(files.values()) <= 20e6


def test_tokenizer_is_one_token_per_character_with_offsets(policy):
    _, tokenizer = policy
    text = "Q: 7-3*4+2=?\n3*4=12\n#### 12"
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    assert tokenizer.decode(enc["input_ids"]) == text
    # Concatenating encodings equals encoding the concatenation (no special tokens inserted).
    prompt, completion = "Q: 1+2=?\n", "1+2=3\n#### 3"
    assert tokenizer.encode(prompt, add_special_tokens=False) + tokenizer.encode(
        completion, add_special_tokens=False
    ) == tokenizer.encode(prompt + completion, add_special_tokens=False)


def test_fresh_tokenizer_matches_the_saved_one(policy):
    _, saved = policy
    assert build_tokenizer().get_vocab() == saved.get_vocab()


def test_training_loss_is_on_completion_tokens_only():
    tokenizer = build_tokenizer()
    problem = Problem("p", "arith", 1, "Q: 1+2=?\n", "3", "1+2=3\n#### 3")
    ids, mask, labels = _encode_batch(tokenizer, [problem])
    n_prompt = len(problem.prompt)
    assert (labels[0, :n_prompt] == -100).all()
    assert labels[0, n_prompt:].tolist() == ids[0, n_prompt:].tolist()
    assert ids[0, -1] == tokenizer.eos_token_id and mask.all()


def test_a_direct_demonstration_is_the_answer_line_alone():
    tokenizer = build_tokenizer()
    problem = Problem("p", "arith", 1, "Q: 1+2*3=?\n", "7", "2*3=6\n1+6=7\n#### 7")
    _, _, labels = _encode_batch(tokenizer, [problem, problem], [True, False])
    targets = [tokenizer.decode([t for t in row.tolist() if t != -100]) for row in labels]
    assert targets == ["#### 7</s>", "2*3=6\n1+6=7\n#### 7</s>"]


def test_the_policy_samples_both_habits_so_rl_can_choose(policy):
    # RL can only prefer working step by step if T=1 samples do both, on the same problems' mix
    model, tokenizer = policy
    sampled = evaluate(model, tokenizer, heldout_problems(100), temperature=1.0, seed=0)
    assert 20 <= sampled.no_working <= 80, sampled


def test_greedy_pass_at_1_matches_the_model_card(policy):
    model, tokenizer = policy
    n, card_figure = card_pass_at_1(DEFAULT_PATH)
    measured = evaluate(model, tokenizer, heldout_problems(n))
    assert abs(measured.pass_at_1 - card_figure) <= 5.0, (measured, card_figure)
    # Calibrated for RL: neither solved nor hopeless.
    assert 30 <= measured.pass_at_1 <= 70  # calibrated so RL has room (roughly 30-70%)


def test_sample_traces_agree_with_the_checker():
    rows = [json.loads(line) for line in DEFAULT_SAMPLES_PATH.read_text().splitlines()]
    assert 20 <= len(rows) <= 40
    by_id = {p.id: p for p in heldout_problems(600)}
    rewards = [r["reward"] for r in rows]
    assert 0 < sum(rewards) < len(rows)  # both correct and failed traces
    for row in rows:
        problem = by_id[row["problem_id"]]
        assert (row["prompt"], row["answer"], row["family"], row["level"]) == (
            problem.prompt, problem.answer, problem.family, problem.level
        )
        result = check(problem, row["completion"])
        assert row["first_error"] == result.first_error
        assert [tuple(s) for s in row["step_char_spans"]] == result.step_char_spans
        assert [row["reward"]] == hash_answer_reward(None, [row["completion"]], answer=[row["answer"]])
