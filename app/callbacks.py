"""The app's callbacks: every button's work, as methods of ``Explorer``.

Each callback takes the widgets' values and returns the outputs' values; every
number comes from ``acpo`` (``explain``, ``explain_batch``, ``Trace.to_frame``,
the task checkers). Bad input raises ``InputError``, which ``ui_errors`` turns
into a message in the page.
"""

from __future__ import annotations

import functools
import tempfile
import traceback
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

import acpo
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.data import load_problems
from acpo.models import DEMO_POLICY, ModelLoadError
from acpo.render import message_html, step_heatmap_html, trace_html
from acpo.rewards import hash_answer_reward
from acpo.rollout import generate_texts
from acpo.tasks import TASKS, Problem, extract_final_answer, first_error_step
from acpo.tokens import context_length
from app import views
from app.loaders import (
    DEFAULT_SAMPLES,
    MAX_FILE_MB,
    InputError,
    PathGuard,
    check_size,
    display_path,
    find_checkpoints,
    find_runs,
    open_run,
    read_rollouts,
    read_run_traces,
    read_samples,
    sample_label,
)
from app.models import ModelCache

# mc_reset needs continuations sampled by the trainer's rollout engine; the app cannot score it alone.
UI_METHODS = [m for m in ("acpo", "hapo", "entropy_mask", "uniform") if m in acpo.CREDIT_METHODS]
SEGMENTATIONS = ["hybrid", "lines", "markers", "entropy", "fixed-8", "fixed-16"]
# Comparing checkpoints step by step needs the same steps under each: segmentations that do not use entropy.
COMPARE_SEGMENTATIONS = ["lines", "markers", "fixed-8", "fixed-16"]
VIEWS = ["steps: credit", "tokens: entropy", "tokens: advantage"]
NO_CHECKER = "none"
MAX_BATCH_ROWS = 2000
BATCH_CHUNK = 16


# --- helpers ---------------------------------------------------------------------------


