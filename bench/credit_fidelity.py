"""Credit fidelity: does a credit method blame the first wrong step of a failed completion?

Samples a policy (T=1) on held-out synthetic problems, keeps failed
completions whose first wrong step the task's checker locates, and scores
every step with each method. A policy with a chat template (the real-model
demo policy, ``assets/real-demo-policy``) is asked its own mix of problems
(``acpo.real_demo``) through the template. A method localises the error when its
lowest-credit step is the step holding the checker's first wrong line.
Reports top-1 accuracy, the AUROC of -credit at telling that step from the
(correct) steps before it, the mean number of steps (chance top-1 is about
1/K), and the cost per trace; 95% bootstrap intervals over traces. The
metrics are ``acpo.fidelity``'s, the ones the app's Batch tab shows.

    python bench/credit_fidelity.py              # 300 failed traces, M = 8 and 16 for mc_reset
    python bench/credit_fidelity.py --publish    # also write assets/credit_fidelity.csv (the app reads it)
    python bench/credit_fidelity.py --quick      # 24 traces, M = 2: for CI
    python bench/credit_fidelity.py --traces f.jsonl   # the registered methods on a file's own traces
    python bench/credit_fidelity.py --model assets/real-demo-policy --mc 8 --mc-traces 100
    python bench/credit_fidelity.py --model assets/testbed-policy --tasks running_total:1 --max-new-tokens 128

Beyond top-1 and AUROC (the wrong step against the right steps before it), it
reports the position-matched comparison: the wrong line against right lines at
the same step index of other failed traces of the same family, level and length,
so a method cannot score by where a line sits; and text-only controls (first step, the line with
the largest number) that see only the text. ``--readings`` adds the readings of
the information-gain credit side by side (probe string, gold vs contrast target,
answer line scored or left out, step length normalisation; METHODS.md §3.2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import acpo  # noqa: E402
from acpo.credit.mc_reset import parse_self_localisation, self_localisation_prompt  # noqa: E402
from acpo.fidelity import fidelity_row, fidelity_table, matched_auroc  # noqa: E402
from acpo.models import DEMO_POLICY, load_policy  # noqa: E402
from acpo.prompts import PromptStyle, has_chat_template  # noqa: E402
from acpo.real_demo import heldout as real_demo_heldout  # noqa: E402
from acpo.recipe import parse_mix  # noqa: E402
from acpo.rollout import HFEngine  # noqa: E402
from acpo.tasks import TASKS, Problem, first_error_step, get_task, heldout_problems  # noqa: E402
from acpo.tasks import check as check_problem  # noqa: E402
from acpo.tokens import encode_prompt  # noqa: E402
from acpo.verdict import localisable, unlabelled_counts  # noqa: E402

PUBLISHED = Path(__file__).resolve().parent.parent / "assets" / "credit_fidelity.csv"


@dataclass
class Sampled:
    problem: object
    prompt: object  # what the policy was asked: plain text, or chat messages through its template
    completion: str
    check: object


@dataclass
class MethodResult:
    """Per-trace step scores (lower = more blamed), the error step, and the cost."""

    name: str
    credit: str = ""  # the registered credit method behind the row, if any
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    seconds: float = 0.0
    forward_tokens: int = 0
    note: str = ""
    strata: list[tuple] = field(default_factory=list)  # (family, level, lines) of each failed trace


def heldout_for(tok, tasks: str | None = None) -> list[Problem]:
    """The held-out problems a policy is measured on: ``tasks``' (train.py's ``family:level,...``) when given,
    else the real-model demo mix for chat models and the default mix for the others."""
    if tasks:
        return heldout_problems(600, tuple(parse_mix(tasks)))
    return real_demo_heldout(100) if has_chat_template(tok) else heldout_problems(600)


def collect(model, tok, n: int, seed: int, max_new_tokens: int, rounds: int = 20, tasks: str | None = None,
            ) -> list[Sampled]:
    """T=1 samples on held-out problems: up to ``n`` failed ones that show working and whose first wrong
    line has a span; the others are counted by why they give no label."""
    engine = HFEngine(model, tok, max_new_tokens, temperature=1.0)
    pool = heldout_for(tok, tasks)
    per_round = min(len(pool), max(32, 4 * n))  # a few failures need only a few problems (--quick)
    failed: list[Sampled] = []
    checks = []
    torch.manual_seed(seed)
    for r in range(rounds):
        problems = [pool[(r * per_round + i) % len(pool)] for i in range(per_round)]
        prompts = [PromptStyle().prompt_for(tok, p) for p in problems]
        samples = engine.generate([encode_prompt(tok, q) for q in prompts], n=1)
        for p, q, s in zip(problems, prompts, samples):
            res = get_task(p.family).check(p, s.text)
            checks.append(res)
            if localisable(res):  # an answer given without working has one step: nothing to localise
                failed.append(Sampled(p, q, s.text, res))
        if len(failed) >= n:
            break
    skipped = ", ".join(f"{k} {v}" for k, v in unlabelled_counts(checks).items())
    print(f"{len(checks)} samples; {len(failed)} labelled failures; skipped: {skipped}", file=sys.stderr)
    return failed[:n]


def save_samples(path: Path, sampled: list[Sampled]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for x in sampled:
            f.write(json.dumps({"problem": dataclasses.asdict(x.problem), "prompt": x.prompt,
                                "completion": x.completion}) + "\n")


def load_samples(path: Path) -> list[Sampled]:
    """Samples saved by ``save_samples``, re-checked (the checker's verdict is not trusted from the file)."""
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        problem = Problem(**row["problem"])
        out.append(Sampled(problem, row["prompt"], row["completion"], get_task(problem.family).check(problem,
                                                                                                  row["completion"])))
    return out


def explain_all(model, tok, sampled, method, segmentation, **kw):
    return acpo.explain_batch(
        model, tok, [f.prompt for f in sampled], [f.completion for f in sampled], method=method,
        segmentation=segmentation, answers=[f.problem.answer for f in sampled],
        rewards=[0.0] * len(sampled), group_ids=list(range(len(sampled))),
        probe=kw.pop("probe", TASKS[sampled[0].problem.family].answer_probe), batch_size=32, **kw,
    )


def traced_method(name, model, tok, failed, method, segmentation, score_fn, probe_tokens=0, credit="",
                  **kw) -> MethodResult:
    t0 = time.perf_counter()
    traces = explain_all(model, tok, failed, method, segmentation, **kw)
    return scored(name, model, tok, failed, traces, score_fn, time.perf_counter() - t0, probe_tokens, credit)


def scored(name, model, tok, failed, traces, score_fn, seconds, probe_tokens=0, credit="") -> MethodResult:
    """A method's row from traces already explained (one forward can serve every method and baseline)."""
    res = MethodResult(name, credit=credit, seconds=seconds)
    for f, tr in zip(failed, traces):
        res.scores.append(np.asarray(score_fn(tr), dtype=float))
        res.labels.append(first_error_step(f.check, tr.steps))
        res.strata.append((f.problem.family, f.problem.level, len(f.check.steps)))
        n = len(encode_prompt(tok, f.prompt)) + len(tr.token_ids)
        res.forward_tokens += n  # the forward that gives token statistics
        if probe_tokens:  # ACPO's packed forward: the trace again plus K+1 probes
            res.forward_tokens += n + (len(tr.steps) + 1) * probe_tokens
    return res


def mc_reset(model, tok, failed, m: int, max_new_tokens: int, seed: int) -> MethodResult:
    """The registered ``mc_reset`` credit: V_k from M continuations after every line boundary (METHODS.md §3.4)."""
    opts = {"mc_reset": {"samples": m, "temperature": 1.0, "batch_size": 256, "max_new_tokens": max_new_tokens,
                         "seed": seed}}
    res = traced_method(f"mc_reset M={m} (lines)", model, tok, failed, "mc_reset", "lines",
                        lambda tr: tr.credits["mc_reset"].numpy(), credit="mc_reset", method_options=opts)
    res.forward_tokens = float("nan")  # sampled lengths vary; the cost column is ms / trace
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


def largest_number(text: str) -> float:
    """Text-only control: the largest number a line writes (harder-looking lines are blamed)."""
    return max((abs(float(x)) for x in re.findall(r"\d+(?:\.\d+)?", text)), default=0.0)


def acpo_readings(model, tok, failed) -> list[MethodResult]:
    """The information-gain credit read every open way (METHODS.md §3.2 [ours]): probe string x target (the
    reference answer, or reference minus the completion's own answer) x per-token normalisation x the answer
    line scored or left out (never blamed). Each reading is a registered ``info_gain`` option except the last."""
    out = []
    for probe in ("#### ", "\nThe answer is "):
        for target in ("gold", "contrast"):
            for norm in (False, True):
                opts = {"info_gain": {"probe": probe, "target": target, "length_normalise": norm}}
                base = f"info_gain probe={probe!r} target={target}{' per-token' if norm else ''}"
                r = traced_method(base, model, tok, failed, "info_gain", "lines",
                                  lambda tr: tr.credits["info_gain"].numpy(),
                                  credit="info_gain", method_options=opts, probe=probe)
                left_out = MethodResult(base + " no-answer-line", credit="info_gain", seconds=r.seconds,
                                        labels=r.labels, strata=r.strata)
                for f, sc in zip(failed, r.scores):
                    sc = sc.copy()
                    if f.check.answer is not None and len(sc) == len(f.check.steps):
                        sc[-1] = np.inf  # the answer line is never the blamed step
                    left_out.scores.append(sc)
                out += [r, left_out]
    return out


def file_fidelity(model, tok, path: Path, methods, segmentation: str = "lines", probe: str = "#### ",
                  reps: int = 1000):
    """The fidelity table of registered ``methods`` on a file's own traces (JSONL or CSV with prompt,
    completion, answer and optionally family): the rows a checker can label (a synthetic task's checker where
    the family is one, else the free-form checker), scored as the app's Batch tab does. The rows left out are
    counted by cause on stderr."""
    import pandas as pd

    rows = pd.read_json(path, lines=True) if path.suffix == ".jsonl" else pd.read_csv(path)
    kept, checks, verdicts = [], [], []
    for r in rows.itertuples():
        family = getattr(r, "family", None)
        check = None
        if not pd.isna(getattr(r, "answer", None)):
            problem = Problem("row", family if isinstance(family, str) else "dataset", 1, r.prompt, str(r.answer))
            try:
                check = check_problem(problem, r.completion)
            except ValueError:  # the prompt is not this family's
                pass
        verdicts.append(check)
        if localisable(check):
            kept.append(r)
            checks.append(check)
    skipped = unlabelled_counts(verdicts)
    print(f"{len(kept)} of {len(rows)} traces labelled by a step checker" +
          ("; not labelled: " + ", ".join(f"{n} {why}" for why, n in skipped.items()) if skipped else ""),
          file=sys.stderr)
    if not kept:
        raise SystemExit(f"no trace of '{path}' has a first wrong line a checker can locate; "
                         "rows need a prompt, a completion and an answer")
    # the file's reward, else the checker's verdict on the answer (0: these completions failed), as the app does
    rewards = [float(r.reward) if pd.notna(getattr(r, "reward", None)) else 0.0 for r in kept]
    traces = acpo.explain_batch(model, tok, [r.prompt for r in kept], [r.completion for r in kept], method=methods,
                                segmentation=segmentation, answers=[str(r.answer) for r in kept], rewards=rewards,
                                probe=probe)
    labels = [first_error_step(c, t.steps) for c, t in zip(checks, traces)]
    return fidelity_table({m: [t.credits[m].numpy() for t in traces] for m in methods}, labels, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEMO_POLICY, help="policy folder (default: the demo policy)")
    ap.add_argument("--tasks", help="held-out problems of this task mix, as train.py's --tasks (e.g. "
                    "running_total:1 for the testbed policy; default: the policy's usual mix)")
    ap.add_argument("--n", type=int, help="failed traces to score (default: 300; --quick: 24)")
    ap.add_argument("--mc", type=int, nargs="*", default=[8, 16], help="continuations per boundary for mc_reset (none: skip it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--mc-traces", type=int, default=0, help="score mc_reset on the first N traces only (0: all)")
    ap.add_argument("--readings", action="store_true", help="also the readings of the information-gain credit")
    ap.add_argument("--readings-traces", type=int, default=0, help="the readings on the first N traces only (0: all)")
    ap.add_argument("--segmentations", nargs="+", default=["lines", "hybrid", "entropy"],
                    help="segmentations of the info_gain rows (default: %(default)s)")
    ap.add_argument("--samples", type=Path, help="JSONL of the failed samples: read when it exists, else written "
                    "after sampling (reruns score the same traces)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="24 traces, M = 2, 200 resamples: for CI")
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for the CSV and the figure")
    ap.add_argument("--publish", action="store_true", help=f"also write the table to {PUBLISHED.relative_to(PUBLISHED.parent.parent)}, where the app reads which credit localises best")
    ap.add_argument("--traces", type=Path, help="score the registered methods on this file's traces instead")
    ap.add_argument("--methods", nargs="+", default=["mean_logprob", "info_gain", "hapo", "entropy_mask"],
                    help="registered methods for --traces")
    args = ap.parse_args()
    if args.quick:
        args.n, args.mc, args.bootstrap = args.n or 24, [2], 200
    args.n = args.n or 300
    import pandas as pd
    import plotly.graph_objects as go

    torch.set_num_threads(args.threads)  # on a busy or small machine one thread is fastest
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model, tok = load_policy(args.model, device=device)
    if args.traces:
        table = file_fidelity(model, tok, args.traces, args.methods, reps=args.bootstrap)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    failed = load_samples(args.samples) if args.samples and args.samples.exists() else None
    if failed is None:
        try:
            failed = collect(model, tok, args.n, args.seed, args.max_new_tokens, tasks=args.tasks)
        except ValueError as err:  # a bad --tasks
            raise SystemExit(f"credit_fidelity.py: {err}") from err
        if args.samples:
            save_samples(args.samples, failed)
    print(f"{len(failed)} failed traces with a located first error ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    if not failed:
        raise SystemExit("no failed completions with a located error: is the policy solving everything?")

    probe_len = len(tok("#### " + failed[0].problem.answer, add_special_tokens=False)["input_ids"])
    credit = lambda name: (lambda tr: tr.credits[name].numpy())  # noqa: E731
    t0 = time.perf_counter()  # one forward (and info_gain's probes) for the registered methods and every baseline
    lines = explain_all(model, tok, failed, ["info_gain", "hapo", "mean_logprob", "entropy_mask", "result_logprob",
                                             "verified_steps"], "lines")
    shared = time.perf_counter() - t0
    results = [scored("info_gain (lines)", model, tok, failed, lines, credit("info_gain"), shared, probe_len,
                      "info_gain")]
    results += [traced_method(f"info_gain ({seg})", model, tok, failed, "info_gain", seg, credit("info_gain"),
                              probe_len, credit="info_gain") for seg in args.segmentations if seg != "lines"]
    for name, label in (("hapo", "hapo step mean"), ("mean_logprob", "mean_logprob"), ("entropy_mask", "entropy_mask"),
                        ("result_logprob", "result_logprob"), ("verified_steps", "verified_steps")):
        results.append(scored(f"{label} (lines)", model, tok, failed, lines, credit(name), shared, credit=name))
    mc_failed = failed[: args.mc_traces or len(failed)]
    results += [mc_reset(model, tok, mc_failed, m, args.max_new_tokens, args.seed) for m in args.mc]
    results.append(self_localisation(model, tok, failed))
    baselines = {
        "random": lambda tr: rng.random(len(tr.steps)),
        "first step": lambda tr: np.arange(len(tr.steps), dtype=float),
        "last step": lambda tr: -np.arange(len(tr.steps), dtype=float),
        "line with the largest number (text only)": lambda tr: -np.array([largest_number(s.text) for s in tr.steps]),
        "first line with an '=' (text only)": lambda tr: np.array([0.0 if "=" in s.text else 1.0 for s in tr.steps]),
        "max-entropy step": lambda tr: -tr.to_frame()["entropy_mean"].to_numpy(),
        "lowest-token log-prob step": lambda tr: np.array([float(tr.logprobs[s.token_start:s.token_end].min())
                                                           for s in tr.steps]),
    }
    for name, fn in baselines.items():
        results.append(scored(name, model, tok, failed, lines, fn, shared))
    if args.readings:
        results += acpo_readings(model, tok, failed[: args.readings_traces or len(failed)])

    rows = []
    answer_line = [len(f.check.steps) - 1 if f.check.answer is not None else -1 for f in failed]
    for r in results:
        strata = r.strata or [(f.problem.family, f.problem.level, len(f.check.steps)) for f in failed]
        rows.append({
            **fidelity_row(r.name, r.scores, r.labels, args.bootstrap, args.seed), "credit": r.credit,
            "matched_auroc": matched_auroc(r.scores, r.labels, strata, answer_line[: len(r.scores)]),
            "forward_tokens_per_trace": r.forward_tokens / len(r.scores), "ms_per_trace": 1000 * r.seconds / len(r.scores),
            "note": r.note,
        })
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "credit_fidelity.csv", index=False)
    if args.publish:
        stamp = time.strftime("%Y-%m-%d")
        df.assign(measured=stamp, policy=Path(args.model).name).to_csv(PUBLISHED, index=False)
    fig = go.Figure(go.Bar(
        x=df["method"], y=df["top1"],
        error_y={"type": "data", "symmetric": False, "array": df["top1_hi"] - df["top1"],
                 "arrayminus": df["top1"] - df["top1_lo"]},
    ))
    fig.add_scatter(x=df["method"], y=df["chance_top1"], mode="markers", name="chance (1/K)")
    fig.update_layout(title=f"Top-1 localisation of the first wrong step ({len(failed)} failed traces)",
                      yaxis_title="top-1 accuracy", yaxis_range=[0, 1])
    fig.write_html(args.out / "credit_fidelity.html", include_plotlyjs="cdn")
    print(f"credit fidelity: {len(failed)} failed traces of {args.model}, 95% bootstrap CI ({args.bootstrap} resamples)")
    cols = ["method", "traces", "top1", "top1_lo", "top1_hi", "auroc", "auroc_lo", "auroc_hi", "matched_auroc",
            "chance_top1", "ms_per_trace"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for r in results:
        if r.note:
            print(f"  {r.name}: {r.note}")


if __name__ == "__main__":
    main()
