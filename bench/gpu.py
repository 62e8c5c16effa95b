"""GPU figures: token statistics against memory bandwidth, one training step of a ~0.5B model.

Needs a CUDA GPU; nothing is downloaded (the model is randomly initialised from a config).

1. Token statistics: log-prob + entropy of bf16 logits (B x T x V = 4 x 2048 x 151936, Qwen2.5's
   vocabulary): the naive float32 log-softmax vs ``acpo.stats.token_stats`` (chunked). The floor is
   one read of the logits at the bandwidth of a device-to-device copy measured in the same run.
2. One optimizer step of ``train.py`` (``grpo`` vs ``acpo``) on a random ~0.5B-parameter Llama in
   bfloat16 with the demo tokenizer: 8 problems x 8 samples, 64 new tokens, HF ``generate`` rollouts.

    python bench/gpu.py --out bench/out/gpu
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acpo.runs import read_metrics  # noqa: E402
from acpo.stats import token_stats  # noqa: E402


def cuda_time(fn, repeats: int = 10) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, timed with CUDA events after a warm-up."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def naive(logits, targets):
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def bench_token_stats(b: int, t: int, v: int) -> list[dict]:
    buf = torch.empty(1 << 31, dtype=torch.uint8, device="cuda")
    copy_s = cuda_time(lambda: buf[: 1 << 30].copy_(buf[1 << 30 :]))
    bandwidth = 2 * (1 << 30) / copy_s  # bytes read + written per second
    del buf
    torch.manual_seed(0)
    logits = (torch.randn(b, t, v, device="cuda") * 3).to(torch.bfloat16)
    targets = torch.randint(0, v, (b, t), device="cuda")
    ref_lp, ref_h = naive(logits[:1, :64].double(), targets[:1, :64])
    logit_bytes = logits.numel() * logits.element_size()
    rows = []
    for name, fn in (("naive", lambda: naive(logits, targets)), ("chunked", lambda: token_stats(logits, targets))):
        lp, h = fn()
        err = max(float((lp[:1, :64].double() - ref_lp).norm() / ref_lp.norm()),
                  float((h[:1, :64].double() - ref_h).norm() / ref_h.norm()))
        del lp, h
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        seconds = cuda_time(fn)
        peak = torch.cuda.max_memory_allocated() - base
        rows.append({"variant": name, "ms": 1000 * seconds, "GB/s (logits read once)": logit_bytes / seconds / 1e9,
                     "of copy bandwidth": logit_bytes / seconds / bandwidth,
                     "extra peak GiB": peak / 2**30, "peak / logits": peak / logit_bytes, "rel err vs float64": err})
    print(f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s (read + write); logits {logit_bytes / 2**30:.2f} GiB bf16")
    return rows


def random_model(path: Path, hidden: int, layers: int) -> int:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(ROOT / "assets" / "demo-policy")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def bench_train_step(hidden: int, layers: int, steps: int) -> list[dict]:
    work = Path(tempfile.mkdtemp())
    n_params = random_model(work / "model", hidden, layers)
    rows = []
    for method in ("grpo", "acpo"):
        cmd = [sys.executable, str(ROOT / "train.py"), "--model", str(work / "model"), "--recipe", method,
               "--dtype", "bfloat16", "--steps", str(steps), "--eval-problems", "8", "--trace-problems", "0",
               "--dynamic-sampling", "false", "--output-dir", str(work / "runs"), "--run-name", method]
        subprocess.run(cmd, check=True, cwd=ROOT)
        metrics = read_metrics(work / "runs" / method)
        times = [m["time_s"] for m in metrics if "time_s" in m][1:]  # the first step warms up kernels
        rows.append({"method": method, "params (M)": n_params / 1e6, "s/step (median)": statistics.median(times),
                     "steps timed": len(times), "completion tokens/step": statistics.median(
                         [m["completions/mean_length"] * 64 for m in metrics if "completions/mean_length" in m])})
    shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/out/gpu"), help="folder for the CSV files")
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--hidden", type=int, default=1280, help="hidden size of the random model (1280 x 24 layers: ~0.5B)")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--steps", type=int, default=4, help="training steps per method (the first is not timed)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU; CPU figures come from bench/stats.py and bench/trainer.py")
    import pandas as pd

    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    stats = pd.DataFrame(bench_token_stats(4, 2048, args.vocab))
    stats.to_csv(args.out / "gpu_token_stats.csv", index=False)
    print(stats.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    step = pd.DataFrame(bench_train_step(args.hidden, args.layers, args.steps))
    step.to_csv(args.out / "gpu_train_step.csv", index=False)
    print(step.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"acpo / grpo step time: {step['s/step (median)'][1] / step['s/step (median)'][0]:.2f}x")


if __name__ == "__main__":
    main()