def ui_errors(fn):
    """Turn bad input into a gr.Error with its message; anything unexpected too, so the app stays up."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (InputError, ModelLoadError, ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err), title="Input problem") from err
        except torch.OutOfMemoryError as err:
            raise gr.Error("out of memory: try a shorter completion, fewer rows or a smaller model") from err
        except Exception as err:
            traceback.print_exc()
            raise gr.Error(f"unexpected error ({type(err).__name__}): {err}") from err

    return wrapper


def parse_reward(text) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"reward {text!r} is not a number; leave it empty or type e.g. 1 or 0") from None


def write_csv(frame: pd.DataFrame, stem: str) -> str:
    """Write a table for download (a fresh temp folder per file, so names never collide)."""
    folder = Path(tempfile.mkdtemp(prefix="acpo-app-"))
    path = folder / f"{stem}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def check_problem(checker: str, prompt: str, answer: str | None, completion: str):
    """The task checker's verdict, or None when no checker applies (or the prompt is not the family's)."""
    if not checker or checker == NO_CHECKER:
        return None
    task = TASKS.get(checker)
    if task is None:
        raise InputError(f"unknown checker {checker!r}; valid: {NO_CHECKER}, {', '.join(TASKS)}")
    try:
        return task.check(Problem("typed", checker, task.levels[0], prompt, answer or ""), completion)
    except ValueError as err:
        gr.Warning(f"the {checker} checker cannot read this problem ({err}); no ground truth shown")
        return None


def verdict_markdown(trace, method: str, check, error_step: int | None) -> str:
    col = f"credit_{method}"
    credits = [float(c) for c in trace.credits[method]]
    parts = [f"**reward** {trace.reward if trace.reward is not None else 'unknown'}", f"**steps** {len(trace.steps)}"]
    if trace.answer is not None:
        parts.append(f"**target answer** `{trace.answer}`")
    lowest = trace.lowest_credit_step(method) if any(credits) else None
    if lowest is not None:
        parts.append(f"**lowest {col}**: step {lowest}")
    line = " · ".join(parts)
    if check is None:
        return line
    if check.first_error is None:
        return line + "  \n✓ checker: every step and the answer are right"
    if check.first_error >= len(check.step_char_spans):
        return line + f"  \n✗ checker: the steps are right but the answer line is missing (step {error_step} marked)"
    found = "the lowest credit **found it** ✓" if lowest == error_step else f"the lowest credit is at step {lowest}"
    return line + f"  \n✗ checker: first wrong step is **step {error_step}** (dashed outline); {found}"


def render_trace(state: dict | None, view: str) -> str:
    """The heatmap of the explained trace in ``state`` for one of ``VIEWS`` (the core's renderer)."""
    if not state:
        return message_html("Explain a completion to see its steps here.")
    kind = {"tokens: entropy": "entropy", "tokens: advantage": "advantage"}.get(view, "steps")
    return trace_html(state["trace"], state["method"], kind, state.get("first_error_step"))


# --- the app -----------------------------------------------------------------------------


class Explorer:
    """The callbacks; holds the model cache, the path guard and the bundled samples."""

    def __init__(self, roots, default_model: str = DEMO_POLICY, samples_path: Path = DEFAULT_SAMPLES,
                 max_file_mb: float = MAX_FILE_MB):
        self.guard = PathGuard(roots)
        self.models = ModelCache(self.guard, default_model)
        self.default_model = default_model
        self.samples = read_samples(samples_path)
        self.max_file_mb = max_file_mb

    # -- choices --

    def model_choices(self) -> list[str]:
        out = [display_path(Path(self.default_model))] if Path(self.default_model).exists() else [self.default_model]
        out += [display_path(p) for p in find_checkpoints(find_runs(self.guard.roots))]
        return list(dict.fromkeys(out))

    def run_choices(self) -> list[str]:
        return [display_path(p) for p in find_runs(self.guard.roots)]

    def sample_choices(self) -> list[str]:
        return [sample_label(r) for r in self.samples]

    # -- Explore --

    @ui_errors
    def load_sample(self, label: str):
        """Fill the problem fields from a bundled sample trace."""
        row = next((r for r in self.samples if sample_label(r) == label), None)
        if row is None:
            raise InputError(f"no sample trace called {label!r}")
        checker = row.get("family") if row.get("family") in TASKS else NO_CHECKER
        reward = "" if row.get("reward") is None else str(row["reward"])
        return row["prompt"], row["completion"], str(row.get("answer") or ""), reward, checker

    @ui_errors
    def new_problem(self, family: str, level, seed):
        """A fresh synthetic problem (prompt, answer, checker); the completion is cleared."""
        task = TASKS.get(family)
        if task is None:
            raise InputError(f"unknown task family {family!r}; valid: {', '.join(TASKS)}")
        problem = task.generate(1, int(level), int(seed))[0]
        return problem.prompt, "", problem.answer, "", family

    @ui_errors
    def load_dataset_problem(self, upload, path_text: str, row):
        """Problem ``row`` of a GSM8K/MATH-style file (uploaded, or a path inside the allowed folders)."""
        path = Path(upload) if upload else self.guard.resolve(path_text or "", "dataset file")
        check_size(path, self.max_file_mb)
        try:
            problems = load_problems(path)
        except UnicodeDecodeError as err:
            raise InputError(f"'{path.name}' is not UTF-8 text; save it as UTF-8") from err
        index = int(row or 0)
        if not 0 <= index < len(problems):
            raise InputError(f"row {index} is out of range; '{path.name}' has {len(problems)} usable problems")
        p = problems[index]
        return p.prompt, "", p.answer, "", NO_CHECKER

    @ui_errors
    def sample(self, model_name, trust_remote_code, prompt, temperature, seed, max_new_tokens):
        """Sample a completion of ``prompt`` from the model (greedy at temperature 0)."""
        if not prompt or not prompt.strip():
            raise InputError("the prompt is empty; pick a problem or type one")
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        limit = context_length(model)
        n_prompt = len(tokenizer(prompt)["input_ids"])
        budget = int(max_new_tokens)
        if limit is not None:
            if n_prompt >= limit:
                raise InputError(f"the prompt ({n_prompt} tokens) fills the model's context of {limit} tokens")
            budget = min(budget, limit - n_prompt)
        return generate_texts(model, tokenizer, [prompt], temperature=float(temperature), seed=int(seed),
                              max_new_tokens=budget)[0]

    def explain_trace(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                      segmentation, probe):
        """The core call behind the Explore tab: (trace state, step table)."""
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one or press Sample")
        if method not in acpo.CREDIT_METHODS:
            raise InputError(f"unknown credit method {method!r}; valid: {', '.join(UI_METHODS)}")
        answer = (answer or "").strip() or None
        reward_value = parse_reward(reward)
        check = check_problem(checker, prompt or "", answer, completion)
        if reward_value is None and check is not None:
            reward_value = float(check.answer_correct)
        elif reward_value is None and answer is not None:
            reward_value = hash_answer_reward([prompt], [completion], answer=[answer])[0]
        methods = [method]
        if method != "acpo" and (answer or extract_final_answer(completion)):
            methods.append("acpo")  # information gain beside the chosen method, when there is an answer to probe
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        trace = acpo.explain(model, tokenizer, prompt or "", completion, method=methods, segmentation=segmentation,
                             answer=answer, reward=reward_value, probe=probe or DEFAULT_PROBE)
        state = {"trace": trace, "method": method, "first_error_step": first_error_step(check, trace.steps), "check": check}
        return state, views.step_table(trace.to_frame(), method)

    @ui_errors
    def explain(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                segmentation, probe, view):
        """Explain one completion: heatmap, verdict, entropy trace, step table, CSV of the table."""
        state, table = self.explain_trace(model_name, trust_remote_code, prompt, completion, answer, reward, checker,
                                          method, segmentation, probe)
        trace = state["trace"]
        fig = views.entropy_figure(trace.entropies.tolist(), trace.tokens, trace.to_frame(), f"credit_{method}")
        verdict = verdict_markdown(trace, method, state["check"], state["first_error_step"])
        csv = write_csv(table, f"acpo-steps-{method}-{segmentation}")
        return render_trace(state, view), verdict, fig, views.display_table(table), csv, state

    @ui_errors
    def render_view(self, state, view):
        return render_trace(state, view)

    # -- Compare --

    @ui_errors
    def compare(self, model_names, trust_remote_code, prompt, completion, answer, method, segmentation, probe):
        """The same completion scored under each checkpoint: heatmaps, per-step chart, table, CSV."""
        names = [n for n in (model_names or []) if n and n.strip()]
        if len(names) < 2:
            raise InputError("pick at least two checkpoints to compare")
        if segmentation not in COMPARE_SEGMENTATIONS:
            raise InputError(
                f"segmentation {segmentation!r} depends on each model's entropy, so steps would differ between "
                f"checkpoints; use one of {', '.join(COMPARE_SEGMENTATIONS)}"
            )
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one (or copy it from the Explore tab)")
        answer = (answer or "").strip() or None
        reward = hash_answer_reward([prompt], [completion], answer=[answer])[0] if answer else None
        frames, traces = {}, {}
        for name in names:
            label = name if name not in frames else f"{name} ({len(frames)})"
            model, tokenizer = self.models.get(name, trust_remote_code)
            trace = acpo.explain(model, tokenizer, prompt or "", completion, method=method,
                                 segmentation=segmentation, answer=answer, reward=reward, probe=probe or DEFAULT_PROBE)
            trace.meta["checkpoint"] = name
            traces[label], frames[label] = trace, trace.to_frame()
        col = f"credit_{method}"
        cells = "".join(
            f"<div>{step_heatmap_html(f, col, title=label)}</div>" for label, f in frames.items()
        )
        grid = (f'<div style="display:grid; grid-template-columns: repeat({min(len(frames), 3)}, minmax(0, 1fr)); '
                f'gap:12px;">{cells}</div>')
        full = pd.concat([views.step_table(f, method) for f in frames.values()], ignore_index=True)
        return (grid, views.compare_figure(frames, col), views.display_table(views.compare_table(frames, col)),
                write_csv(full, f"acpo-compare-{method}"))

    # -- Runs --

    @ui_errors
    def open_run(self, run_path):
        """A run folder's curves, config, checkpoints and saved trace steps."""
        run = open_run(self.guard.resolve(run_path or "", "run folder"))
        m = run.metrics
        n_steps = m["step"].nunique() if "step" in m else 0
        facts = [f"**{run.path.name}**", f"{n_steps} logged steps", f"{len(run.checkpoints)} checkpoints",
                 f"traces at steps {run.trace_steps}" if run.trace_steps else "no traces saved"]
        for key in ("reward", "eval/pass@1", "entropy", "kl"):
            logged = m[key].dropna() if key in m.columns else []
            if len(logged):
                facts.append(f"last {key} {float(logged.iloc[-1]):.3f}")
        switch = views.stage_switch_step(m)
        if switch is not None:
            facts.append(f"stage 2 from step {switch}")
        hapo = views.hapo_figure(m)
        steps = [str(s) for s in run.trace_steps]
        return (
            " · ".join(facts),
            views.run_figure(m, f"Run {run.path.name}"),
            gr.update(value=hapo, visible=hapo is not None),
            run.config_text or "# no config.yaml",
            gr.update(choices=steps, value=steps[-1] if steps else None),
            [display_path(p) for p in run.checkpoints],
        )

    def _run_traces(self, run_path, step):
        if step in (None, ""):
            raise InputError("this run has no saved traces to browse; pick a step after opening a run")
        run = open_run(self.guard.resolve(run_path or "", "run folder"))
        return read_run_traces(run, int(step))

    @ui_errors
    def run_traces(self, run_path, step):
        """The completions of one saved traces file: a summary row each, and the credit columns."""
        traces = self._run_traces(run_path, step)
        credit_cols = [c for c in traces.columns if c.startswith("credit_")]
        preferred = next((c for c in credit_cols if "method" in traces and c == f"credit_{traces['method'].iloc[0]}"),
                         credit_cols[0] if credit_cols else None)
        summary = views.run_traces_summary(traces, preferred)
        keys = [f"{r.prompt_id} / {r.completion_id}" for r in summary.itertuples()] if "prompt_id" in summary else []
        return (views.display_table(summary), gr.update(choices=credit_cols, value=preferred),
                gr.update(choices=keys, value=keys[0] if keys else None))

    @ui_errors
    def run_trace_view(self, run_path, step, key, credit_column):
        """The heatmap of one saved completion (its rows of the traces file)."""
        traces = self._run_traces(run_path, step)
        if not key:
            raise InputError("pick a completion (prompt_id / completion_id)")
        prompt_id, _, completion_id = str(key).partition(" / ")
        rows = traces[(traces["prompt_id"].astype(str) == prompt_id)
                      & (traces["completion_id"].astype(str) == completion_id)]
        if rows.empty:
            raise InputError(f"no completion {key!r} in the traces of step {step}")
        err = rows["first_error_step"].iloc[0] if "first_error_step" in rows else -1
        prompt = rows["prompt"].iloc[0] if "prompt" in rows else None
        return step_heatmap_html(rows, credit_column, prompt, None if err is None or int(err) < 0 else int(err))

    # -- Batch --

    @ui_errors
    def batch(self, upload, path_text, model_name, trust_remote_code, methods, segmentation, probe, max_rows,
              progress=gr.Progress()):
        """Explain every completion of a rollout file; credit distribution and the whole credit table."""
        if upload:
            path, name = Path(upload), Path(upload).name
        else:
            path = self.guard.resolve(path_text or "", "rollout file")
            name = path.name
        methods = [m for m in (methods or []) if m]
        if not methods:
            raise InputError("pick at least one credit method")
        rollouts, layout = read_rollouts(path, name, self.max_file_mb)
        limit = min(int(max_rows or MAX_BATCH_ROWS), MAX_BATCH_ROWS)
        dropped = max(0, len(rollouts) - limit)
        rollouts = rollouts.iloc[:limit]
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        rewards = None if rollouts["reward"].isna().any() else rollouts["reward"].tolist()
        answers = rollouts["answer"].tolist() if "answer" in rollouts and rollouts["answer"].notna().any() else None
        frames, total = [], len(rollouts)
        progress(0, desc=f"explaining {total} completions")
        for start in range(0, total, BATCH_CHUNK):
            part = slice(start, start + BATCH_CHUNK)
            chunk = rollouts.iloc[part]
            meta = [{"prompt_id": r.prompt_id, "completion_id": r.completion_id, "checkpoint": str(model_name or "")}
                    for r in chunk.itertuples()]
            try:
                traces = acpo.explain_batch(
                    model, tokenizer, chunk["prompt"].tolist(), chunk["completion"].tolist(), method=methods,
                    segmentation=segmentation, answers=None if answers is None else answers[part],
                    rewards=None if rewards is None else rewards[part],
                    probe=probe or DEFAULT_PROBE, meta=meta,
                )
            except ValueError as err:
                raise InputError(f"rows {start}..{start + len(chunk) - 1} of '{name}': {err}") from err
            frames += [t.to_frame() for t in traces]
            done = min(total, start + BATCH_CHUNK)
            progress(done / total, desc=f"explained {done}/{total}")
        table = views.step_table(pd.concat(frames, ignore_index=True), methods[0])
        col = f"credit_{methods[0]}"
        note = f" (first {limit} of {limit + dropped} rows)" if dropped else ""
        summary = (f"**{total} completions**{note} · {len(table)} steps · layout `{layout}` · "
                   f"mean {col} {table[col].mean():+.4f} (std {table[col].std():.4f})")
        if rewards is None:
            summary += "  \nrewards unknown for some rows: token advantages and HAPO credits are 0 there"
        return (summary, views.credit_histogram(table, col), views.display_table(table.head(200)),
                write_csv(table, "acpo-credit-table"))
