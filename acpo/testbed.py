"""The testbed policy: long traces whose failures come from one planted, fixable wrong rule.

On the demo policy every credit trains as well as outcome-only GRPO, because RL there fixes a
shallow habit that any credit fixes. This policy is built so that good step credit *should* help:
it solves ``running_total`` chains (8-12 steps, ``acpo.tasks.running_total``) and gets every step
right except one step type. In a subtraction that needs a borrow (the total's ones digit is below
the operand) it forgets the borrow at a fixed rate (``43-7=46`` instead of 36) and then carries on
correctly from the wrong total. A failed completion is then one wrong step among about ten right
ones: outcome-only GRPO spreads the penalty over every token, a credit that localises puts it on the
slip.

It is the demo policy's model and training loop (``acpo.demo_policy``: the character-level
tokenizer, the Llama, the SFT loop) on slipped demonstrations, drawn anew each time a problem is
drawn so the slip cannot be tied to particular problems.

Commands (``python -m acpo.testbed --help``):

* ``build``: train from scratch, save model + tokenizer, measure, write the card;
* ``eval``: re-measure the card's numbers (pass@1, and what share of the failures the slip is).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acpo import demo_policy
from acpo.demo_policy import BuildConfig, build_model, build_tokenizer, load_demo_policy, sft
from acpo.resources import ASSETS
from acpo.rollout import generate_texts
from acpo.tasks import ANSWER_MARKER, Problem, check, heldout_problems, make_problems
from acpo.tasks.running_total import needs_borrow

TESTBED_PATH = ASSETS / "testbed-policy"
FAMILY = "running_total"
MIX = ((FAMILY, 1),)
"""The testbed's task mix, as train.py's ``--tasks running_total:1``."""
MAX_NEW_TOKENS = 128  # 12 steps of 8 characters, the answer line and </s>, with room for a slipped 3-digit total
_STEP = re.compile(r"^(\d+)([-+])(\d+)=(-?\d+)$")


@dataclass
class TestbedConfig(BuildConfig):
    """Everything that determines the testbed policy; the card records it. Model sizes are the demo policy's."""

    steps: int = 900
    n_train: int = 20000
    habit_steps: int = 0  # no habit: the planted slip is the only thing RL has to fix
    direct_share: float = 0.0
    slip_rate: float = 0.3
    """Probability, drawn per borrow subtraction of a demonstration, that its result forgets the borrow."""
    polish_steps: int = 300
    """A second phase on the same slipped demonstrations with the optimiser restarted at ``polish_lr``: after
    the first phase the policy reads every operand right but still mixes up the sign of some operations
    (which then fail for a reason other than the slip); the second phase removes that."""
    polish_lr: float = 2e-3
    polish_warmup_steps: int = 20


def slipped_demonstration(problem: Problem, rng: random.Random, slip_rate: float) -> str:
    """The SFT target of a ``running_total`` problem: the reference steps, except that each subtraction needing
    a borrow forgets it with probability ``slip_rate`` (result 10 too high); later steps go on correctly from
    the total written, so only the slipped steps are wrong and the answer is off by 10 per slip.

    >>> p = Problem("x", FAMILY, 1, "Q: 43-7+2=?\\n", "38", "43-7=36\\n36+2=38\\n#### 38")
    >>> slipped_demonstration(p, random.Random(0), 1.0)
    '43-7=46\\n46+2=48\\n#### 48'
    """
    written: int | None = None
    lines = []
    for step in problem.solution.split("\n")[:-1]:
        a, op, b, _ = _STEP.match(step).groups()
        total, b = int(a) if written is None else written, int(b)
        value = total + b if op == "+" else total - b
        if needs_borrow(total, op, b) and rng.random() < slip_rate:
            value += 10
        lines.append(f"{total}{op}{b}={value}")
        written = value
    return "".join(f"{line}\n" for line in lines) + f"{ANSWER_MARKER} {written}"


def training_problems(cfg: TestbedConfig) -> list[Problem]:
    """The SFT set: ``running_total`` problems of seed ``cfg.seed``, its held-out pool excluded."""
    return make_problems(mix=MIX, n=cfg.n_train, seed=cfg.seed)


def heldout(n: int = 400) -> list[Problem]:
    """The testbed's held-out problems (the family's own pool, what train.py evaluates with ``--tasks``)."""
    return heldout_problems(n, MIX)


