"""ProcessBench: does a credit find the earliest wrong step of solutions nobody here wrote?

ProcessBench (Zheng et al., arXiv 2412.06559) gives solutions written by Llama and Qwen models, already split
into steps, each labelled by humans with the index of its earliest wrong step or -1. A method predicts that
index (or -1); the paper's score is the F1, the harmonic mean of the accuracy on erroneous solutions (exact
index) and on correct ones (-1). Every row here scores the solutions with one scoring model
(SmolLM2-135M-Instruct by default) through ``acpo.explain_batch`` on the solution's own steps.

A step score (a credit: lower = more blamed) becomes a prediction with a threshold: the first step scored below
it, else -1. The threshold is chosen on one seeded half of the split (stratified by erroneous / correct) and the
table reports the other, held-out half. Also on the erroneous solutions of that half: top-1 (the lowest-scored
step is the labelled one) and the AUROC of -score at telling the labelled step from the right steps before it;
95% bootstrap intervals over solutions (the threshold held fixed); seconds per solution; F1 by generator.

Rows: every registered credit (``mc_reset`` only with ``--mc``: it samples continuations from every step), the
position and text controls (first step, last step, random, the first step with an '=' and the step with the
largest number), and the scoring model itself as a prompted critic with ProcessBench's critique prompt: read as
a forced choice (its log-probability of each ``\\boxed{k}``, k = -1..K-1, the likeliest taken) on the first
``--critic-n`` held-out solutions, and, the paper's protocol, writing its critique (greedy, parsed from
``\\boxed{N}``) on the first ``--critic-generate`` of them; the critic needs no threshold. With the outcome known
(``final_answer_correct``), a second table gives each row's F1 when a right final answer means -1 (the RL
setting; not the paper's protocol).

    python bench/processbench.py --critic-n 40 --critic-generate 5 --publish   # the run in docs/BENCHMARKS.md
    python bench/processbench.py                       # ../shared/data/processbench/gsm8k.json, 400 solutions
    python bench/processbench.py --quick               # 12 solutions, 64 bootstrap resamples
    python bench/processbench.py --publish             # also write assets/processbench.csv (acpo.recommend)
    python bench/processbench.py --cached-only         # the table on the forwards a stopped run cached
    python bench/processbench.py --data Qwen/ProcessBench --split math   # where the hub is reachable

The forward over each solution (and the information-gain probes) is done once and cached (``--cache``), so a
rerun, or a new credit, costs only what is new.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import acpo  # noqa: E402
from acpo.answers import extract_answer, last_boxed, last_number  # noqa: E402
from acpo.credit import CREDIT_METHODS, CreditBatch, get_credit_method  # noqa: E402
from acpo.data import NO_ERROR, LabelledSolution, load_step_labelled  # noqa: E402
from acpo.fidelity import auroc  # noqa: E402
from acpo.models import load_policy  # noqa: E402
from acpo.segment import Step  # noqa: E402
from acpo.tokens import encode_prompt, pad_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "processbench" / "gsm8k.json"
FIXTURE = ROOT / "tests" / "data" / "processbench" / "gsm8k.json"
PUBLISHED = ROOT / "assets" / "processbench.csv"
SAMPLED = tuple(name for name, method in CREDIT_METHODS.items() if method.samples_continuations)
"""Credits that sample continuations from every step: run only when asked (``--mc``), they cost minutes each."""

VARIANTS = {"verified_steps, checks only (no model)": ("verified_steps", {"model_fallback": False})}
"""Other readings of a registered credit reported beside it: name -> (credit, options)."""

CRITIQUE_TEMPLATE = """The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed from 0):

[Math Problem]

{problem}

[Solution]

{tagged_response}

Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{{}}."""
"""ProcessBench's critique prompt (``code/templates/critique_template.txt`` of QwenLM/ProcessBench)."""


def critique_prompt(solution: LabelledSolution) -> str:
    tagged = "".join(f"<paragraph_{k}>\n{s}\n</paragraph_{k}>\n\n" for k, s in enumerate(solution.steps))
    return CRITIQUE_TEMPLATE.format(problem=solution.problem, tagged_response=tagged.rstrip("\n"))


