"""The bundled demo policy: a tiny character-level Llama trained on the synthetic tasks.

It is the default model of the app, the tests and the trainer's quick runs,
so it must load offline from ``assets/demo-policy`` with plain
``AutoModelForCausalLM`` / ``AutoTokenizer``, stay small (a few MB), and be
*imperfect in a useful way*: greedy pass@1 in the middle of the range on the
default training mix, failures that are a wrong intermediate result or an
answer given without working (a habit RL can unlearn) rather than garbage, and
mixed right/wrong groups when sampled at temperature 1, so
that RL has signal to learn from.

Commands (``python -m acpo.demo_policy --help``):

* ``build``: train from scratch, save model + tokenizer, measure, write the card;
* ``eval``: re-measure the card's numbers on the fixed held-out problems;
* ``samples``: write ``assets/sample_traces.jsonl`` (checked completions).

Tokenizer choices (why): one token per character, so every step boundary
(``\\n``) is a token boundary and offsets map tokens to characters exactly;
no special tokens are added on encode, so ``encode(prompt) + encode(completion)
== encode(prompt + completion)``, which the core relies on when it scores a
completion after its prompt. Completions end with ``</s>``. Padding is on the
left, for batched generation.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import string
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from acpo.rollout import generate_texts
from acpo.resources import ASSETS
from acpo.tasks import (DEFAULT_TRAIN_MIX, OWN_HELDOUT_POOL, TASKS, Problem, check, heldout_problems,
                        make_problems)

DEFAULT_PATH = ASSETS / "demo-policy"
DEFAULT_SAMPLES_PATH = ASSETS / "sample_traces.jsonl"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CARD_FIGURE_RE = re.compile(r"greedy pass@1 on heldout_problems\((\d+)\): \*\*([\d.]+)%\*\*")


@dataclass
class BuildConfig:
    """Everything that determines the demo policy; the card records it."""

    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    n_train: int = 9000
    extra_level_share: float = 0.1
    """Share of training problems from levels beyond DEFAULT_TRAIN_MIX (so the
    curriculum's next levels start in the right format, not from zero)."""
    habit_steps: int = 300
    """A second, short fine-tune after the first ``steps`` that teaches the policy a habit
    RL can unlearn: with probability ``direct_share``, redrawn each time a problem is
    drawn (so it cannot be tied to particular problems), the target skips the working
    and is the answer line alone, which the policy then mostly gets wrong. RL with the
    task's verifiable reward unlearns it in CPU minutes, and that carries over to new
    problems (a sample that works step by step is right far more often). Without a
    habit the only errors left are arithmetic slips specific to each problem, and RL
    on CPU did not move held-out pass@1; mixed into the first phase from the start
    instead, the same habit barely moved either (docs/BENCHMARKS.md)."""
    habit_lr: float = 1e-3
    habit_warmup_steps: int = 20
    direct_share: float = 0.48
    """Share of the habit phase's demonstrations that are the answer line alone."""
    threads: int = 2


# --- tokenizer and model ------------------------------------------------------


def build_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` over printable ASCII plus ``\\n``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS.values(), *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one piece per char
    core.decoder = decoders.Fuse()  # join characters back without spaces
    # padding_side only persists into tokenizer_config.json when given here.
    return PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **SPECIAL_TOKENS)


def build_model(tokenizer, cfg: BuildConfig):
    """A small ``LlamaForCausalLM`` (Llama, not Qwen2: see the module docstring of the card)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def load_demo_policy(path: str | Path = DEFAULT_PATH):
    """Load ``(model, tokenizer)`` from a built demo-policy folder, offline, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no demo policy at '{path}'; build it with: python -m acpo.demo_policy build --out {path}"
        )
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.eval(), tokenizer


# --- supervised training ------------------------------------------------------


def _extra_levels() -> list[tuple[str, int]]:
    """The higher levels of the default mix's families; families added later (``OWN_HELDOUT_POOL``: arith1,
    running_total) are not the demo policy's, so its training set and card stay what they were built from."""
    return [(n, lv) for n, t in TASKS.items() for lv in t.levels
            if (n, lv) not in DEFAULT_TRAIN_MIX and n not in OWN_HELDOUT_POOL]


def training_problems(cfg: BuildConfig) -> list[Problem]:
    """The SFT set: mostly DEFAULT_TRAIN_MIX, some higher levels; held-out excluded."""
    extra = _extra_levels()
    n_extra = int(cfg.n_train * cfg.extra_level_share)
    problems = make_problems(mix=DEFAULT_TRAIN_MIX, n=cfg.n_train - n_extra, seed=cfg.seed)
    problems += make_problems(mix=extra, n=n_extra, seed=cfg.seed)
    random.Random(cfg.seed).shuffle(problems)
    return problems


def demonstration(problem: Problem, direct: bool) -> str:
    """The SFT target: the reference steps then ``#### answer``, or (direct) the answer line alone."""
    return f"#### {problem.answer}" if direct else problem.solution


def _encode_batch(tokenizer, problems: Sequence[Problem], direct: Sequence[bool] | None = None,
                  targets: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + demonstration + </s>`` ids, attention mask, and labels.

    The demonstrations are ``targets`` when given, else ``demonstration(problem, direct)``.
    Labels are -100 on the prompt and the padding: the loss is on completion
    tokens only (the policy is never taught to write problems).
    """
    if targets is None:
        targets = [demonstration(p, d) for p, d in zip(problems, direct or [False] * len(problems))]
    rows = []
    for p, target in zip(problems, targets):
        prompt = tokenizer.encode(p.prompt, add_special_tokens=False)
        completion = tokenizer.encode(target, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((prompt + completion, [-100] * len(prompt) + completion))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, lab) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    return ids, mask, labels


def train(model, tokenizer, problems: Sequence[Problem], cfg: BuildConfig) -> list[float]:
    """The two phases: the task formats (``cfg.steps``), then the habit (``cfg.habit_steps``)."""
    losses = sft(model, tokenizer, problems, cfg.steps, cfg.lr, cfg.warmup_steps, 0.0, cfg, desc="formats")
    if cfg.habit_steps:
        losses += sft(model, tokenizer, problems, cfg.habit_steps, cfg.habit_lr, cfg.habit_warmup_steps,
                      cfg.direct_share, cfg, desc="habit")
    return losses


def sft(model, tokenizer, problems: Sequence[Problem], steps: int, lr: float, warmup_steps: int,
        direct_share: float, cfg: BuildConfig, desc: str = "train",
        demonstrate: Callable[[Problem, random.Random], str] | None = None) -> list[float]:
    """AdamW with linear warmup and cosine decay over ``steps`` batches; returns losses.

    A ``direct_share`` of the demonstrations (drawn per example) is the answer line alone;
    ``demonstrate(problem, rng)``, when given, writes every demonstration instead, drawn anew
    each time a problem is drawn (the testbed policy's planted slips, ``acpo.testbed``).
    """
    torch.manual_seed(cfg.seed)
    order = random.Random(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, unit="step")
    for _ in bar:
        batch = order.sample(problems, cfg.batch_size)
        if demonstrate is not None:
            ids, mask, labels = _encode_batch(tokenizer, batch, targets=[demonstrate(p, order) for p in batch])
        else:
            direct = [order.random() < direct_share for _ in batch] if direct_share > 0 else None
            ids, mask, labels = _encode_batch(tokenizer, batch, direct)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return losses


# --- generation and evaluation ------------------------------------------------


@dataclass
class EvalResult:
    """Pass@1 overall and per (family, level), the share of well-formed completions, and
    the share that answer without working (the answer line first: the habit RL unlearns)."""

    pass_at_1: float
    by_pair: dict[str, float]
    well_formed: float
    n: int
    no_working: float = 0.0


def evaluate(model, tokenizer, problems: Sequence[Problem], *, temperature: float = 0.0, seed: int = 0) -> EvalResult:
    """Pass@1 of one completion per problem, judged by the family's checker.

    A completion passes when its final answer is right (the outcome reward);
    "well-formed" means it has an answer line and every line before it parses
    as a step (it may still be wrong).
    """
    completions = generate_texts(model, tokenizer, [p.prompt for p in problems], temperature=temperature, seed=seed)
    hits: dict[str, list[int]] = defaultdict(list)
    formed = direct = 0
    for problem, completion in zip(problems, completions):
        result = check(problem, completion)
        hits[f"{problem.family}-L{problem.level}"].append(int(result.answer_correct))
        formed += int(result.answer is not None and all(_parses(problem, s) for s in result.steps[:-1]))
        direct += int(result.answer is not None and not result.shows_working)
    total = [h for v in hits.values() for h in v]
    return EvalResult(
        pass_at_1=100 * sum(total) / len(total),
        by_pair={k: 100 * sum(v) / len(v) for k, v in sorted(hits.items())},
        well_formed=100 * formed / len(problems),
        n=len(problems),
        no_working=100 * direct / len(problems),
    )


_STEP_SHAPE = {
    "arith": re.compile(r"^-?\d+[-+*]\d+=-?\d+$"),
    "linear": re.compile(r"^[-+*x\d()]+=[-+*x\d()]+$"),
    "recurrence": re.compile(r"^\d+\*-?\d+[-+]\d+=-?\d+$"),
}


def _parses(problem: Problem, step: str) -> bool:
    return bool(_STEP_SHAPE[problem.family].match(step.replace(" ", "")))


# --- the model card -----------------------------------------------------------


def _table(greedy: EvalResult, sampled: EvalResult) -> str:
    rows = ["| family-level | greedy pass@1 (%) | T=1 pass@1 (%) |", "|---|---|---|"]
    for key in greedy.by_pair:
        rows.append(f"| {key} | {greedy.by_pair[key]:.0f} | {sampled.by_pair[key]:.0f} |")
    return "\n".join(rows)


def write_card(out: Path, cfg: BuildConfig, n_params: int, build_s: float, final_loss: float, results: dict) -> None:
    """Write ``README.md`` next to the weights: how it was made and how good it is."""
    size_mb = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
    default, extra = results["default"], results["extra"]
    head = results["head"]
    card = f"""---
library_name: transformers
tags: [acpo, rlvr, demo, tiny, character-level]
---
# acpo demo policy

A {n_params / 1e6:.2f}M-parameter character-level `LlamaForCausalLM`, trained from scratch
by `acpo/demo_policy.py` on the project's synthetic tasks (`acpo.tasks`:
`arith`, `linear`, `recurrence`). It is the default model of the app, the tests
and quick RL runs; it is deliberately imperfect so RL has something to fix.
Besides the arithmetic slips it makes when it works step by step, it has a habit:
a short second fine-tune taught it to skip the working and give only the answer
line on {100 * cfg.direct_share:.0f}% of samples, and it gets most of those answers wrong.
RL with the task's verifiable reward unlearns the habit in a few CPU minutes
(`python train.py`), and that carries over to new problems.

- greedy pass@1 on heldout_problems({head.n}): **{head.pass_at_1:.1f}%**
  (sampled at T=1: {results['head_sampled'].pass_at_1:.1f}%)
- greedy pass@1 on DEFAULT_TRAIN_MIX, {default['greedy'].n} held-out problems: {default['greedy'].pass_at_1:.1f}%;
  sampled at T=1 (seed {cfg.seed}): {default['sampled'].pass_at_1:.1f}%;
  well-formed completions: {default['greedy'].well_formed:.0f}% greedy, {default['sampled'].well_formed:.0f}% at T=1;
  answers without working: {default['greedy'].no_working:.0f}% greedy, {default['sampled'].no_working:.0f}% at T=1

## How it was made

```
python -m acpo.demo_policy build --out assets/demo-policy --seed {cfg.seed} --steps {cfg.steps}
```

Build time {build_s / 60:.1f} min on {cfg.threads} CPU threads; final training loss {final_loss:.3f};
{size_mb:.1f} MB on disk (safetensors + tokenizer).

- Architecture: Llama, hidden {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} heads,
  MLP {cfg.intermediate_size}, tied embeddings, vocabulary of {results['vocab']} tokens (one per
  printable ASCII character and `\\n`, plus `<pad> <s> </s> <unk>`).
- Data: {cfg.n_train} problems from `acpo.tasks.make_problems` (seed {cfg.seed}),
  {100 * (1 - cfg.extra_level_share):.0f}% from `DEFAULT_TRAIN_MIX` and {100 * cfg.extra_level_share:.0f}% from the higher
  levels; prompts of the held-out pool are excluded. Text: `Q: <problem>\\n` then the
  reference steps, one per line, then `#### <answer></s>`; loss on completion tokens only.
- The habit, a second phase of {cfg.habit_steps} steps on the same problems: each time a problem is
  drawn, with probability {cfg.direct_share} the target is the answer line alone
  (`#### <answer></s>`), independently of the problem, so the policy cannot tie the habit to
  particular problems.
- Optimiser: AdamW, lr {cfg.lr}, {cfg.warmup_steps} warmup steps then cosine decay,
  batch {cfg.batch_size}, {cfg.steps} steps, weight decay {cfg.weight_decay}; the habit phase
  restarts AdamW at lr {cfg.habit_lr} ({cfg.habit_warmup_steps} warmup steps, cosine decay).
- Full build config: `build_config.json` in this folder.

## Measured pass@1 on held-out problems

`heldout_problems(...)` from `acpo.tasks`, {default['greedy'].n // len(default['greedy'].by_pair)} per family-level for the
training mix, {extra['greedy'].n // max(1, len(extra['greedy'].by_pair))} per family-level for the higher levels (which the
curriculum unlocks). Greedy decoding, and one sample at temperature 1 (no top-k/top-p).
Reproduce with `python -m acpo.demo_policy eval`.

Training mix (`DEFAULT_TRAIN_MIX`):

{_table(default['greedy'], default['sampled'])}

Higher levels:

{_table(extra['greedy'], extra['sampled'])}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("assets/demo-policy")
tok = AutoTokenizer.from_pretrained("assets/demo-policy")
ids = tok("Q: 7-3*4+2=?\\n", return_tensors="pt", add_special_tokens=False)
print(tok.decode(model.generate(**ids, max_new_tokens=64, do_sample=False)[0]))
```

The tokenizer adds no special tokens on encode (character offsets map one to one);
completions end with `</s>`; padding is on the left.

## Limits

A toy: it only knows the three task formats above and fails in two characteristic ways:
an answer line with no working before it, or a wrong intermediate result (usually in a
multiplication or a multi-digit step).
Not for any use beyond demonstrating and testing credit assignment.
"""
    (out / "README.md").write_text(card)


def measure(model, tokenizer, seed: int) -> dict:
    """All the card's numbers (the same function backs ``eval`` and the tests)."""
    extra_mix = _extra_levels()
    default_set = heldout_problems(600)
    extra_set = heldout_problems(50 * len(extra_mix), extra_mix)
    head = heldout_problems(100)
    return {
        "vocab": len(tokenizer),
        "head": evaluate(model, tokenizer, head),
        "head_sampled": evaluate(model, tokenizer, head, temperature=1.0, seed=seed),
        "default": {
            "greedy": evaluate(model, tokenizer, default_set),
            "sampled": evaluate(model, tokenizer, default_set, temperature=1.0, seed=seed),
        },
        "extra": {
            "greedy": evaluate(model, tokenizer, extra_set),
            "sampled": evaluate(model, tokenizer, extra_set, temperature=1.0, seed=seed),
        },
    }


def card_pass_at_1(path: str | Path = DEFAULT_PATH, pattern: re.Pattern = CARD_FIGURE_RE) -> tuple[int, float]:
    """``(n, figure)``: the headline figure parsed from a model card (here the greedy percent)."""
    match = pattern.search((Path(path) / "README.md").read_text())
    if not match:
        raise ValueError(f"model card in '{path}' has no line matching {pattern.pattern!r}")
    return int(match[1]), float(match[2])


# --- commands -----------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> None:
    cfg = BuildConfig(
        seed=args.seed, steps=args.steps, hidden_size=args.hidden, num_layers=args.layers, threads=args.threads,
        habit_steps=args.habit_steps, direct_share=args.direct_share,
    )
    torch.set_num_threads(cfg.threads)
    start = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters; vocab {len(tokenizer)}")
    losses = train(model, tokenizer, training_problems(cfg), cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "build_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    results = measure(model, tokenizer, cfg.seed)
    build_s = time.time() - start
    final_loss = sum(losses[-50:]) / len(losses[-50:])
    write_card(out, cfg, n_params, build_s, final_loss, results)
    _print_results(results)
    print(f"built {out} in {build_s / 60:.1f} min")


def cmd_eval(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_demo_policy(args.path)
    _print_results(measure(model, tokenizer, args.seed))
    if (Path(args.path) / "README.md").exists():  # a trainer checkpoint has no card
        n, figure = card_pass_at_1(args.path)
        print(f"card says: greedy pass@1 on heldout_problems({n}) = {figure:.1f}%")


def _print_results(results: dict) -> None:
    print(f"greedy pass@1 on heldout_problems({results['head'].n}): {results['head'].pass_at_1:.1f}%")
    for name in ("default", "extra"):
        g, s = results[name]["greedy"], results[name]["sampled"]
        print(f"[{name}] greedy {g.pass_at_1:.1f}% (well-formed {g.well_formed:.0f}%, no working "
              f"{g.no_working:.0f}%), T=1 {s.pass_at_1:.1f}% (well-formed {s.well_formed:.0f}%, no working "
              f"{s.no_working:.0f}%)")
        for key in g.by_pair:
            print(f"  {key:14s} greedy {g.by_pair[key]:5.1f}   T=1 {s.by_pair[key]:5.1f}")


def sample_traces(model, tokenizer, n: int, seed: int) -> list[dict]:
    """``n`` checked T=1 completions on held-out problems, deterministic for ``seed``.

    Half the rows are correct and half failed where the draw allows it, so
    the app's demo shows both.
    """
    problems = heldout_problems(min(600, 4 * n))
    completions = generate_texts(model, tokenizer, [p.prompt for p in problems], temperature=1.0, seed=seed)
    rows = {True: [], False: []}
    for problem, completion in zip(problems, completions):
        result = check(problem, completion)
        rows[result.answer_correct].append({
            "problem_id": problem.id,
            "family": problem.family,
            "level": problem.level,
            "prompt": problem.prompt,
            "completion": completion,
            "answer": problem.answer,
            "predicted": result.answer,
            "reward": float(result.answer_correct),
            "first_error": result.first_error,
            "steps": result.steps,
            "step_char_spans": [list(s) for s in result.step_char_spans],
        })
    n_wrong = min(len(rows[False]), n // 2)
    picked = rows[False][:n_wrong] + rows[True][: n - n_wrong]
    return sorted(picked, key=lambda r: r["problem_id"])


def cmd_samples(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_demo_policy(args.path)
    rows = sample_traces(model, tokenizer, args.n, args.seed)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} traces ({sum(r['reward'] == 1 for r in rows)} correct) to {args.out}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m acpo.demo_policy",
        description="Build, evaluate and sample the bundled demo policy (a tiny character-level Llama).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = BuildConfig()
    build = sub.add_parser("build", help="train from scratch, save weights + tokenizer + model card")
    build.add_argument("--out", default=str(DEFAULT_PATH), help="output folder (default: %(default)s)")
    build.add_argument("--seed", type=int, default=defaults.seed, help="seed for data, init and batches")
    build.add_argument("--steps", type=int, default=defaults.steps, help="training steps (default: %(default)s)")
    build.add_argument("--hidden", type=int, default=defaults.hidden_size, help="hidden size")
    build.add_argument("--layers", type=int, default=defaults.num_layers, help="number of layers")
    build.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    build.add_argument("--habit-steps", type=int, default=defaults.habit_steps,
                       help="steps of the second phase that teaches answering without working; 0: no habit "
                            "(default: %(default)s)")
    build.add_argument("--direct-share", type=float, default=defaults.direct_share,
                       help="share of the habit phase's demonstrations that are the answer line alone "
                            "(default: %(default)s)")
    build.set_defaults(func=cmd_build)
    ev = sub.add_parser("eval", help="measure the model card's pass@1 numbers on the fixed held-out problems")
    ev.add_argument("--path", default=str(DEFAULT_PATH),
                    help="demo policy folder, or a train.py checkpoint of it (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed for the T=1 numbers (the card's build seed)")
    ev.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ev.set_defaults(func=cmd_eval)
    sm = sub.add_parser("samples", help="write checked sample completions for the app's demo")
    sm.add_argument("--path", default=str(DEFAULT_PATH), help="demo policy folder (default: %(default)s)")
    sm.add_argument("--out", default=str(DEFAULT_SAMPLES_PATH), help="output JSONL (default: %(default)s)")
    sm.add_argument("--n", type=int, default=32, help="number of traces (default: %(default)s)")
    sm.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    sm.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    sm.set_defaults(func=cmd_samples)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