def is_planted_slip(step: str) -> bool:
    """Whether a step line is the planted slip: a borrow subtraction whose result is 10 too high."""
    m = _STEP.match(step.replace(" ", ""))
    if not m:
        return False
    a, op, b, r = int(m[1]), m[2], int(m[3]), int(m[4])
    return needs_borrow(a, op, b) and r == a - b + 10


@dataclass
class TestbedEval:
    """Pass@1 and what the failures are: how many have their first wrong step at a borrow subtraction (the
    step the reference solution takes there needs a borrow), how many are exactly the planted slip, and the
    slip rate per borrow subtraction reached (up to the first wrong step)."""

    n: int
    pass_at_1: float
    failures: int
    first_error_at_borrow: float
    planted_slip: float
    slip_rate: float
    mean_steps: float


def evaluate(model, tokenizer, problems: Sequence[Problem], *, temperature: float = 0.0, seed: int = 0) -> TestbedEval:
    """One completion per problem (greedy at ``temperature=0``), judged by the family's checker."""
    completions = generate_texts(model, tokenizer, [p.prompt for p in problems], temperature=temperature, seed=seed,
                                 max_new_tokens=MAX_NEW_TOKENS)
    right = failures = at_borrow = slips = borrows_reached = slips_reached = steps = 0
    for problem, completion in zip(problems, completions):
        result = check(problem, completion)
        reference = problem.solution.split("\n")[:-1]
        steps += len(result.steps)
        stop = len(reference) if result.first_error is None else min(result.first_error + 1, len(reference))
        for k in range(stop):  # borrow subtractions the completion reached with every earlier step right
            a, op, b, _ = _STEP.match(reference[k]).groups()
            if needs_borrow(int(a), op, int(b)):
                borrows_reached += 1
                slips_reached += int(k == result.first_error and is_planted_slip(result.steps[k]))
        if result.answer_correct:
            right += 1
            continue
        failures += 1
        k = result.first_error
        if k is not None and k < len(reference):
            a, op, b, _ = _STEP.match(reference[k]).groups()
            at_borrow += int(needs_borrow(int(a), op, int(b)))
            slips += int(k < len(result.steps) and is_planted_slip(result.steps[k]))
    return TestbedEval(n=len(problems), pass_at_1=right / len(problems), failures=failures,
                       first_error_at_borrow=at_borrow / max(1, failures), planted_slip=slips / max(1, failures),
                       slip_rate=slips_reached / max(1, borrows_reached), mean_steps=steps / len(problems))


def measure(model, tokenizer, seed: int, n: int = 400) -> dict[str, TestbedEval]:
    """The card's numbers: greedy and sampled (T=1, ``seed``) on the first ``n`` held-out problems."""
    problems = heldout(n)
    return {"greedy": evaluate(model, tokenizer, problems),
            "sampled": evaluate(model, tokenizer, problems, temperature=1.0, seed=seed)}


CARD_FIGURE_RE = re.compile(r"sampled \(T=1\) pass@1 on (\d+) held-out problems: \*\*([\d.]+)\*\*")


