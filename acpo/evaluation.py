"""What a run writes about its held-out problems at each evaluation: explained greedy completions (traces).

``traces/step-N.parquet`` holds, for each problem, its completion's steps with
the run's credit and ACPO's beside it, and the first wrong step where the
task's checker can name one: what the app's Runs tab reads.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from acpo.explain import explain_batch
from acpo.runs import TRACES, write_atomic
from acpo.tasks import TASKS, Problem, first_error_step, get_task
from acpo.tokens import encode_prompt


def write_traces(run_dir: Path, step: int, engine, policy, tokenizer, problems: list[Problem], prompts: list[str],
                 rewards, **explain) -> None:
    """traces/step-N.parquet: the greedy completion of each problem (``prompts``: rendered), explained.

    ``rewards(problems, texts)`` gives the completions' rewards; ``explain``: ``trace_frame``'s keywords.
    Empty completions are left out.
    """
    samples = engine.generate([encode_prompt(tokenizer, x, explain["chat_template"]) for x in prompts], n=1,
                              greedy=True)
    keep = [(p, x, s.text) for p, x, s in zip(problems, prompts, samples) if s.text.strip()]
    if not keep:
        return
    problems, prompts, texts = (list(column) for column in zip(*keep))
    frame = trace_frame(policy, tokenizer, problems, prompts, texts, rewards(problems, texts).tolist(),
                        run=Path(run_dir).name, step=step, **explain)
    write_atomic(Path(run_dir) / TRACES / f"step-{step}.parquet", lambda tmp: frame.to_parquet(tmp, index=False),
                 f"traces of step {step}")


def trace_frame(policy, tokenizer, problems: list[Problem], prompts: list[str], completions: list[str],
                rewards: list[float], *, credits: list[str], segmentation: str, segment_config, probe: str,
                chat_template: bool, run: str, step: int, recipe: str) -> pd.DataFrame:
    """One row per step of each (problem, rendered prompt, completion), credits as ``credit_<name>`` columns."""
    traces = explain_batch(
        policy, tokenizer, prompts, completions, method=credits, segmentation=segmentation,
        answers=[p.answer for p in problems], rewards=rewards, group_ids=list(range(len(problems))), probe=probe,
        segment_config=segment_config, chat_template=chat_template,
        meta=[{"run": run, "checkpoint": f"step-{step}", "prompt_id": p.id, "completion_id": f"{p.id}/greedy"}
              for p in problems],
    )
    frames = []
    for p, tr in zip(problems, traces):
        df = tr.to_frame()
        first = first_error_step(get_task(p.family).check(p, tr.completion), tr.steps) if p.family in TASKS else None
        df["prompt"], df["completion"], df["answer"] = tr.prompt, tr.completion, p.answer
        df["first_error_step"] = -1 if first is None else first
        df["method"] = recipe  # the run's recipe; the column keeps the name the app reads
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def heldout_counts(engine, prompt_ids: list[list[int]], problems: list[Problem], rewards, seed: int) -> dict:
    """How many held-out problems the greedy and the sampled completion solve (``rewards.correct``), and of how many.

    The sampled completion (one per problem at the engine's temperature) is
    drawn from torch's generator seeded with ``seed`` and the generator's state is
    put back after, so the training stream does not depend on how often a run evaluates.
    """
    greedy = engine.generate(prompt_ids, n=1, greedy=True)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    sampled = engine.generate(prompt_ids, n=1)
    torch.set_rng_state(state)
    return {"greedy": rewards.correct(problems, [s.text for s in greedy]),
            "sampled": rewards.correct(problems, [s.text for s in sampled]), "n": float(len(problems))}
