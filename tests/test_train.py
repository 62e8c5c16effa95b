"""The trainer end to end on the demo policy: run folders, every recipe, resume, LoRA, DDP, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from acpo.config import RECIPES, make_config
from acpo.models import load_policy
from acpo.trainer import run

ROOT = Path(__file__).resolve().parent.parent
TINY = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 40, "eval_problems": 6, "trace_problems": 2,
        "pool_size": 200}


def train(tmp_path, name, **kw):
    cfg = make_config({**TINY, "output_dir": str(tmp_path), "run_name": name, **kw})
    return run(cfg)


def test_run_folder_layout(tmp_path):
    summary = train(tmp_path, "r", recipe="acpo", steps=2, eval_every=1)
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "config.yaml").read_text().startswith("model:")
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [0, 1, 2]
    for key in ("reward", "reward_std", "frac_reward_zero_std", "entropy", "clip_ratio/low_mean",
                "clip_ratio/high_mean", "clip_ratio/region_mean", "credit/mean", "stage",
                "eval/pass@1", "rollout_tokens", "learning_rate", "grad_norm", "num_tokens",
                "completions/mean_length", "completions/clipped_ratio", "rewards/hash_answer_reward/mean"):
        assert key in lines[-1], key
    ck = run_dir / "checkpoints" / "step-2"
    assert {"model.safetensors", "config.json", "trainer_state.json", "trainer_state.safetensors", "tokenizer.json"} <= {p.name for p in ck.iterdir()}
    assert not list((run_dir / "checkpoints").glob(".tmp*"))
    traces = pd.read_parquet(run_dir / "traces" / "step-2.parquet")
    assert {"credit_info_gain", "first_error_step", "prompt", "completion", "checkpoint"} <= set(traces.columns)
    assert set(traces["checkpoint"]) == {"step-2"}
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2


@pytest.mark.parametrize("recipe", [m for m in RECIPES if m != "acpo"])
def test_every_recipe_takes_a_step(tmp_path, recipe):
    summary = train(tmp_path, recipe, recipe=recipe, steps=1, trace_problems=0, resets_per_step=2, reset_samples=2)
    last = json.loads((Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 1 and 0.0 <= last["reward"] <= 1.0
    if recipe == "hapo":
        assert sum(last[f"hapo/{q}"] for q in ("pos_high", "pos_low", "neg_high", "neg_low")) == pytest.approx(1.0)


def weights(run_dir, step):
    return load_file(str(Path(run_dir) / "checkpoints" / f"step-{step}" / "model.safetensors"))


def test_resume_continues_exactly(tmp_path):
    # stage 2 from step 1 on, so the resumed run must also restore the frozen reference policy
    # (and the confidence-weighted reward reads the restored policy's log-probs)
    kw = dict(recipe="acpo", eval_every=1, stage1_steps=1, trace_problems=0, conf_gamma=0.5)
    straight = train(tmp_path, "straight", steps=3, save_every=1, **kw)
    first = train(tmp_path, "resumed", steps=2, **kw)
    resumed = run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": "resumed", "steps": 3,
                               "resume": first["run_dir"], **kw}))
    a, b = weights(straight["run_dir"], 3), weights(resumed["run_dir"], 3)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], weights(straight["run_dir"], 2)[k]) for k in a)  # step 3 changed something
    log = lambda d: [json.loads(l) for l in (Path(d) / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [l["step"] for l in log(resumed["run_dir"])] == [l["step"] for l in log(straight["run_dir"])]
    assert log(resumed["run_dir"])[-1]["reward"] == log(straight["run_dir"])[-1]["reward"]


def test_lora_checkpoint_is_an_adapter_the_loader_opens(tmp_path):
    summary = train(tmp_path, "lora", recipe="grpo", steps=1, lora_r=4, lora_alpha=8, trace_problems=0)
    ck = Path(summary["run_dir"]) / "checkpoints" / "step-1"
    assert (ck / "adapter_config.json").exists() and (ck / "adapter_model.safetensors").exists()
    assert not (ck / "model.safetensors").exists()
    model, tok = load_policy(str(ck))
    # the loader merges the adapter: a plain model (a trainer can put a new adapter on it) that computes what
    # the base with the adapter attached computes, and records the adapter folder as its name
    from peft import PeftModel

    base, _ = load_policy()
    attached = PeftModel.from_pretrained(base, str(ck))
    assert not hasattr(model, "peft_config") and model.name_or_path == str(ck)
    ids = torch.tensor([tok("Q: 1+1=?\n2")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, attached(ids).logits, atol=1e-5, rtol=1e-5)


def test_two_processes_end_with_identical_weights_and_one_lr_schedule(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"),
           "--recipe", "grpo", "--steps", "2", "--prompts-per-step", "2", "--group-size", "4",
           "--max-new-tokens", "40", "--eval-problems", "6", "--trace-problems", "0", "--pool-size", "200",
           "--lr", "1e-3", "--warmup-steps", "4", "--output-dir", str(tmp_path), "--run-name", "ddp"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "terminate called" not in out.stderr and "2/2" in out.stderr  # the bar counts the last step too
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2
    assert len(summary["param_checksums"]) == 2 and len(set(summary["param_checksums"])) == 1
    # the warm-up advances once per optimizer step, not once per process: step s uses lr s / 4
    logged = [json.loads(l) for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()][1:]
    assert [l["learning_rate"] for l in logged] == pytest.approx([1e-3 * 1 / 4, 1e-3 * 2 / 4])


def test_a_process_of_a_multi_process_run_exits_with_its_handlers_run_and_its_output_flushed():
    # exit_process skips the interpreter's teardown (gloo's threads outlive the process group), not the
    # exit handlers or output still in Python's buffers
    code = ("import atexit; from acpo.distributed import exit_process; atexit.register(print, 'handler ran'); "
            "print('buffered', end=''); exit_process(3)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 3 and out.stdout == "bufferedhandler ran\n"


def cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_errors_are_one_clear_line(tmp_path):
    out = cli("--model", str(tmp_path / "nope"), "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    out = cli("--output-dir", str(tmp_path), "--run-name", "taken", "--steps", "1")
    assert out.returncode == 2 and "already exists" in out.stderr
    out = cli("--rollout", "vllm", "--output-dir", str(tmp_path), "--run-name", "v", "--steps", "1")
    assert out.returncode == 2 and "pip install vllm" in out.stderr
    out = cli("--recipe", "ppo")
    assert out.returncode == 2 and "invalid choice: 'ppo'" in out.stderr
    out = cli("--method", "ppo")  # the old name of --recipe
    assert out.returncode == 2 and "invalid choice: 'ppo'" in out.stderr


def test_grpo_without_the_old_policy_forward_takes_the_same_step(tmp_path, monkeypatch):
    """With one optimizer step per batch, the detached training log-probs are the old ones: same update."""
    from acpo.trainer import Trainer

    def one_step(name, force_stats):
        if force_stats:
            monkeypatch.setattr(Trainer, "needs_old_stats", lambda self, credit: True)
        trainer = Trainer(make_config({**TINY, "recipe": "grpo", "steps": 1, "lr": 1e-3, "trace_problems": 0,
                                       "output_dir": str(tmp_path), "run_name": name}))
        problems, samples, rewards = trainer.sample_groups(2)
        scored = trainer.score(problems, samples, rewards)
        assert (scored.batch.logprobs is not None) == force_stats
        metrics = trainer.update(scored)
        monkeypatch.undo()
        return [p.detach().clone() for p in trainer.policy.parameters()], metrics, rewards

    fast, m_fast, r_fast = one_step("fast", False)
    slow, m_slow, r_slow = one_step("slow", True)
    assert torch.equal(r_fast, r_slow) and r_fast.std() > 0  # same rollouts, with a learning signal
    assert max(float((a - b).abs().max()) for a, b in zip(fast, slow)) < 1e-6
    assert m_fast["entropy"] == pytest.approx(m_slow["entropy"], rel=1e-4)
    assert m_fast["loss"] == pytest.approx(m_slow["loss"], abs=1e-5)


def test_hf_rollouts_have_importance_weight_one_and_an_engine_that_agrees_changes_nothing(tmp_path):
    """HF samples from the trained model itself: no rollout log-probs, no weight, no sampling/* metrics. An engine
    that reports the trained model's own log-probs (what vLLM would with no mismatch) gets weight 1: the same step."""
    import dataclasses

    from acpo.stats import scored_stats
    from acpo.tokens import pad_batch
    from acpo.trainer import Trainer

    def one_step(name, engine_logprobs):
        trainer = Trainer(make_config({**TINY, "recipe": "grpo", "steps": 1, "lr": 1e-3, "trace_problems": 0,
                                       "output_dir": str(tmp_path), "run_name": name}))
        problems, samples, rewards = trainer.sample_groups(2)
        assert all(s.logprobs is None for s in samples)
        if engine_logprobs:
            tensors = pad_batch([s.prompt_ids for s in samples], [s.completion_ids for s in samples],
                                trainer.tokenizer.pad_token_id)
            lp, _ = scored_stats(trainer.policy, *tensors, batch_size=len(samples))
            samples = [dataclasses.replace(s, logprobs=lp[i, : len(s.completion_ids)].tolist())
                       for i, s in enumerate(samples)]
        scored = trainer.score(problems, samples, rewards)
        assert (scored.rollout_logprobs is not None) == engine_logprobs
        metrics = trainer.update(scored)
        return [p.detach().clone() for p in trainer.policy.parameters()], metrics, rewards

    hf, m_hf, r_hf = one_step("hf", False)
    agree, m_agree, r_agree = one_step("agree", True)
    assert torch.equal(r_hf, r_agree) and r_hf.std() > 0  # same rollouts, with a learning signal
    assert not any(k.startswith("sampling/") for k in m_hf)
    assert m_agree["sampling/sampling_logp_difference/mean"] < 1e-5 and m_agree["sampling/kl_k3"] < 1e-9
    assert m_agree["sampling/importance_sampling_ratio/mean"] == pytest.approx(1.0, abs=1e-5)
    assert m_agree["sampling/importance_sampling_ratio/capped"] == 0
    assert max(float((a - b).abs().max()) for a, b in zip(hf, agree)) < 1e-6


def test_confidence_weighted_reward_matches_the_formula():
    # r' = r (1 + g (1 - conf)) - (1 - r) g conf, conf = geometric-mean probability of the answer tokens
    from types import SimpleNamespace

    from acpo.rollout import Sample
    from acpo.trainer import Trainer

    texts = ["1+2=3\n#### 3", "#### 42", "no answer line"]
    samples = [Sample([], list(range(len(t))), t, [(i, i + 1) for i in range(len(t))]) for t in texts]
    logprobs = torch.full((3, 16), -5.0)
    logprobs[0, 11] = -0.1  # the answer "3"
    logprobs[1, 5:7] = torch.tensor([-0.2, -0.6])  # the answer "42"
    rewards = torch.tensor([1.0, 0.0, 0.0])
    trainer = SimpleNamespace(cfg=SimpleNamespace(conf_gamma=0.5))
    got = Trainer.confidence_weighted(trainer, rewards, samples, logprobs)
    conf0, conf1 = 0.9048374180359595, 0.6703200460356393  # exp(-0.1), exp(-(0.2 + 0.6) / 2)
    want = [1 * (1 + 0.5 * (1 - conf0)), -0.5 * conf1, 0.0]  # no answer line: conf 0, wrong: r' = 0
    assert got.tolist() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("credit,options", [("mean_logprob", {}),
                                            ("info_gain", {"target": "contrast", "length_normalise": True})])
def test_any_registered_credit_can_drive_a_recipes_loss(tmp_path, credit, options):
    """--credit puts a registered credit (and --acpo-target/--acpo-per-token its readings) in the recipe's
    advantages: the scored batch's token advantages are that credit's, computed from the registry here."""
    from acpo.advantage import AdvantageConfig
    from acpo.credit import get_credit_method
    from acpo.trainer import Trainer

    cfg = make_config({**TINY, "recipe": "grpo", "credit": credit, "acpo_target": options.get("target", "gold"),
                       "acpo_per_token": options.get("length_normalise", False), "steps": 1, "trace_problems": 0,
                       "output_dir": str(tmp_path), "run_name": credit})
    trainer = Trainer(cfg)
    problems, samples, rewards = trainer.sample_groups(2)
    scored = trainer.score(problems, samples, rewards)
    kwargs = {"probe": "#### ", **options} if credit == "info_gain" else {}
    method = get_credit_method(credit, **kwargs)
    expected = method.token_advantages(scored.batch, method.credits(scored.batch),
                                       AdvantageConfig(outcome=cfg.outcome, composition=cfg.composition))
    assert torch.allclose(scored.token_adv, expected, atol=1e-5)
    uniform = get_credit_method("uniform")
    plain = uniform.token_advantages(scored.batch, uniform.credits(scored.batch), AdvantageConfig(outcome=cfg.outcome))
    assert not torch.allclose(scored.token_adv, plain)  # the credit changed the advantages


def test_the_resampling_credit_trains_in_our_loop_scored_against_the_reference_answers(tmp_path):
    """--credit mc_reset: continuations from every step boundary, scored by the problems' own answers."""
    from acpo.trainer import Trainer

    cfg = make_config({**TINY, "recipe": "grpo", "credit": "mc_reset", "steps": 1, "trace_problems": 0,
                       "output_dir": str(tmp_path), "run_name": "mc"})
    trainer = Trainer(cfg)
    problems, samples, rewards = trainer.sample_groups(2)
    scored = trainer.score(problems, samples, rewards)
    assert torch.isfinite(scored.token_adv).all()
    assert any(c.abs().sum() > 0 for c in scored.step_credits)  # resampled values moved between boundaries


def test_an_unknown_credit_is_one_clear_line():
    out = cli("--credit", "nope")
    assert out.returncode == 2 and "unknown credit 'nope'" in out.stderr
