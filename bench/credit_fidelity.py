"""Credit fidelity: does a credit method blame the first wrong step of a failed completion?

Samples the demo policy (T=1) on held-out synthetic problems, keeps failed
completions whose first wrong step the task's checker locates, and scores
every step with each method. A method localises the error when its
lowest-credit step is the step holding the checker's first wrong line.
Reports top-1 accuracy, the AUROC of -credit at telling that step from the
(correct) steps before it, the mean number of steps (chance top-1 is about
1/K), and the cost per trace; 95% bootstrap intervals over traces.

    python bench/credit_fidelity.py              # 300 failed traces, M = 8 and 16 for mc_oracle
    python bench/credit_fidelity.py --quick      # 24 traces, M = 2: for CI
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import acpo  # noqa: E402
from acpo.credit.mc_reset import mc_step_credits, parse_self_localisation, self_localisation_prompt  # noqa: E402
from acpo.models import DEMO_POLICY, load_policy  # noqa: E402
from acpo.rollout import HFEngine  # noqa: E402
from acpo.tasks import TASKS, first_error_step, get_task, heldout_problems  # noqa: E402
from acpo.tokens import encode_prompt  # noqa: E402


@dataclass
class Failed:
    problem: object
    completion: str
    check: object


@dataclass
class MethodResult:
    """Per-trace step scores (lower = more blamed), the error step, and the cost."""

    name: str
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    seconds: float = 0.0
    forward_tokens: int = 0
    note: str = ""


def collect_failed(model, tok, n: int, seed: int, max_new_tokens: int) -> list[Failed]:
    """Failed T=1 samples on held-out problems that show working and whose first wrong line has a span."""
    engine = HFEngine(model, tok, max_new_tokens, temperature=1.0)
    problems = heldout_problems(600)
    out: list[Failed] = []
    torch.manual_seed(seed)
    for round_ in range(20):
        samples = engine.generate([encode_prompt(tok, p.prompt) for p in problems], n=1)
        for p, s in zip(problems, samples):
            res = get_task(p.family).check(p, s.text)
            # an answer given without working has one step: nothing to localise
            if (not res.answer_correct and res.shows_working and res.first_error is not None
                    and res.first_error < len(res.step_char_spans)):
                out.append(Failed(p, s.text, res))
        if len(out) >= n:
            break
    return out[:n]


def explain_all(model, tok, failed, method, segmentation, **kw):
    return acpo.explain_batch(
        model, tok, [f.problem.prompt for f in failed], [f.completion for f in failed], method=method,
        segmentation=segmentation, answers=[f.problem.answer for f in failed], rewards=[0.0] * len(failed),
        group_ids=list(range(len(failed))), probe=TASKS[failed[0].problem.family].answer_probe, batch_size=32, **kw,
    )


def traced_method(name, model, tok, failed, method, segmentation, score_fn, probe_tokens=0) -> MethodResult:
    t0 = time.perf_counter()
    traces = explain_all(model, tok, failed, method, segmentation)
    res = MethodResult(name, seconds=time.perf_counter() - t0)
    for f, tr in zip(failed, traces):
        res.scores.append(score_fn(tr))
        res.labels.append(first_error_step(f.check, tr.steps))
        n = len(tok(f.problem.prompt)["input_ids"]) + len(tr.token_ids)
        res.forward_tokens += n  # the forward that gives token statistics
        if probe_tokens:  # ACPO's packed forward: the trace again plus K+1 probes
            res.forward_tokens += n + (len(tr.steps) + 1) * probe_tokens
    return res


def mc_oracle(model, tok, failed, m: int, max_new_tokens: int, seed: int) -> MethodResult:
    """V_k from M continuations after every line boundary; credits V_k - V_{k-1} (METHODS.md §3.4)."""
    engine = HFEngine(model, tok, max_new_tokens, temperature=1.0)
    t0 = time.perf_counter()
    traces = explain_all(model, tok, failed, "uniform", "lines")
    torch.manual_seed(seed)
    res = MethodResult(f"mc_oracle M={m}")
    prefixes, owners = [], []
    for i, (f, tr) in enumerate(zip(failed, traces)):
        prompt = encode_prompt(tok, f.problem.prompt)
        for k in range(0, len(tr.steps)):  # k = 0: the group's own value V_0
            end = tr.steps[k - 1].token_end if k else 0
            prefixes.append(prompt + tr.token_ids[:end])
            owners.append((i, k, tr.completion[: tr.steps[k - 1].char_end] if k else ""))
    samples = engine.generate(prefixes, n=m)
    values: dict[tuple[int, int], list[float]] = {}
    for j, s in enumerate(samples):
        i, k, head = owners[j // m]
        f = failed[i]
        reward = float(get_task(f.problem.family).check(f.problem, head + s.text).answer_correct)
        values.setdefault((i, k), []).append(reward)
        res.forward_tokens += len(s.prompt_ids) + len(s.completion_ids)
    for i, (f, tr) in enumerate(zip(failed, traces)):
        v0 = float(np.mean(values[(i, 0)]))
        boundary = {k: values[(i, k)] for k in range(1, len(tr.steps))}
        res.scores.append(mc_step_credits(len(tr.steps), v0, 0.0, boundary).numpy())
        res.labels.append(first_error_step(f.check, tr.steps))
    res.seconds = time.perf_counter() - t0
    return res


def self_localisation(model, tok, failed) -> MethodResult:
    """SRPO's choice: the policy is shown the numbered steps and asked for the first wrong one."""
    engine = HFEngine(model, tok, 16, temperature=1.0)
    t0 = time.perf_counter()
    traces = explain_all(model, tok, failed, "uniform", "lines")
    prompts = [encode_prompt(tok, self_localisation_prompt([s.text for s in tr.steps])) for tr in traces]
    answers = engine.generate(prompts, greedy=True)
    res = MethodResult("srpo self-localisation")
    parsed = 0
    for f, tr, a in zip(failed, traces, answers):
        step, ok = parse_self_localisation(a.text, len(tr.steps))
        parsed += ok
        score = np.zeros(len(tr.steps))
        score[step - 1] = -1.0
        res.scores.append(score)
        res.labels.append(first_error_step(f.check, tr.steps))
        res.forward_tokens += len(a.prompt_ids) + len(a.completion_ids)
    res.seconds = time.perf_counter() - t0
    res.note = f"named a step in {parsed}/{len(failed)} answers; else the middle step"
    return res


