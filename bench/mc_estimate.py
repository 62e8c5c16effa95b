"""The Explore tab's resampling-credit (mc_reset) estimate against the real time, on the demo policy's failed
sample traces: estimate / actual per trace, and how many times the progress bar moved.

    python bench/mc_estimate.py [TRACES] [M]        # defaults: 12 traces (those that show their working), M=8
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

import acpo  # noqa: E402
from acpo.resources import ASSETS  # noqa: E402
from acpo.tokens import encode_prompt  # noqa: E402
from app.callbacks import Explorer  # noqa: E402

torch.set_num_threads(1)
ex = Explorer([ASSETS])
n_traces = int(sys.argv[1]) if len(sys.argv) > 1 else 12
rows = [r for r in ex.samples if r.get("reward") == 0.0 and "\n" in r["completion"]][:n_traces]
M, BATCH, TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 8, 64, 64
out = []
for r in rows:
    model, tok = ex.models.get(None)
    sent, chat = ex.model_prompt(None, tok, r["prompt"], r["answer"], r["family"])
    t0 = time.perf_counter()
    trace = acpo.explain(model, tok, sent, r["completion"], method="info_gain", segmentation="lines", chat_template=chat, answer=r["answer"], reward=0.0)
    est_s = time.perf_counter() - t0
    est, calls = ex.resampling_seconds(model, tok, sent, trace, M, BATCH, TOKENS)
    # the former estimate: every continuation runs to the token limit
    per_call, n = max(1, BATCH // M), len(trace.steps)
    prefix = encode_prompt(tok, sent) + trace.token_ids[: len(trace.token_ids) // 2]
    limit = est_s + sum(TOKENS * ex._step_seconds(model, tok, prefix, min(per_call, n - a) * M)
                        for a in range(0, n, per_call))
    est += est_s
    seen = []
    opts = ex.resampling_options(r["family"], r["prompt"], r["answer"], M, 1.0, BATCH, TOKENS,
                                 progress=lambda f, desc="": seen.append(f))
    t0 = time.perf_counter()
    state, _ = ex.explain_trace(None, False, r["prompt"], r["completion"], r["answer"], "", r["family"], "mc_reset",
                                "lines", "#### ", opts)
    actual = time.perf_counter() - t0
    moves = len({round(f, 3) for f in seen})
    out.append((r["id"], len(trace.steps), est, actual, moves, limit))
    print(f"{r['id']}: {len(trace.steps)} steps, estimate {est:.2f} s (computed in {est_s:.2f} s), actual {actual:.2f} s, "
          f"ratio {est / actual:.2f} (to the token limit: {limit / actual:.2f}), progress values {moves}", flush=True)
print(f"median estimate/actual {statistics.median(e / a for _, _, e, a, _, _ in out):.2f} "
      f"(range {min(e / a for _, _, e, a, _, _ in out):.2f}-{max(e / a for _, _, e, a, _, _ in out):.2f}); "
      f"to the token limit {statistics.median(t / a for _, _, _, a, _, t in out):.2f}")
