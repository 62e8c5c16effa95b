"""App latency: explaining one completion, in process and over HTTP through ``gradio_client``.

Launches the app on the bundled demo policy (as ``python app/main.py`` does) and measures:

* ``/explain`` per credit method on every sample trace of ``assets/sample_traces.jsonl``,
  ``Explorer.explain`` called directly (server side) and over HTTP;
* the resampling credit (``mc_reset``, M continuations per step boundary): seconds per boundary;
* ``--clients N`` clients at once, each sending ``--per-client`` requests: errors and p95;
* ``--real``: a 256-token trace of the real model (SmolLM2-135M-Instruct, ``smollm2``); its
  first explain (the model's load and first forward) is printed on its own line.

The model is loaded once before timing (the app caches it), so the figures are per request.

    python bench/app.py                       # every sample trace; mc_reset on 8; 20 clients
    python bench/app.py --real                # also the real model's 256-token trace
    python bench/app.py --quick               # 3 traces, info_gain, 2 clients: for CI
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inputs(model, s, method, mc=(8, 1.0, 64, 64)):
    return (model, False, s["prompt"], s["completion"], s["answer"], "", s.get("family", "none"), method, "lines",
            "#### ", "steps: credit", *mc)


def time_explain(explorer, client, model, samples, methods, rows, label, mc=(8, 1.0, 64, 64)) -> float:
    """One warm-up, then each sample per method: server-side (direct call) and HTTP seconds.

    Returns the server-side seconds of the very first call: for a model the app has not
    loaded yet, its load and first forward.
    """
    first = None
    for method in methods:
        for k, s in enumerate([samples[0], *samples]):
            t0 = time.perf_counter()
            _, _, _, _, _, state, _, _ = explorer.explain(*inputs(model, s, method, mc))
            direct = time.perf_counter() - t0
            first = direct if first is None else first
            t0 = time.perf_counter()
            client.predict(*inputs(model, s, method, mc), api_name="/explain")
            http = time.perf_counter() - t0
            if k:
                trace = state["trace"]
                rows.append({"model": label, "method": method, "tokens": len(trace.tokens), "steps": len(trace.steps),
                             "in_process_s": direct, "http_s": http,
                             "method_s": trace.seconds.get(method, float("nan"))})
    return first


def concurrent(url, model, samples, method, clients, per_client):
    """``clients`` threads with their own ``Client``, each sending ``per_client`` /explain requests."""
    from gradio_client import Client

    times, errors, lock = [], [], threading.Lock()

    def worker(i):
        try:
            client = Client(url, verbose=False)
        except Exception as err:  # noqa: BLE001 - a refused connection is what we count
            with lock:
                errors.append(repr(err))
            return
        for j in range(per_client):
            s = samples[(i * per_client + j) % len(samples)]
            t0 = time.perf_counter()
            try:
                client.predict(*inputs(model, s, method), api_name="/explain")
                with lock:
                    times.append(time.perf_counter() - t0)
            except Exception as err:  # noqa: BLE001
                with lock:
                    errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors, time.perf_counter() - t0


def hostile_models(folder: Path) -> str:
    """An adapter chain under ``folder/allowed`` whose second link's base is a model outside the roots:
    ``allowed/lora-chain`` -> ``allowed/lora-evil`` -> ``outside/model`` (a copy of the demo policy)."""
    import shutil

    from peft import LoraConfig, get_peft_model

    from acpo.models import DEMO_POLICY, load_policy

    shutil.copytree(DEMO_POLICY, folder / "outside" / "model")
    model, _ = load_policy(DEMO_POLICY)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    for name, base in [("lora-evil", folder / "outside" / "model"), ("lora-chain", folder / "allowed" / "lora-evil")]:
        lora.save_pretrained(folder / "allowed" / name)
        cfg_file = folder / "allowed" / name / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["base_model_name_or_path"] = str(base)
        cfg_file.write_text(json.dumps(cfg))
    return str(folder / "allowed" / "lora-chain")


def adversaries(chain: str, sample: dict) -> dict[str, tuple]:
    """The /explain inputs of each hostile request kind (model, ..., M, temperature, batch, tokens)."""
    s = dict(sample)
    long_answer = s["completion"].rsplit("####", 1)[0] + "#### x" + " " * 8000 + "y"
    fitting = s["completion"].rsplit("####", 1)[0] + "#### x" + " " * 210 + "y"  # within the 256-token context
    digits = s["completion"].rsplit("\n", 1)[0] + "\n" + "1" * 10_000 + "%=1\n#### 1"
    fitting_digits = "1" * 220 + "%=1\n#### 1"
    return {
        "adapter chain to an outside model": inputs(chain, s, "mean_logprob"),
        "mc_reset M=256, batch 1024, 1024 tokens": inputs(DEMO_POLICY_NAME, s, "mc_reset", (256, 1.0, 1024, 1024)),
        "mc_reset at the caps (M=32, 128 tokens)": inputs(DEMO_POLICY_NAME, s, "mc_reset", (32, 1.0, 256, 128)),
        "long answer (8,000 spaces)": inputs(DEMO_POLICY_NAME, {**s, "completion": long_answer}, "mean_logprob"),
        "long answer within the context": inputs(DEMO_POLICY_NAME, {**s, "completion": fitting}, "mean_logprob"),
        "10,000-digit expression (free-form checker)": inputs(DEMO_POLICY_NAME, {**s, "completion": digits,
                                                               "family": "free-form computations"}, "mean_logprob"),
        "220-digit expression within the context": inputs(DEMO_POLICY_NAME, {**s, "completion": fitting_digits,
                                                          "family": "free-form computations"}, "mean_logprob"),
    }


DEMO_POLICY_NAME = "assets/demo-policy"


def load_test(url: str, samples: list, method: str, clients: int, per_client: int, hostile: dict) -> dict:
    """``clients`` normal explains (as :func:`concurrent`) while 2 clients of each hostile kind send theirs
    back to back, and a probe reads ``GET /config`` every 0.25 s. Returns the latencies and outcomes."""
    import urllib.request

    from gradio_client import Client

    done, lock = threading.Event(), threading.Lock()
    config_s, outcomes = [], {k: [] for k in hostile}

    def probe():
        while not done.is_set():
            t0 = time.perf_counter()
            urllib.request.urlopen(url + "config", timeout=120).read()
            with lock:
                config_s.append(time.perf_counter() - t0)
            done.wait(0.25)

    def attacker(kind):
        client = Client(url, verbose=False)
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                client.predict(*hostile[kind], api_name="/explain")
                outcome = "answered"
            except Exception as err:  # noqa: BLE001 - a refusal is the expected outcome
                outcome = str(err).split(":")[0][:60] if "Error" not in type(err).__name__ else str(err)[:90]
            with lock:
                outcomes[kind].append((time.perf_counter() - t0, outcome))
            done.wait(0.5)

    side = [threading.Thread(target=probe)] + [threading.Thread(target=attacker, args=(k,))
                                              for k in hostile for _ in range(2)]
    for t in side:
        t.start()
    if hostile:
        time.sleep(3)  # the hostile requests are running before the normal ones start
    times, errors, wall = concurrent(url, DEMO_POLICY_NAME, samples, method, clients, per_client)
    done.set()
    for t in side:
        t.join()
    return dict(times=times, errors=errors, wall=wall, config_s=config_s, outcomes=outcomes)


def real_trace(n_tokens: int = 256):
    """A GSM8K prompt and a worked completion of exactly ``n_tokens`` tokens of the real model's tokenizer:
    reference solutions of consecutive GSM8K problems, one after another (a long trace, for timing)."""
    from acpo.models import load_policy

    _, tok = load_policy("smollm2")
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:40]]
    text = "\n".join(r["answer"] for r in rows)
    ids = tok(text, add_special_tokens=False)["input_ids"][:n_tokens]
    answer = rows[0]["answer"].rsplit("####", 1)[-1].strip()
    return {"prompt": f"Q: {rows[0]['question']}\n", "completion": tok.decode(ids), "answer": answer, "family": "none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["mean_logprob", "info_gain", "hapo"],
                    help="credit methods to time")
    ap.add_argument("--n", type=int, default=0, help="sample traces to time (0: all)")
    ap.add_argument("--resample-n", type=int, default=8, help="sample traces for the resampling credit")
    ap.add_argument("--mc", type=int, default=8, help="continuations per boundary (M) for the resampling credit")
    ap.add_argument("--clients", type=int, default=20, help="concurrent clients")
    ap.add_argument("--per-client", type=int, default=3, help="requests per concurrent client")
    ap.add_argument("--real", action="store_true", help="also time a 256-token trace of the real model (smollm2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo policy is fastest on one)")
    ap.add_argument("--quick", action="store_true", help="3 traces, info_gain only, 2 clients: for CI")
    ap.add_argument("--csv", type=Path, help="also write one row per request here")
    ap.add_argument("--load", action="store_true",
                    help="only the load test: --clients normal explains unloaded, then beside 2 clients of each "
                         "hostile request kind; p95 of both and GET /config latency")
    args = ap.parse_args()
    if args.quick:
        args.n, args.methods, args.resample_n, args.mc, args.clients, args.per_client = 3, ["info_gain"], 1, 2, 2, 1
    import pandas as pd
    import torch
    from gradio_client import Client

    from acpo.models import DEMO_POLICY
    from app.callbacks import Explorer
    from app.layout import build_app
    from app.loaders import DEFAULT_SAMPLES

    torch.set_num_threads(args.threads)
    samples = [json.loads(line) for line in DEFAULT_SAMPLES.read_text().splitlines() if line.strip()]
    samples = samples[: args.n] if args.n else samples
    if args.load:
        return main_load(args, samples)
    explorer = Explorer([ROOT / "assets"])
    demo = build_app(explorer)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False)
    rows = []
    try:
        time_explain(explorer, client, DEMO_POLICY, samples, args.methods, rows, "demo policy")
        worked = [s for s in samples if "\n" in s["completion"]][: args.resample_n] or samples[:1]
        time_explain(explorer, client, DEMO_POLICY, worked, ["mc_reset"], rows, "demo policy",
                     mc=(args.mc, 1.0, 64, 64))
        if args.real:
            trace = real_trace()
            first_real = time_explain(explorer, client, "smollm2", [trace] * 3, args.methods, rows,
                                      "SmolLM2-135M (256 tokens)")
            time_explain(explorer, client, "smollm2", [trace], ["mc_reset"], rows, "SmolLM2-135M (256 tokens)",
                         mc=(4, 1.0, 64, 64))
        times, errors, wall = concurrent(url, DEMO_POLICY, samples, explorer.first_method, args.clients,
                                         args.per_client)
    finally:
        demo.close()
    df = pd.DataFrame(rows)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.csv, index=False)
    table = df.groupby(["model", "method"], sort=False).agg(
        requests=("http_s", "size"), tokens=("tokens", "median"), steps=("steps", "mean"),
        in_process_median_s=("in_process_s", "median"), http_median_s=("http_s", "median"),
        http_p90_s=("http_s", lambda x: float(x.quantile(0.9))), method_median_s=("method_s", "median"),
    ).reset_index()
    from acpo.credit import CREDIT_METHODS

    mc = df[df["method"].isin([m for m, c in CREDIT_METHODS.items() if c.samples_continuations])]
    print(f"app latency: /explain, {len(samples)} demo sample traces, {args.threads} torch thread(s), after a warm-up")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.real:
        print(f"first explain of SmolLM2-135M (load from the cached conversion + first forward, {args.methods[0]}): "
              f"{first_real:.2f} s server side")
    for label, part in mc.groupby("model", sort=False):
        # K step boundaries are sampled, the prompt alone included
        per_boundary = (part["method_s"] / part["steps"]).median()
        print(f"resampling credit ({label}): {per_boundary:.3f} s per step boundary (median; M continuations each)")
    ok = pd.Series(times, dtype=float)
    print(f"{args.clients} concurrent clients x {args.per_client} /explain ({explorer.first_method}): "
          f"{len(ok)} ok, {len(errors)} errors, p50 {ok.quantile(0.5):.3f} s, p95 {ok.quantile(0.95):.3f} s, "
          f"wall {wall:.1f} s")
    for e in errors[:3]:
        print("  error:", e)


def main_load(args, samples) -> None:
    """The load test, on the app as an operator starts it (``python app/main.py``: default caps, its queue),
    in its own process, so that the clients here do not share its interpreter."""
    import subprocess
    import tempfile
    import urllib.request

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        chain = hostile_models(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([sys.executable, str(ROOT / "app" / "main.py"), "--port", str(port),
                                   "--threads", str(args.threads), "--allow", str(Path(tmp) / "allowed")],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(url + "config", timeout=5).read()
                    break
                except OSError:
                    time.sleep(0.5)
            method = "mean_logprob"  # the app's first method (the fidelity table's pick), a cheap one
            concurrent(url, DEMO_POLICY_NAME, samples, method, 2, 2)  # warm-up
            idle = []
            for _ in range(10):  # GET /config with nothing else running: its own cost
                t0 = time.perf_counter()
                urllib.request.urlopen(url + "config", timeout=60).read()
                idle.append(time.perf_counter() - t0)
            runs = {"unloaded": load_test(url, samples, method, args.clients, args.per_client, {}),
                    "loaded": load_test(url, samples, method, args.clients, args.per_client,
                                        adversaries(chain, samples[0]))}
        finally:
            server.terminate()
            server.wait()
    print(f"load test: {args.clients} clients x {args.per_client} /explain ({method}) on the demo policy, "
          f"{args.threads} torch thread(s); loaded = beside 2 clients of each hostile kind, back to back")
    rows = []
    for name, r in runs.items():
        ok, cfg = pd.Series(r["times"], dtype=float), pd.Series(r["config_s"], dtype=float)
        rows.append({"run": name, "ok": len(ok), "errors": len(r["errors"]), "p50_s": ok.quantile(0.5),
                     "p95_s": ok.quantile(0.95), "max_s": ok.max(), "wall_s": r["wall"],
                     "config_p95_s": cfg.quantile(0.95), "config_max_s": cfg.max()})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"GET /config alone (10 requests, nothing else running): median {pd.Series(idle).median():.3f} s, "
          f"max {max(idle):.3f} s")
    ratio = rows[1]["p95_s"] / rows[0]["p95_s"]
    print(f"p95 loaded / unloaded: {ratio:.2f} (target <= 2); /config max under load: {rows[1]['config_max_s']:.3f} s "
          "(target < 1)")
    print("hostile requests (2 clients each): count, median seconds, outcome")
    for kind, got in runs["loaded"]["outcomes"].items():
        secs = pd.Series([g[0] for g in got], dtype=float)
        kinds = pd.Series([g[1] for g in got]).value_counts()
        print(f"  {kind}: {len(got)}, {secs.median():.3f} s, " + "; ".join(f"{n}x {o}" for o, n in kinds.items()))
    for e in runs["loaded"]["errors"][:3]:
        print("  error of a normal request:", e)


if __name__ == "__main__":
    main()
