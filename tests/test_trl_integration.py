"""The TRL plug-in: TRL's GRPOTrainer with our step credit (acpo.integrations.trl), on CPU with tiny models."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl", reason="the TRL plug-in needs trl (requirements.txt pins trl==1.16.0)")

from conftest import char_tokenizer, tiny_llama  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import acpo  # noqa: E402
from acpo.cli import run  # noqa: E402
from acpo.config import make_config, parse_args  # noqa: E402
from acpo.integrations.trl import StepCreditGRPOConfig, StepCreditGRPOTrainer, trl_config  # noqa: E402
from acpo.runs import list_checkpoints  # noqa: E402

PROMPTS = {"Q: 1+2=?\n": "3", "Q: 3*4=?\n": "12"}
SPECIAL = [0, 1, 2, 3]  # pad, bos, eos, unk of the character tokenizer


def digit_share(completions, **kwargs):
    """A reward that differs between random completions: the share of digits in the text."""
    return [sum(ch.isdigit() for ch in text) / max(1, len(text)) for text in completions]


def trl_args(tmp_path, config=GRPOConfig, **kw):
    """2 prompts x 4 completions of 8 tokens, one optimizer step; special tokens never sampled, so every
    completion is plain text that re-tokenizes to the same ids (what the reference below needs)."""
    fields = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
                  max_steps=1, per_device_train_batch_size=8, num_generations=4, max_completion_length=8, seed=0,
                  learning_rate=1e-2, bf16=False, activation_checkpointing=False,
                  generation_kwargs={"suppress_tokens": SPECIAL})
    return config(**{**fields, **kw})


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def policy(tok):
    return tiny_llama(len(tok))


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_dict({"prompt": list(PROMPTS), "answer": list(PROMPTS.values())})


def trained(trainer_cls, model, tok, dataset, args):
    """Train one step; return the trainer and the inputs TRL's loss saw (each micro-batch)."""
    trainer = trainer_cls(model=model, reward_funcs=digit_share, args=args, train_dataset=dataset,
                          processing_class=tok)
    seen = []
    loss = trainer._compute_loss

    def spy(model, inputs):
        seen.append({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
        return loss(model, inputs)

    trainer._compute_loss = spy
    trainer.train()
    return trainer, seen


@pytest.mark.parametrize("method", sorted(acpo.CREDIT_METHODS))
def test_one_training_step_runs_for_every_credit_method(tmp_path, tok, policy, dataset, method):
    options = {"mc_reset": {"samples": 2, "max_new_tokens": 4}}.get(method)
    args = trl_args(tmp_path, StepCreditGRPOConfig, credit_method=method, credit_segmentation="fixed-3",
                    credit_probe="#### ", credit_method_kwargs=options)
    model = copy.deepcopy(policy)
    trainer, seen = trained(StepCreditGRPOTrainer, model, tok, dataset, args)
    adv = seen[0]["advantages"]
    assert adv.shape == seen[0]["completion_ids"].shape and torch.isfinite(adv).all()
    assert any(not torch.equal(a, b) for a, b in zip(policy.parameters(), model.parameters()))
    logged = trainer.state.log_history[0]
    assert "credit/mean" in logged and "reward" in logged


def test_uniform_credit_takes_the_same_step_as_plain_grpo_trainer(tmp_path, tok, policy, dataset):
    plain, credit = copy.deepcopy(policy), copy.deepcopy(policy)
    trained(GRPOTrainer, plain, tok, dataset, trl_args(tmp_path / "plain"))
    _, seen = trained(StepCreditGRPOTrainer, credit, tok, dataset,
                      trl_args(tmp_path / "credit", StepCreditGRPOConfig, credit_method="uniform"))
    assert seen[0]["advantages"].dim() == 2  # our (batch, time) advantages reached the loss
    moved = max(float((a - b).abs().max().detach()) for a, b in zip(policy.parameters(), plain.parameters()))
    assert moved > 1e-3  # the step changed the weights, so equal weights mean equal steps
    for (name, a), b in zip(plain.named_parameters(), credit.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


# credit_batch_size 8 holds the batch: the probes reuse the statistics forward's KV cache; 3 does not.
# mc_reset is left out: it samples continuations in batch order, and TRL shuffles the rows before the loss sees them.
@pytest.mark.parametrize("credit, composition, credit_batch_size",
                         [("info_gain", "sign_preserving", 8), ("info_gain", "additive", 3),
                          *[(c, "sign_preserving", 8) for c in sorted(acpo.CREDIT_METHODS)
                            if c != "info_gain" and not acpo.CREDIT_METHODS[c].samples_continuations]])
def test_the_advantages_the_loss_sees_are_what_explain_computes(tmp_path, tok, policy, dataset, credit, composition,
                                                                credit_batch_size):
    # two micro-batches of 4: TRL shuffles and splits the generation batch before the loss sees it
    args = trl_args(tmp_path, StepCreditGRPOConfig, credit_method=credit, credit_segmentation="fixed-3",
                    credit_probe="#### ", credit_composition=composition, credit_scale=0.7,
                    credit_batch_size=credit_batch_size, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    before = copy.deepcopy(policy)  # the credit is computed before the optimizer step
    _, seen = trained(StepCreditGRPOTrainer, copy.deepcopy(policy), tok, dataset, args)
    rows = [(mb["prompt_ids"][i][mb["prompt_mask"][i].bool()], mb["completion_ids"][i], mb["completion_mask"][i],
             mb["advantages"][i]) for mb in seen for i in range(len(mb["advantages"]))]
    assert len(rows) == 8
    prompts = [tok.decode(p) for p, _, _, _ in rows]
    completions = [tok.decode(c[m.bool()]) for _, c, m, _ in rows]
    assert set(prompts) == set(PROMPTS)
    # the reference: our public API from the texts (its own tokenization, statistics, groups and outcome advantages)
    traces = acpo.explain_batch(
        before, tok, prompts, completions, method=credit, segmentation="fixed-3", probe="#### ",
        answers=[PROMPTS[p] for p in prompts], rewards=digit_share(completions), chat_template=False,
        advantage_config=acpo.AdvantageConfig(composition=composition, credit_scale=0.7),
    )
    for (_, _, mask, adv), trace in zip(rows, traces):
        n = int(mask.sum())
        torch.testing.assert_close(adv[:n], trace.token_advantages[credit], atol=1e-5, rtol=1e-5)
    if credit != "uniform":  # and they are token advantages: within a completion they differ from step to step
        assert any(len(set(adv[: int(m.sum())].tolist())) > 1 for _, _, m, adv in rows)


def test_trainer_refuses_a_plain_grpo_config(tmp_path, tok, policy, dataset):
    with pytest.raises(TypeError, match="StepCreditGRPOConfig"):
        StepCreditGRPOTrainer(model=copy.deepcopy(policy), reward_funcs=digit_share, args=trl_args(tmp_path),
                              train_dataset=dataset, processing_class=tok)


@pytest.mark.parametrize("bad, message", [
    ({"credit_method": "nope"}, "not a credit method"),
    ({"credit_segmentation": "paragraphs"}, "segmentation"),
    ({"credit_composition": "multiply"}, "credit_composition"),
    ({"credit_w_min": 1.5}, "credit_w_min"),
    ({"credit_method": "hapo", "credit_method_kwargs": '{"rho": 0.2}'}, "do not fit credit method 'hapo'"),
])
def test_config_names_what_is_wrong(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        trl_args(tmp_path, StepCreditGRPOConfig, **bad)


def test_the_step_caps_old_name_is_still_accepted(tmp_path):
    assert trl_args(tmp_path, StepCreditGRPOConfig).credit_max_reasoning_steps == 32
    assert trl_args(tmp_path, StepCreditGRPOConfig, credit_max_steps=5).credit_max_reasoning_steps == 5
    with pytest.raises(ValueError, match="old name of credit_max_reasoning_steps"):
        trl_args(tmp_path, StepCreditGRPOConfig, credit_max_steps=5, credit_max_reasoning_steps=6)


def test_train_backend_trl_runs_a_config_on_the_demo_policy(tmp_path, capfd):
    cfg = parse_args(["--backend", "trl", "--recipe", "acpo", "--steps", "2", "--prompts-per-step", "2",
                      "--group-size", "4", "--max-new-tokens", "16", "--eval-problems", "4", "--segmentation", "lines",
                      "--save-every", "1", "--max-rollout-tokens", "100000", "--kl-coef", "0.1",
                      "--output-dir", str(tmp_path), "--run-name", "trl"])
    summary = run(cfg)
    # one warning names every option TRL's loop ignores here
    warning = [line for line in capfd.readouterr().err.splitlines() if "--backend trl" in line]
    assert len(warning) == 1
    for ignored in ("curriculum", "dynamic_sampling", "two_stage", "kl_coef=0.1",
                    "trace_problems=8", "max_rollout_tokens=100000"):
        assert ignored in warning[0], ignored
    run_dir = Path(summary["run_dir"])
    assert summary["steps"] == 2 and summary["is_main"] and 0 <= summary["end_pass@1"] <= 1
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained_rows = [r for r in rows if "credit/mean" in r]
    assert [r["step"] for r in trained_rows] == [1, 2]
    assert {"reward", "reward_std", "entropy", "learning_rate", "grad_norm"} <= set(trained_rows[-1])
    assert [r["step"] for r in rows if "eval/pass@1" in r] == [0, 2]
    assert "backend: trl" in (run_dir / "config.yaml").read_text()
    # checkpoints in our loop's layout, listed where the app and the benches look; safetensors, nothing pickled
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-1", "step-2"]
    assert summary["checkpoint"] == str(run_dir / "checkpoints" / "step-2")
    assert all((ck / "model.safetensors").exists() and (ck / "tokenizer.json").exists()
               for ck in list_checkpoints(run_dir))
    assert not [p.name for p in run_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
    assert not [p.name for p in run_dir.rglob("*") if p.name.startswith(".tmp")]
    with pytest.raises(ValueError, match="already exists"):  # the run folder rules of our loop hold
        run(cfg)


def test_a_group_split_over_two_processes_gets_the_credit_of_the_whole_group(tmp_path):
    # TRL may split a group of completions across processes; credits are normalised over the whole group
    script = Path(__file__).parent / "data" / "trl_two_processes.py"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["processes"] == 2 and result["rows"] == 4 and result["max_abs_advantage"] > 0.1
    assert result["max_abs_diff"] < 1e-5


@pytest.mark.parametrize("overrides, message", [
    ({"recipe": "rrpo"}, "only our loop does"),
    ({"resume": "somewhere"}, "fresh runs only"),
])
def test_train_backend_trl_refuses_what_only_our_loop_does(tmp_path, overrides, message):
    cfg = make_config({"backend": "trl", "output_dir": str(tmp_path), **overrides})
    with pytest.raises(ValueError, match=message):
        run(cfg)


def test_our_config_maps_onto_trls_names(tmp_path):
    cfg = make_config({"recipe": "dr_grpo", "credit": "info_gain", "acpo_target": "contrast", "steps": 7, "lr": 3e-4,
                       "group_size": 4, "prompts_per_step": 6, "micro_batch_size": 8, "max_new_tokens": 48,
                       "num_iterations": 2, "eps_high": 0.3, "segmentation": "lines", "credit_scale": 0.5})
    args = trl_config(cfg, tmp_path, probe="#### ")
    assert (args.max_steps, args.learning_rate, args.num_generations, args.max_completion_length) == (7, 3e-4, 4, 48)
    assert (args.loss_type, args.scale_rewards, args.num_iterations, args.epsilon_high) == ("dr_grpo", "none", 2, 0.3)
    # 6 prompts x 4 completions = 24 per step: micro-batches of 8, accumulated into one optimizer step
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.generation_batch_size) == (8, 3, 24)
    assert (args.credit_method, args.credit_segmentation, args.credit_scale, args.credit_probe) == ("info_gain", "lines",
                                                                                                   0.5, "#### ")
    assert args.credit_method_kwargs == {"target": "contrast", "length_normalise": False}
    # vLLM rollouts (TRL's own, with use_vllm): the same truncated importance weight as our loop's
    assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode,
            args.vllm_importance_sampling_clip_max) == (True, "token_truncate", 3.0)
