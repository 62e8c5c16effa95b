"""Token statistics: chunked ``acpo.stats.token_stats`` vs the naive full log-softmax.

Each variant runs in a fresh subprocess so its peak memory (ru_maxrss) is its own.
Prints a table; ``--csv`` writes it. Target: peak <= 1.3x the logits
tensor, time <= naive.

    python bench/stats.py                  # B x T x V = 4 x 2048 x 32000
    python bench/stats.py --quick          # a small shape for CI
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def naive(logits, targets):
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(-1, targets[..., None]).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return lp, ent


def child(variant: str, b: int, t: int, v: int, repeats: int, threads: int) -> None:
    import torch

    from acpo.stats import token_stats

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    logits = torch.randn(b, t, v)
    targets = torch.randint(0, v, (b, t))
    fn = naive if variant == "naive" else token_stats
    base = rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(logits, targets)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"variant": variant, "seconds": sorted(times)[len(times) // 2], "extra_peak": peak - base,
                      "logits_bytes": logits.numel() * 4}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="4x2048x32000", help="B x T x V of the float32 logits")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per variant (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--quick", action="store_true", help="small shape (2x256x8000), one repeat: for CI")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.shape, args.repeats = "2x256x8000", 1
    b, t, v = (int(x) for x in args.shape.lower().split("x"))
    if args.child:
        child(args.child, b, t, v, args.repeats, args.threads)
        return
    import pandas as pd

    rows = []
    for variant in ("naive", "chunked"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--shape", args.shape, "--repeats", str(args.repeats),
             "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    df = pd.DataFrame(rows)
    logits_gb = df["logits_bytes"].iloc[0] / 2**30
    df["peak_vs_logits"] = (df["logits_bytes"] + df["extra_peak"]) / df["logits_bytes"]
    df["time_vs_naive"] = df["seconds"] / df.loc[df.variant == "naive", "seconds"].iloc[0]
    df["extra_peak_MiB"] = df["extra_peak"] / 2**20
    table = df[["variant", "seconds", "time_vs_naive", "extra_peak_MiB", "peak_vs_logits"]]
    print(f"token statistics, logits {args.shape} float32 ({logits_gb:.2f} GiB), {args.threads} threads, "
          f"median of {args.repeats}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