def auroc(scores: list[np.ndarray], labels: list[int]) -> float:
    """AUROC of -score: the error step (positive) vs the steps before it (negatives), pooled."""
    pos = np.array([-s[l] for s, l in zip(scores, labels)])
    neg = np.concatenate([-s[:l] for s, l in zip(scores, labels)] + [np.zeros(0)])
    if len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def top1(scores, labels) -> float:
    return float(np.mean([int(np.argmin(s)) == l for s, l in zip(scores, labels)]))


def bootstrap(fn, scores, labels, reps: int, rng) -> tuple[float, float]:
    n = len(scores)
    vals = []
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        vals.append(fn([scores[i] for i in idx], [labels[i] for i in idx]))
    vals = [v for v in vals if not np.isnan(v)]
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (np.nan, np.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEMO_POLICY, help="policy folder (default: the demo policy)")
    ap.add_argument("--n", type=int, default=300, help="failed traces to score")
    ap.add_argument("--mc", type=int, nargs="+", default=[8, 16], help="continuations per boundary for mc_oracle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="24 traces, M = 2, 200 resamples: for CI")
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for the CSV and the figure")
    args = ap.parse_args()
    if args.quick:
        args.n, args.mc, args.bootstrap = 24, [2], 200
    import pandas as pd
    import plotly.graph_objects as go

    torch.set_num_threads(1)  # the demo policy is tiny: one thread is fastest
    model, tok = load_policy(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    failed = collect_failed(model, tok, args.n, args.seed, args.max_new_tokens)
    print(f"{len(failed)} failed traces with a located first error ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    if not failed:
        raise SystemExit("no failed completions with a located error: is the policy solving everything?")

    probe_len = len(tok("#### " + failed[0].problem.answer, add_special_tokens=False)["input_ids"])
    credit = lambda name: (lambda tr: tr.credits[name].numpy())  # noqa: E731
    results = [
        traced_method(f"acpo ({seg})", model, tok, failed, "acpo", seg, credit("acpo"), probe_len)
        for seg in ("lines", "hybrid", "entropy")
    ]
    results.append(traced_method("hapo step mean (lines)", model, tok, failed, "hapo", "lines", credit("hapo")))
    results += [mc_oracle(model, tok, failed, m, args.max_new_tokens, args.seed) for m in args.mc]
    results.append(self_localisation(model, tok, failed))
    baselines = {
        "random": lambda tr: rng.random(len(tr.steps)),
        "last step": lambda tr: -np.arange(len(tr.steps), dtype=float),
        "max-entropy step": lambda tr: -tr.to_frame()["entropy_mean"].to_numpy(),
        "min-logprob step": lambda tr: tr.to_frame()["logprob_mean"].to_numpy(),
    }
    for name, fn in baselines.items():
        results.append(traced_method(name, model, tok, failed, "uniform", "lines", fn))

    rows = []
    for r in results:
        lo, hi = bootstrap(top1, r.scores, r.labels, args.bootstrap, rng)
        alo, ahi = bootstrap(auroc, r.scores, r.labels, args.bootstrap, rng)
        rows.append({
            "method": r.name, "top1": top1(r.scores, r.labels), "top1_lo": lo, "top1_hi": hi,
            "auroc": auroc(r.scores, r.labels), "auroc_lo": alo, "auroc_hi": ahi,
            "mean_steps": float(np.mean([len(s) for s in r.scores])),
            "chance_top1": float(np.mean([1 / len(s) for s in r.scores])),
            "forward_tokens_per_trace": r.forward_tokens / len(failed), "ms_per_trace": 1000 * r.seconds / len(failed),
            "note": r.note,
        })
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "credit_fidelity.csv", index=False)
    fig = go.Figure(go.Bar(
        x=df["method"], y=df["top1"],
        error_y={"type": "data", "symmetric": False, "array": df["top1_hi"] - df["top1"],
                 "arrayminus": df["top1"] - df["top1_lo"]},
    ))
    fig.add_scatter(x=df["method"], y=df["chance_top1"], mode="markers", name="chance (1/K)")
    fig.update_layout(title=f"Top-1 localisation of the first wrong step ({len(failed)} failed traces)",
                      yaxis_title="top-1 accuracy", yaxis_range=[0, 1])
    fig.write_html(args.out / "credit_fidelity.html", include_plotlyjs="cdn")
    print(f"credit fidelity: {len(failed)} failed demo-policy traces, 95% bootstrap CI ({args.bootstrap} resamples)")
    cols = ["method", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "mean_steps", "chance_top1",
            "forward_tokens_per_trace", "ms_per_trace"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for r in results:
        if r.note:
            print(f"  {r.name}: {r.note}")


if __name__ == "__main__":
    main()
