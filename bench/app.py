"""App latency: explaining one completion, in process and over HTTP through ``gradio_client``.

Launches the app on the bundled demo policy (as ``python app/main.py`` does), then for each
sample trace in ``assets/sample_traces.jsonl`` times ``Explorer.explain`` called directly and
the ``/explain`` endpoint called as a user's script would, for each credit method asked for.
The model is loaded once before timing (the app caches it), so the figures are per request.

    python bench/app.py                 # every sample trace, acpo and hapo
    python bench/app.py --quick         # 3 traces, acpo: for CI
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["acpo", "hapo"], help="credit methods to time")
    ap.add_argument("--n", type=int, default=0, help="sample traces to time (0: all)")
    ap.add_argument("--quick", action="store_true", help="3 traces, acpo only: for CI")
    ap.add_argument("--csv", type=Path, help="also write one row per request here")
    args = ap.parse_args()
    if args.quick:
        args.n, args.methods = 3, ["acpo"]
    import pandas as pd
    import torch
    from gradio_client import Client

    from acpo.models import DEMO_POLICY
    from app.callbacks import Explorer
    from app.layout import build_app
    from app.loaders import DEFAULT_SAMPLES

    torch.set_num_threads(1)  # the app's model is tiny; one thread is what a CPU Space gives it anyway
    samples = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if line.strip()]
    samples = samples[: args.n] if args.n else samples
    explorer = Explorer([ROOT / "assets"])
    demo = build_app(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    rows = []
    try:
        for method in args.methods:
            for k, s in enumerate([samples[0], *samples]):  # the first call warms up (model load, kernels)
                inputs = (DEMO_POLICY, False, s["prompt"], s["completion"], s["answer"], "", s["family"], method,
                          "lines", "#### ", "steps: credit")
                t0 = time.perf_counter()
                explorer.explain(*inputs)
                direct = time.perf_counter() - t0
                t0 = time.perf_counter()
                client.predict(*inputs, api_name="/explain")
                http = time.perf_counter() - t0
                if k:
                    rows.append({"method": method, "problem_id": s["problem_id"], "chars": len(s["completion"]),
                                 "in_process_s": direct, "http_s": http})
    finally:
        demo.close()
    df = pd.DataFrame(rows)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.csv, index=False)
    table = df.groupby("method", sort=False).agg(
        requests=("http_s", "size"),
        in_process_median_s=("in_process_s", "median"),
        http_median_s=("http_s", "median"),
        http_p90_s=("http_s", lambda x: float(x.quantile(0.9))),
    ).reset_index()
    print(f"app latency: /explain on the demo policy, {len(samples)} sample traces, 1 torch thread, after one warm-up")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    overhead = statistics.median(r["http_s"] - r["in_process_s"] for r in rows)
    print(f"HTTP + queue overhead per request (median of differences): {overhead:.3f} s")


if __name__ == "__main__":
    main()
