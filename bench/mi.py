"""ACPO answer probes: one packed forward vs K+1 naive forwards.

For traces of 256-1024 tokens with 8-32 steps on a small randomly initialised
Llama, times (a) one plain forward of prompt + completion, (b) the packed
probes of ``acpo.credit.answer_values``, (c) the naive reference
``answer_values_naive``. Target (issue 2): packed <= 1.5x one plain forward.

    python bench/mi.py            # full grid
    python bench/mi.py --quick    # one small case, for CI
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acpo.credit.info_gain import ProbeRow, answer_values, answer_values_naive  # noqa: E402


def build_model(hidden: int, layers: int, vocab: int, context: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
                      max_position_embeddings=context)
    return LlamaForCausalLM(cfg).eval()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired_ratios(fns: dict, repeats: int) -> dict[str, float]:
    """Run the variants back to back ``repeats`` times; median seconds of each.

    Interleaving keeps a burst of load on a shared machine from landing on one
    variant only; ratios are taken per round, then the median.
    """
    for fn in fns.values():
        fn()  # warm-up
    rounds = [{name: timed(fn) for name, fn in fns.items()} for _ in range(repeats)]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    out = {f"{name}_s": med([r[name] for r in rounds]) for name in fns}
    out["packed_vs_plain"] = med([r["packed"] / r["plain"] for r in rounds])
    out["naive_vs_packed"] = med([r["naive"] / r["packed"] for r in rounds])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[256, 512, 1024], help="completion lengths")
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32], help="steps per completion")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--probe-tokens", type=int, default=8, help="probe + answer length")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one 128-token, 4-step case: for CI")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.steps, args.repeats, args.hidden, args.vocab = [128], [4], 1, 64, 500
    import pandas as pd

    torch.set_num_threads(args.threads)
    model = build_model(args.hidden, args.layers, args.vocab, 4096)
    g = torch.Generator().manual_seed(0)
    rows = []
    for t in args.tokens:
        for k in args.steps:
            prompt = torch.randint(0, args.vocab, (32,), generator=g).tolist()
            completion = torch.randint(0, args.vocab, (t,), generator=g).tolist()
            ends = [round(t * (j + 1) / k) for j in range(k)]
            probe = torch.randint(0, args.vocab, (args.probe_tokens,), generator=g).tolist()
            row = ProbeRow(prompt, completion, ends, probe, n_answer=3)
            ids = torch.tensor([prompt + completion])

            def plain():
                with torch.no_grad():
                    model(input_ids=ids)

            fns = {"plain": plain, "packed": lambda: answer_values(model, [row]),
                   "naive": lambda: answer_values_naive(model, [row])}
            res = paired_ratios(fns, args.repeats)
            gap = (answer_values(model, [row])[0] - answer_values_naive(model, [row])[0]).abs().max().item()
            rows.append({"tokens": t, "steps": k, **res, "max_abs_diff": gap})
            print(f"T={t} K={k}: packed/plain {res['packed_vs_plain']:.2f}, naive/packed "
                  f"{res['naive_vs_packed']:.1f}", file=sys.stderr)
    df = pd.DataFrame(rows)
    print(f"ACPO probes, Llama hidden {args.hidden} x {args.layers} layers, vocab {args.vocab}, "
          f"{args.threads} threads, median of {args.repeats}")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