def write_card(out: Path, cfg: TestbedConfig, n_params: int, build_s: float, final_loss: float,
               results: dict[str, TestbedEval], continued: bool = False) -> None:
    """``README.md`` next to the weights: how it was made and what it gets wrong."""
    g, s = results["greedy"], results["sampled"]
    size_mb = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6

    def row(name: str, e: TestbedEval) -> str:
        return (f"| {name} | {e.pass_at_1:.3f} | {e.failures} | {e.first_error_at_borrow:.1%} | {e.planted_slip:.1%} "
                f"| {e.slip_rate:.3f} | {e.mean_steps:.1f} |")

    card = f"""---
library_name: transformers
tags: [acpo, rlvr, testbed, tiny, character-level]
---
# acpo testbed policy

A {n_params / 1e6:.2f}M-parameter character-level `LlamaForCausalLM` (the demo policy's tokenizer and
size), trained from scratch by `acpo/testbed.py` on the `running_total` task (`acpo.tasks.running_total`:
8-12 one-digit additions and subtractions on a two-digit running total, one step per line). It gets
every step right except one planted rule: in a subtraction that needs a borrow (ones digit of the
total below the operand) it forgets the borrow on about {cfg.slip_rate:.0%} of demonstrations
(`43-7=46` instead of 36), then carries on correctly from the wrong total. So most failures are
one wrong step, of one type, among 8-12 right ones (the share is measured below; the rest are rarer
slips of a sampled character anywhere): the testbed where step credit should beat outcome-only GRPO
if it does anywhere (docs/BENCHMARKS.md).

- sampled (T=1) pass@1 on {s.n} held-out problems: **{s.pass_at_1:.3f}**; greedy: {g.pass_at_1:.3f}
- share of sampled failures whose first wrong step is a borrow subtraction: {s.first_error_at_borrow:.1%}
  (exactly the planted slip, the result 10 too high: {s.planted_slip:.1%})

## How it was made

```
python -m acpo.testbed build --out assets/testbed-policy --seed {cfg.seed} --steps {cfg.steps} --polish-steps {cfg.polish_steps} --slip-rate {cfg.slip_rate} --threads {cfg.threads}
```

Build time {build_s / 60:.1f} min on {cfg.threads} CPU thread(s) (2-core CPU, shared with other jobs){
" for the second phase; the first phase was loaded from an earlier build of the same command with --polish-steps 0 (--continue-from), which took 16.7 min" if continued else ""};
final training loss {final_loss:.3f}; {size_mb:.1f} MB on disk (safetensors + tokenizer).

- Architecture: Llama, hidden {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} heads, MLP
  {cfg.intermediate_size}, tied embeddings, the demo policy's character-level tokenizer.
- Data: {cfg.n_train} `running_total` problems from `acpo.tasks.make_problems` (seed {cfg.seed}); the
  family's held-out pool is excluded. Text: `Q: <problem>\\n` then the steps, one per line, then
  `#### <answer></s>`; loss on completion tokens only. Each time a problem is drawn, every borrow
  subtraction of its demonstration forgets the borrow with probability {cfg.slip_rate}
  (`acpo.testbed.slipped_demonstration`); nothing else is ever wrong.
- Optimiser: AdamW, lr {cfg.lr}, {cfg.warmup_steps} warmup steps then cosine decay, batch {cfg.batch_size},
  {cfg.steps} steps, weight decay {cfg.weight_decay}; then a second phase of {cfg.polish_steps} steps on the same
  demonstrations, AdamW restarted at lr {cfg.polish_lr} ({cfg.polish_warmup_steps} warmup steps, cosine decay): after
  the first phase alone the policy read every operand right but still wrote the wrong sign on some steps.
  Full config: `build_config.json`.

## Measured on held-out problems

`acpo.testbed.heldout({s.n})` (`heldout_problems({s.n}, (("running_total", 1),))`), one completion
per problem, greedy and sampled at T=1 (seed {cfg.seed}, no top-k/top-p), {MAX_NEW_TOKENS} new tokens.
Reproduce with `python -m acpo.testbed eval`. Slip rate: planted slips per borrow subtraction reached
with every earlier step right.

| decoding | pass@1 | failures | first wrong step at a borrow | exactly the planted slip | slip rate per borrow | lines per completion |
|---|---|---|---|---|---|---|
{row("greedy", g)}
{row("sampled (T=1)", s)}

Greedy decoding picks the right tens digit at a borrow (the slip is the less likely choice), so RL
on this policy shows in the *sampled* pass@1.

## Use

Train on it with `python train.py --model assets/testbed-policy --tasks running_total:1 --max-new-tokens {MAX_NEW_TOKENS}`.
Not for any use beyond testing credit assignment.
"""
    (out / "README.md").write_text(card)


def card_pass_at_1(path: str | Path = TESTBED_PATH) -> tuple[int, float]:
    """``(n, pass@1)``: the card's headline sampled figure."""
    return demo_policy.card_pass_at_1(path, CARD_FIGURE_RE)


def load_testbed_policy(path: str | Path = TESTBED_PATH):
    """``(model, tokenizer)`` of a built testbed policy, offline, in eval mode."""
    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"no testbed policy at '{path}'; build it with: python -m acpo.testbed build --out {path}")
    return load_demo_policy(path)