def parse_critique(text: str, n_steps: int) -> int | None:
    """The index in the last ``\\boxed{N}`` of a critique, or None when there is none or it is out of range."""
    boxed = last_boxed(text)
    if boxed is None or not re.fullmatch(r"\s*-?\d+\s*", boxed):
        return None
    index = int(boxed)
    return index if NO_ERROR <= index < n_steps else None


# --- splitting and scoring ---------------------------------------------------------------------------------


def halves(labels: list[int], seed: int) -> tuple[list[int], list[int]]:
    """(tune, held-out) indices: a seeded half of the erroneous and of the correct solutions each."""
    rng = np.random.default_rng(seed)
    tune, held = [], []
    for group in ([i for i, lab in enumerate(labels) if lab >= 0], [i for i, lab in enumerate(labels) if lab < 0]):
        order = [group[j] for j in rng.permutation(len(group))]
        tune += order[: len(order) // 2]
        held += order[len(order) // 2:]
    return sorted(tune), sorted(held)


def predict(scores: list[np.ndarray], threshold: float) -> list[int]:
    """The first step scored below ``threshold`` in each solution, else -1."""
    out = []
    for s in scores:
        below = np.flatnonzero(np.asarray(s) < threshold)
        out.append(int(below[0]) if len(below) else NO_ERROR)
    return out


def accuracies(predicted: list[int], labels: list[int]) -> tuple[float, float, float]:
    """(accuracy on erroneous, accuracy on correct, F1 = their harmonic mean), in percent like the paper."""
    err = [p == lab for p, lab in zip(predicted, labels) if lab >= 0]
    cor = [p == NO_ERROR for p, lab in zip(predicted, labels) if lab < 0]
    a = 100 * float(np.mean(err)) if err else float("nan")
    c = 100 * float(np.mean(cor)) if cor else float("nan")
    f1 = 2 * a * c / (a + c) if a + c > 0 else 0.0
    return a, c, f1


def best_threshold(scores: list[np.ndarray], labels: list[int]) -> float:
    """The threshold with the best F1 on these solutions (candidates: midpoints of the sorted step scores, and
    below every score, which predicts -1 everywhere); ties go to the lowest."""
    values = np.unique(np.concatenate([np.asarray(s, dtype=float) for s in scores]))
    values = values[np.isfinite(values)]
    candidates = np.concatenate([[values[0] - 1.0] if len(values) else [0.0], (values[:-1] + values[1:]) / 2,
                                 [values[-1] + 1.0] if len(values) else []])
    if len(candidates) > 400:  # a few hundred quantiles are enough and keep this fast
        candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 400)))
    f1 = [accuracies(predict(scores, t), labels)[2] for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def top1(scores, labels) -> float:
    pairs = [(s, lab) for s, lab in zip(scores, labels) if lab >= 0]
    return float(np.mean([int(np.argmin(s)) == lab for s, lab in pairs])) if pairs else float("nan")


def error_auroc(scores, labels) -> float:
    pairs = [(s, lab) for s, lab in zip(scores, labels) if lab >= 0]
    return auroc([s for s, _ in pairs], [lab for _, lab in pairs]) if pairs else float("nan")


def bootstrap_ci(fn, n: int, reps: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of ``fn(indices)`` over ``reps`` resamples of ``n`` solutions."""
    rng = np.random.default_rng(seed)
    vals = [fn(rng.integers(0, n, n)) for _ in range(reps)]
    vals = [v for v in vals if np.isfinite(v)]
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (np.nan, np.nan)


# --- the cached forward ---------------------------------------------------------------------------------


@dataclass
class Scored:
    """One solution scored by the model: token statistics, the given steps, and credits per method."""

    id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    steps: list[Step]
    logprobs: torch.Tensor
    entropy: torch.Tensor
    credits: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # "forward" and each credit
    critique: str | None = None


def load_cache(path: Path | None, model_name: str) -> dict[str, Scored]:
    if path is None or not path.exists():
        return {}
    saved = torch.load(path, weights_only=False)
    if saved.get("model") != model_name:
        print(f"cache {path} is for {saved.get('model')!r}, not {model_name!r}: starting afresh", file=sys.stderr)
        return {}
    return {k: Scored(**v) for k, v in saved["scored"].items()}


def save_cache(path: Path | None, model_name: str, scored: dict[str, Scored]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model_name, "scored": {k: dict(vars(v)) for k, v in scored.items()}}, tmp)
    tmp.replace(path)


def stated_answer(text: str) -> str | None:
    """A solution's own final answer, its number alone where it states one (``$400`` -> ``400``: the
    information gain's target, in characters any tokenizer knows)."""
    answer = extract_answer(text)
    return (last_number(answer) or answer) if answer else None


def one_batch(model, tok, s: Scored) -> CreditBatch:
    """The one-solution ``CreditBatch`` of a cached forward, so a credit runs without scoring again."""
    tensors = pad_batch([s.prompt_ids], [s.completion_ids], tok.pad_token_id)
    return CreditBatch(*tensors, logprobs=s.logprobs[None], entropy=s.entropy[None], steps=[s.steps],
                       advantages=torch.zeros(1), group_ids=torch.zeros(1, dtype=torch.long),
                       answers=[stated_answer(s.text)], reference_answers=[stated_answer(s.text)], texts=[s.text],
                       model=model, tokenizer=tok)


def score_solutions(model, tok, solutions: list[LabelledSolution], methods: list[str], cache: dict[str, Scored],
                    cache_path: Path | None, model_name: str, options: dict) -> dict[str, Scored]:
    """The forward over each solution once (``explain_batch`` on its given steps) and every method's credits;
    what the cache already holds is reused, a method missing from it is computed on the cached forward."""
    started, done = time.perf_counter(), 0
    for n, sol in enumerate(solutions):
        s = cache.get(sol.id)
        if s is None:
            t0 = time.perf_counter()
            answer = stated_answer("\n".join(sol.steps))  # the solution's own answer: the info-gain target
            if answer is None:
                raise SystemExit(f"solution {sol.id} states no number to take as its answer; drop it")
            forward_methods = [m for m in methods if m not in SAMPLED]
            trace = acpo.explain_batch(model, tok, [sol.problem], [list(sol.steps)], method=forward_methods,
                                       answers=[answer], batch_size=1, method_options=options)[0]
            total = time.perf_counter() - t0
            s = Scored(sol.id, encode_prompt(tok, sol.problem), list(trace.token_ids), trace.completion,
                       trace.steps, trace.logprobs, trace.entropies,
                       {m: trace.credits[m].numpy().astype(float) for m in forward_methods},
                       {"forward": total - sum(trace.seconds.values()), **trace.seconds})
            cache[sol.id] = s
            done += 1
        for m in methods:
            if m not in s.credits:
                t0 = time.perf_counter()
                credit = get_credit_method(m, **options.get(m, {}))
                s.credits[m] = credit.credits(one_batch(model, tok, s)).step_credits[0].numpy().astype(float)
                s.seconds[m] = time.perf_counter() - t0
                done += 1
        if done and (done % 10 == 0 or n == len(solutions) - 1):
            save_cache(cache_path, model_name, cache)
            rate = (time.perf_counter() - started) / max(1, n + 1)
            print(f"scored {n + 1}/{len(solutions)} ({rate:.1f} s each)", file=sys.stderr, flush=True)
    save_cache(cache_path, model_name, cache)
    return cache


ANSWER_PREFIX = "The index of the paragraph where the earliest error occurs is \\boxed{"
"""What the forced-choice critic's answer starts with; the model's probability of each ``k}`` after it is its
vote for index k."""


@torch.no_grad()
def critic_choice(model, tok, solution: LabelledSolution) -> np.ndarray:
    """The critic's log-probability of answering ``\\boxed{k}`` for k = -1, 0, ..., K-1: one forward over the
    critique prompt and the answer's start, then each candidate on that KV cache."""
    prompt = encode_prompt(tok, critique_prompt(solution)) + tok(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt])
    out = model(input_ids=ids, use_cache=True)
    cache, first = out.past_key_values, torch.log_softmax(out.logits[0, -1].float(), -1)
    scores = []
    for k in range(NO_ERROR, len(solution.steps)):
        cand = tok(f"{k}}}", add_special_tokens=False)["input_ids"]
        total = float(first[cand[0]])
        if len(cand) > 1:
            step = model(input_ids=torch.tensor([cand[:-1]]), past_key_values=cache, use_cache=True,
                         position_ids=torch.arange(len(prompt), len(prompt) + len(cand) - 1)[None])
            lp = torch.log_softmax(step.logits[0].float(), -1)
            total += float(sum(lp[j, c] for j, c in enumerate(cand[1:])))
            cache.crop(-(len(cand) - 1))  # back to the prompt alone
        scores.append(total)
    return np.asarray(scores)


def critique_solutions(model, tok, solutions: list[LabelledSolution], cache: dict[str, Scored], generate: int,
                       max_new_tokens: int, cache_path: Path | None, model_name: str) -> None:
    """The scoring model as a prompted critic: the forced choice of its answer on every solution, and its free
    greedy critique (the paper's protocol) on the first ``generate`` of them; all into the cache."""
    from acpo.rollout import HFEngine

    engine = HFEngine(model, tok, max_new_tokens, temperature=1.0, batch_size=1)
    for n, sol in enumerate(solutions):
        s, changed = cache[sol.id], False
        if "critic_choice" not in s.credits:
            t0 = time.perf_counter()
            s.credits["critic_choice"] = critic_choice(model, tok, sol)
            s.seconds["critic_choice"] = time.perf_counter() - t0
            changed = True
        if generate and s.critique is None and sum(c.critique is not None for c in cache.values()) < generate:
            t0 = time.perf_counter()
            s.critique = engine.generate([encode_prompt(tok, critique_prompt(sol))], greedy=True)[0].text
            s.seconds["critic"] = time.perf_counter() - t0
            changed = True
        if changed and ((n + 1) % 10 == 0 or n == len(solutions) - 1):
            save_cache(cache_path, model_name, cache)
            print(f"critiqued {n + 1}/{len(solutions)}", file=sys.stderr, flush=True)
    save_cache(cache_path, model_name, cache)


# --- the rows -----------------------------------------------------------------------------------------------


def largest_number(text: str) -> float:
    return max((abs(float(x)) for x in re.findall(r"\d+(?:\.\d+)?", text.replace(",", ""))), default=0.0)


def controls(seed: int) -> dict:
    """Step scores that see only positions and text (lower = blamed)."""
    rng = np.random.default_rng(seed)
    first_eq = lambda s: np.array([0.0 if "=" in st.text else 1.0 for st in s.steps])  # noqa: E731
    return {
        "first step (control)": lambda s: np.arange(len(s.steps), dtype=float),
        "last step (control)": lambda s: -np.arange(len(s.steps), dtype=float),
        "random (control)": lambda s: rng.random(len(s.steps)),
        "first step with '=' (control)": lambda s: first_eq(s) + np.arange(len(s.steps)) / (10 * len(s.steps)),
        "largest number (control)": lambda s: -np.array([largest_number(st.text) for st in s.steps]),
    }


def method_row(name: str, kind: str, scores, predicted_held, labels, tune, held, reps: int, seed: int,
               seconds: float) -> dict:
    """One table row: F1 and accuracies on the held-out half (threshold from the tune half, or the method's own
    predictions), top-1 and AUROC on its erroneous solutions, bootstrap intervals."""
    held_scores = [scores[i] for i in held]
    held_labels = [labels[i] for i in held]
    threshold = np.nan
    if predicted_held is None:
        threshold = best_threshold([scores[i] for i in tune], [labels[i] for i in tune])
        predicted_held = predict(held_scores, threshold)
    a, c, f1 = accuracies(predicted_held, held_labels)
    f1_ci = bootstrap_ci(lambda idx: accuracies([predicted_held[i] for i in idx], [held_labels[i] for i in idx])[2],
                         len(held), reps, seed)
    t_ci = bootstrap_ci(lambda idx: top1([held_scores[i] for i in idx], [held_labels[i] for i in idx]),
                        len(held), reps, seed)
    tuned_f1 = np.nan if np.isnan(threshold) else accuracies(predict([scores[i] for i in tune], threshold),
                                                             [labels[i] for i in tune])[2]
    return {"method": name, "kind": kind, "solutions": len(held), "acc_erroneous": a, "acc_correct": c, "f1": f1,
            "f1_lo": f1_ci[0], "f1_hi": f1_ci[1], "top1": top1(held_scores, held_labels), "top1_lo": t_ci[0],
            "top1_hi": t_ci[1], "auroc": error_auroc(held_scores, held_labels), "threshold": threshold,
            "f1_tune_half": tuned_f1, "chance_top1": float(np.mean([1 / len(s) for s, lab in
                                                                     zip(held_scores, held_labels) if lab >= 0])),
            "s_per_solution": seconds}


def by_generator(name, predicted_held, held, solutions) -> dict:
    out = {"method": name}
    gens = sorted({solutions[i].generator for i in held})
    for g in gens:
        idx = [k for k, i in enumerate(held) if solutions[i].generator == g]
        out[g] = accuracies([predicted_held[k] for k in idx], [solutions[held[k]].label for k in idx])[2]
    return out


def outcome_gated(all_scores: dict, solutions: list[LabelledSolution], held: list[int], reps: int, seed: int):
    """Each row's F1 when the outcome reward is known, as in RL with verifiable rewards: a solution whose final
    answer is right is predicted -1, any other gets its lowest-scored step (a wrong answer has a wrong step)."""
    import pandas as pd

    labels = [solutions[i].label for i in held]
    rows = []
    for name, scores in all_scores.items():
        predicted = [NO_ERROR if solutions[i].final_answer_correct else int(np.argmin(scores[i])) for i in held]
        a, c, f1 = accuracies(predicted, labels)
        lo, hi = bootstrap_ci(lambda idx: accuracies([predicted[i] for i in idx], [labels[i] for i in idx])[2],
                              len(held), reps, seed)
        rows.append({"method": name, "acc_erroneous": a, "acc_correct": c, "f1": f1, "f1_lo": lo, "f1_hi": hi})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="a ProcessBench-format file, or a dataset name "
                    "(default: %(default)s)")
    ap.add_argument("--split", default="gsm8k", help="the split of a dataset name (default: %(default)s)")
    ap.add_argument("--model", default="smollm2", help="the scoring model (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--n", type=int, help="score the first N solutions of a seeded shuffle (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the split into halves and the bootstrap")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-critic", dest="critic", action="store_false", help="skip the prompted critic")
    ap.add_argument("--critic-generate", type=int, default=20, help="held-out solutions the critic also writes a "
                    "free critique for, the paper's protocol (default: %(default)s; it costs ~20 s each here)")
    ap.add_argument("--critic-tokens", type=int, default=96, help="new tokens of a free critique")
    ap.add_argument("--critic-n", type=int, help="held-out solutions the forced-choice critic scores (default: all)")
    ap.add_argument("--cached-only", action="store_true", help="the table on the solutions whose forward is "
                    "cached already (a random sample: they are scored in a seeded order); no new forwards")
    ap.add_argument("--mc", type=int, default=0, help="continuations per step for mc_reset (0: skip it)")
    ap.add_argument("--cache", type=Path, help="cache of the forwards (default: bench/out/processbench-<data>.pt)")
    ap.add_argument("--recompute", nargs="*", default=[], help="credits to compute afresh on the cached forwards "
                    "(after changing one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="12 solutions of the bundled fixture, 64 resamples")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--publish", action="store_true", help=f"also write {PUBLISHED.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    if args.quick:
        args.data = args.data if args.data != str(DEFAULT_DATA) else str(FIXTURE)
        args.n, args.bootstrap, args.critic_generate, args.critic_tokens = args.n or 12, 64, 2, 16
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pandas as pd

    data = Path(args.data)
    if not data.exists() and data == DEFAULT_DATA:
        raise SystemExit(f"no ProcessBench data at {data}; pass --data FILE, --data Qwen/ProcessBench where the hub "
                         "is reachable, or --quick for the bundled fixture")
    solutions = load_step_labelled(args.data, split=args.split)
    # a seeded order, so that the solutions scored first (or the first --n) are a random sample of the split
    solutions = [solutions[i] for i in np.random.default_rng(args.seed).permutation(len(solutions))[: args.n]]
    labels = [s.label for s in solutions]
    tune, held = halves(labels, args.seed)
    critic_set = set(held[: args.critic_n]) if args.critic else set()  # the held-out ones scored first
    cache_path = args.cache or args.out / f"processbench-{Path(args.data).stem}-{args.split}.pt"
    model, tok = load_policy(args.model)
    methods = [m for m in CREDIT_METHODS if m not in SAMPLED or args.mc]
    options = {"mc_reset": {"samples": args.mc, "seed": args.seed}} if args.mc else {}
    cache = load_cache(cache_path, args.model)
    for s in cache.values():
        for m in args.recompute:
            s.credits.pop(m, None)
    t0 = time.perf_counter()
    if args.cached_only:  # a stopped run: the table on what it scored (a seeded random sample), nothing new
        keep = [i for i, s in enumerate(solutions) if s.id in cache]
        print(f"{len(keep)} of {len(solutions)} solutions have a cached forward: the table is on those",
              file=sys.stderr)
        solutions, labels = [solutions[i] for i in keep], [labels[i] for i in keep]
        where = {old: new for new, old in enumerate(keep)}
        tune, held = [where[i] for i in tune if i in where], [where[i] for i in held if i in where]
        critic_set = {where[i] for i in critic_set if i in where and "critic_choice" in cache[solutions[where[i]].id].credits}
        score_solutions(model, tok, solutions, methods, cache, cache_path, args.model, options)
    else:
        for start in range(0, len(solutions), 10):  # the critic right after its solution's forward
            chunk = range(start, min(len(solutions), start + 10))
            score_solutions(model, tok, [solutions[i] for i in chunk], methods, cache, cache_path, args.model,
                            options)
            critique_solutions(model, tok, [solutions[i] for i in chunk if i in critic_set], cache,
                               args.critic_generate, args.critic_tokens, cache_path, args.model)
    critic_held = [i for i in held if i in critic_set]
    print(f"{len(solutions)} solutions scored ({time.perf_counter() - t0:.0f} s this run)", file=sys.stderr)

    scored = [cache[s.id] for s in solutions]
    forward_s = float(np.mean([s.seconds["forward"] for s in scored]))
    rows, gens, all_scores = [], [], {}
    for m in methods:
        scores = all_scores[m] = [s.credits.get(m, np.zeros(len(s.steps))) for s in scored]
        spent = forward_s + float(np.mean([s.seconds.get(m, 0.0) for s in scored]))
        row = method_row(m, "credit", scores, None, labels, tune, held, args.bootstrap, args.seed, spent)
        rows.append(row)
        gens.append(by_generator(m, predict([scores[i] for i in held], row["threshold"]), held, solutions))
    for name, (method, opts) in VARIANTS.items():  # cheap readings of a registered credit, on the cached forwards
        t0 = time.perf_counter()
        credit = get_credit_method(method, **opts)
        scores = all_scores[name] = [credit.credits(one_batch(model, tok, s)).step_credits[0].numpy().astype(float)
                                     for s in scored]
        spent = forward_s * bool(opts.get("model_fallback", True)) + (time.perf_counter() - t0) / len(scored)
        row = method_row(name, "variant", scores, None, labels, tune, held, args.bootstrap, args.seed, spent)
        rows.append(row)
        gens.append(by_generator(name, predict([scores[i] for i in held], row["threshold"]), held, solutions))
    for name, fn in controls(args.seed).items():
        scores = all_scores[name] = [fn(s) for s in scored]
        row = method_row(name, "control", scores, None, labels, tune, held, args.bootstrap, args.seed, 0.0)
        rows.append(row)
        gens.append(by_generator(name, predict([scores[i] for i in held], row["threshold"]), held, solutions))
    if critic_held:
        held_all, held = held, critic_held
        choice = [scored[i].credits["critic_choice"] for i in held]
        predicted = [int(np.argmax(c)) + NO_ERROR for c in choice]  # candidates are -1, 0, ..., K-1
        scores = [np.zeros(len(s.steps)) for s in scored]
        for i, c in zip(held, choice):
            scores[i] = -c[1:]  # the more likely an index, the more blamed its step
        spent = float(np.mean([scored[i].seconds["critic_choice"] for i in held]))
        row = method_row("prompted critic, forced choice of \\boxed{k}", "critic", scores, predicted, labels, tune,
                         held, args.bootstrap, args.seed, spent)
        row["note"] = f"predicted -1 on {sum(p == NO_ERROR for p in predicted)}/{len(held)}"
        rows.append(row)
        gens.append(by_generator(row["method"], predicted, held, solutions))
        free = [i for i in held if scored[i].critique is not None]
        if free:
            parsed = [parse_critique(scored[i].critique, len(scored[i].steps)) for i in free]
            predicted = [NO_ERROR - 1 if p is None else p for p in parsed]  # unparsed: neither an index nor -1
            scores = [np.zeros(len(s.steps)) for s in scored]
            for i, p in zip(free, parsed):
                if p is not None and p >= 0:
                    scores[i][p] = -1.0
            spent = float(np.mean([scored[i].seconds["critic"] for i in free]))
            row = method_row(f"prompted critic, free critique ({len(free)} solutions)", "critic", scores, predicted,
                             labels, tune, free, args.bootstrap, args.seed, spent)
            row["note"] = f"\\boxed{{N}} parsed in {sum(p is not None for p in parsed)}/{len(free)}"
            rows.append(row)
        held = held_all
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "processbench.csv", index=False)
    pd.DataFrame(gens).to_csv(args.out / "processbench_by_generator.csv", index=False)
    if args.publish:
        table.assign(measured=time.strftime("%Y-%m-%d"), scoring_model=args.model,
                     data=f"{Path(args.data).name}:{args.split}" if not data.exists() else data.name,
                     labels="human (ProcessBench)").to_csv(PUBLISHED, index=False)
    n_err = sum(labels[i] >= 0 for i in held)
    print(f"ProcessBench {Path(args.data).name}: held-out half {len(held)} solutions ({n_err} erroneous), "
          f"threshold tuned on the other {len(tune)}; scoring model {args.model}; 95% bootstrap CI "
          f"({args.bootstrap} resamples)")
    cols = ["method", "acc_erroneous", "acc_correct", "f1", "f1_lo", "f1_hi", "top1", "top1_lo", "top1_hi", "auroc",
            "chance_top1", "f1_tune_half", "s_per_solution"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    for r in rows:
        if r.get("note"):
            print(f"  {r['method']}: {r['note']}")
    if all(s.final_answer_correct is not None for s in solutions):
        gated = outcome_gated(all_scores, solutions, held, args.bootstrap, args.seed)
        gated.to_csv(args.out / "processbench_outcome_gated.csv", index=False)
        print("\nGiven the outcome reward (the RLVR setting, not the paper's protocol: the critic there is not told "
              "whether the final answer is right): -1 when the final answer is right, else the lowest-scored step; "
              "held-out half, no threshold:")
        print(gated.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("\nF1 by generator (held-out half):")
    print(pd.DataFrame(gens).to_string(index=False, float_format=lambda x: f"{x:.1f}"))


if __name__ == "__main__":
    main()
