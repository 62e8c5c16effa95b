"""The one credit pipeline (acpo.pipeline): what each credit declares it reads, and one answer everywhere.

explain_batch, Trainer.score, the TRL plug-in (test_trl_integration.py) and the verl reward manager
(test_verl_estimator.py) all call ``assign_credit``; here the trainer and ``explain`` are held to the same
token advantages on the same batch, for every registered credit.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import acpo
from acpo.credit import CREDIT_METHODS
from acpo.pipeline import assign_credit, make_credit
from acpo.tokens import encode_with_offsets, pad_batch

PROMPT = "Q: 7-3*4+2=?\n"
COMPLETIONS = ["3*4=12\n7-12=-5\n-5+2=-3\n#### -3", "3*4=12\n7-12=-4\n-4+2=-2\n#### -2",
               "7-3=4\n4*4=16\n16+2=18\n#### 18", "3*4=12\n7-12=-5\n#### -5"]
REWARDS = [1.0, 0.0, 0.0, 0.0]
OPTIONS = {"mc_reset": {"samples": 2, "max_new_tokens": 4, "batch_size": 16}}  # a few short continuations


def full_batch(model, tok):
    """Every field any credit can read, from assign_credit itself (a method that reads nothing gets it all)."""
    ids = [encode_with_offsets(tok, c) for c in COMPLETIONS]
    tensors = pad_batch([tok(PROMPT, add_special_tokens=False)["input_ids"]] * 4, [i for i, _ in ids],
                        tok.pad_token_id)
    everything = {name: make_credit(name, OPTIONS.get(name), probe="#### ") for name in ("info_gain",)}
    return assign_credit(model, tok, *tensors, COMPLETIONS, [o for _, o in ids], everything,
                         group_ids=torch.zeros(4, dtype=torch.long), rewards=torch.tensor(REWARDS), answers=["-3"] * 4,
                         segmentation="lines", score_tokens=True).batch


def one_step_each(batch):
    return [[dataclasses.replace(steps[0], token_end=steps[-1].token_end, char_end=steps[-1].char_end)]
            for steps in batch.steps]


def only_declared(batch, method):
    """The batch with every field the method does not declare taken away."""
    keep = {}
    if not method.needs_stats:
        keep.update(logprobs=None, entropy=None)
    if not method.needs_steps:
        keep.update(steps=one_step_each(batch))
    if not method.needs_answers:
        keep.update(answers=[], reference_answers=[])
    if not method.needs_policy:
        keep.update(model=None, tokenizer=None)
    if not method.needs_texts:
        keep.update(texts=[])
    if not method.uses_trace_cache:
        keep.update(trace_cache=None)
    return dataclasses.replace(batch, **keep)


@pytest.mark.parametrize("name", sorted(CREDIT_METHODS))
def test_a_credit_runs_on_what_it_declares_and_needs_all_of_it(name, char_tok):
    """Declarations are exact: the declared fields suffice, and taking away any declared one breaks the method
    (or, for the steps, changes its credits)."""
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok))
    batch = full_batch(model, char_tok)
    method = make_credit(name, OPTIONS.get(name), probe="#### ")
    declared = only_declared(batch, method)
    result = method.credits(declared)
    assert [len(c) for c in result.step_credits] == [len(s) for s in declared.steps]
    needs = {"needs_stats": dict(logprobs=None, entropy=None), "needs_policy": dict(model=None, tokenizer=None),
             "needs_texts": dict(texts=[]), "needs_answers": dict(answers=[], reference_answers=[])}
    for flag, removed in needs.items():
        if getattr(method, flag) and not (flag == "needs_texts" and name == "info_gain"):  # texts: contrast only
            with pytest.raises((ValueError, TypeError, AttributeError, IndexError)):
                method.credits(dataclasses.replace(only_declared(batch, method), **removed))
    if method.needs_steps:
        fewer = method.credits(dataclasses.replace(only_declared(batch, method), steps=one_step_each(batch)))
        assert [len(c) for c in fewer.step_credits] != [len(c) for c in result.step_credits]


def test_the_contrast_reading_of_the_information_gain_reads_texts():
    from acpo.credit.info_gain import InfoGainCredit

    assert InfoGainCredit.needs_texts  # the contrast target extracts each completion's own answer


@pytest.mark.parametrize("name, forwards", [("uniform", 0), ("mean_logprob", 1)])
def test_no_scoring_forward_for_a_credit_that_declares_no_need_of_it(name, forwards, char_tok):
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok))
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    ids = [encode_with_offsets(char_tok, c) for c in COMPLETIONS]
    tensors = pad_batch([char_tok(PROMPT, add_special_tokens=False)["input_ids"]] * 4, [i for i, _ in ids],
                        char_tok.pad_token_id)
    out = assign_credit(model, char_tok, *tensors, COMPLETIONS, [o for _, o in ids], {name: make_credit(name)},
                        group_ids=torch.zeros(4, dtype=torch.long), rewards=torch.tensor(REWARDS), segmentation="lines")
    hook.remove()
    assert len(calls) == forwards
    assert (out.batch.logprobs is None) == (forwards == 0)
    if forwards == 0:  # no stats, no steps: one step per completion
        assert [len(s) for s in out.batch.steps] == [1] * 4


def test_a_row_with_no_reward_gets_no_learning_signal(char_tok):
    from conftest import tiny_llama

    model = tiny_llama(len(char_tok))
    ids = [encode_with_offsets(char_tok, c) for c in COMPLETIONS]
    tensors = pad_batch([char_tok(PROMPT, add_special_tokens=False)["input_ids"]] * 4, [i for i, _ in ids],
                        char_tok.pad_token_id)
    additive = acpo.AdvantageConfig(composition="additive")  # would give a signal to an outcome advantage of 0
    out = assign_credit(model, char_tok, *tensors, COMPLETIONS, [o for _, o in ids],
                        {"mean_logprob": make_credit("mean_logprob")}, group_ids=torch.zeros(4, dtype=torch.long),
                        rewards=torch.tensor([1.0, float("nan"), 0.0, 0.0]), segmentation="lines",
                        advantage_config=additive)
    adv = out.token_advantages["mean_logprob"]
    assert torch.all(adv[1] == 0) and adv[0].abs().sum() > 0


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from acpo.config import make_config
    from acpo.trainer import Trainer

    cfg = make_config({"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 40, "eval_problems": 6,
                       "trace_problems": 0, "pool_size": 200, "recipe": "grpo", "steps": 1, "segmentation": "lines",
                       "micro_batch_size": 8, "output_dir": str(tmp_path_factory.mktemp("runs")), "run_name": "p"})
    return Trainer(cfg)


@pytest.mark.parametrize("name", sorted(CREDIT_METHODS))
def test_trainer_score_and_explain_batch_give_the_same_token_advantages(name, trainer):
    """Trainer.score on a batch of samples = explain_batch on the same prompts and texts, for every credit."""
    from acpo.rollout import Sample

    tok, cfg = trainer.tokenizer, trainer.cfg
    problems = trainer.pool[:2]
    texts = []
    for p in problems:  # the reference solution, and three slips of it
        lines = p.solution.split("\n")
        texts += [p.solution, "\n".join(lines[:-1] + ["#### 0"]), "\n".join(["1+1=3", *lines]), lines[-1]]
    owners = [p for p in problems for _ in range(4)]
    samples = []
    for p, text in zip(owners, texts):
        ids, offsets = encode_with_offsets(tok, text)
        samples.append(Sample(trainer.prompt_ids([p])[0], ids, text, offsets))
    rewards = trainer.rewards.total(owners, texts, [s.completion_ids for s in samples])
    method = make_credit(name, OPTIONS.get(name), probe=trainer.probe)
    scored = trainer.score(problems, samples, rewards, credit=method)

    traces = acpo.explain_batch(
        trainer.policy, tok, [trainer.prompt_of(p) for p in owners], texts, method=name,
        segmentation=cfg.segmentation, answers=[p.answer for p in owners], rewards=rewards.tolist(),
        group_ids=[i // 4 for i in range(8)], probe=trainer.probe, segment_config=trainer.seg_cfg,
        advantage_config=trainer.adv_cfg, batch_size=cfg.micro_batch_size, method_options={name: OPTIONS.get(name, {})},
        chat_template=cfg.chat_template)
    assert len(set(rewards.tolist())) > 1  # the groups have a signal
    for i, trace in enumerate(traces):
        n = len(samples[i].completion_ids)
        torch.testing.assert_close(scored.token_adv[i, :n], trace.token_advantages[name], atol=1e-5, rtol=1e-5)
        if CREDIT_METHODS[name].needs_stats:  # uniform reads no step, so the trainer does not segment for it
            torch.testing.assert_close(scored.step_credits[i], trace.credits[name], atol=1e-5, rtol=1e-5)