def _print(results: dict[str, TestbedEval]) -> None:
    for name, e in results.items():
        print(f"{name:8s} pass@1 {e.pass_at_1:.3f} on {e.n}; failures {e.failures}: first wrong step at a borrow "
              f"{e.first_error_at_borrow:.1%}, planted slip {e.planted_slip:.1%}; slip rate per borrow "
              f"{e.slip_rate:.3f}; {e.mean_steps:.1f} lines")


def cmd_build(args: argparse.Namespace) -> None:
    cfg = TestbedConfig(seed=args.seed, steps=args.steps, slip_rate=args.slip_rate, threads=args.threads,
                        n_train=args.n_train, polish_steps=args.polish_steps)
    if not 0.0 <= cfg.slip_rate < 1.0:
        raise SystemExit(f"--slip-rate must be in [0, 1), got {cfg.slip_rate}")
    torch.set_num_threads(cfg.threads)
    start = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters; vocab {len(tokenizer)}")
    problems = training_problems(cfg)
    demonstrate = lambda p, rng: slipped_demonstration(p, rng, cfg.slip_rate)  # noqa: E731
    if args.continue_from:  # phase 1 of this very config, written by an earlier build: load it, do phase 2 only
        earlier = json.loads((Path(args.continue_from) / "build_config.json").read_text())
        if {k: v for k, v in earlier.items() if not k.startswith("polish")} != {
                k: v for k, v in asdict(cfg).items() if not k.startswith("polish")}:
            raise SystemExit(f"--continue-from {args.continue_from}: its build_config.json is not this build's phase 1")
        model = load_demo_policy(args.continue_from)[0].train()
        losses = []
    else:
        losses = sft(model, tokenizer, problems, cfg.steps, cfg.lr, cfg.warmup_steps, 0.0, cfg,
                     desc="slipped demonstrations", demonstrate=demonstrate)
    if cfg.polish_steps:
        losses += sft(model, tokenizer, problems, cfg.polish_steps, cfg.polish_lr, cfg.polish_warmup_steps, 0.0, cfg,
                      desc="second phase", demonstrate=demonstrate)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "build_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    results = measure(model, tokenizer, cfg.seed, args.eval_n)
    build_s = time.time() - start
    write_card(out, cfg, n_params, build_s, sum(losses[-50:]) / len(losses[-50:]), results, bool(args.continue_from))
    _print(results)
    print(f"built {out} in {build_s / 60:.1f} min")


def cmd_eval(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_testbed_policy(args.path)
    _print(measure(model, tokenizer, args.seed, args.eval_n))
    if (Path(args.path) / "README.md").exists():
        n, figure = card_pass_at_1(args.path)
        print(f"card says: sampled pass@1 on {n} held-out problems = {figure:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m acpo.testbed",
                                     description="Build and evaluate the testbed policy (one planted borrow slip).")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = TestbedConfig()
    build = sub.add_parser("build", help="train from scratch, save weights + tokenizer + model card")
    build.add_argument("--out", default=str(TESTBED_PATH), help="output folder (default: %(default)s)")
    build.add_argument("--seed", type=int, default=defaults.seed, help="seed for data, init and batches")
    build.add_argument("--steps", type=int, default=defaults.steps, help="training steps (default: %(default)s)")
    build.add_argument("--slip-rate", type=float, default=defaults.slip_rate,
                       help="probability that a demonstration's borrow subtraction forgets the borrow "
                            "(default: %(default)s)")
    build.add_argument("--n-train", type=int, default=defaults.n_train, help="training problems (default: %(default)s)")
    build.add_argument("--polish-steps", type=int, default=defaults.polish_steps,
                       help="steps of the second phase (default: %(default)s)")
    build.add_argument("--continue-from", help="a folder built by this command with --polish-steps 0 and otherwise "
                       "the same settings: load its weights and run the second phase only (the same result as one "
                       "build, in two sittings)")
    build.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    build.add_argument("--eval-n", type=int, default=400, help="held-out problems measured for the card")
    build.set_defaults(func=cmd_build)
    ev = sub.add_parser("eval", help="re-measure the card's numbers on the held-out problems")
    ev.add_argument("--path", default=str(TESTBED_PATH), help="testbed policy folder or a train.py checkpoint of it")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed of the T=1 figures (the card's build seed)")
    ev.add_argument("--eval-n", type=int, default=400, help="held-out problems (default: %(default)s)")
    ev.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ev.set_defaults(func=cmd_eval)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
