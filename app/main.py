"""The acpo explorer: which reasoning steps earned or lost the reward.

    python app/main.py                      # http://127.0.0.1:7860
    python app/main.py --host 0.0.0.0 --port 7861 --allow /data/runs
    python app/main.py --share

Four tabs (Explore a trace, Compare checkpoints, Runs, Batch and export); every
button is also a named API endpoint (``gradio_client``). Every number shown
comes from ``acpo`` (``explain``, ``explain_batch``, ``Trace.to_frame``, the task
checkers); the views are in ``app/views.py``, file and path handling in
``app/loaders.py``, and this file holds the callbacks and the layout.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python app/main.py` finds acpo and app

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import acpo  # noqa: E402
from acpo.credit.info_gain import DEFAULT_PROBE  # noqa: E402
from acpo.data import load_problems  # noqa: E402
from acpo.models import DEMO_POLICY, ModelLoadError, load_policy  # noqa: E402
from acpo.rewards import hash_answer_reward  # noqa: E402
from acpo.rollout import generate_texts  # noqa: E402
from acpo.tasks import TASKS, Problem, extract_final_answer, first_error_step  # noqa: E402
from acpo.tokens import context_length  # noqa: E402
from app import views  # noqa: E402
from app.loaders import (  # noqa: E402
    ASSETS,
    DEFAULT_SAMPLES,
    MAX_FILE_MB,
    REPO_ROOT,
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

# mc_reset needs continuations sampled by the trainer's rollout engine; the app cannot score it alone.
UI_METHODS = [m for m in ("acpo", "hapo", "entropy_mask", "uniform") if m in acpo.CREDIT_METHODS]
SEGMENTATIONS = ["hybrid", "lines", "markers", "entropy", "fixed-8", "fixed-16"]
# Comparing checkpoints step by step needs the same steps under each: segmentations that do not use entropy.
COMPARE_SEGMENTATIONS = ["lines", "markers", "fixed-8", "fixed-16"]
VIEWS = ["steps: credit", "tokens: entropy", "tokens: advantage"]
NO_CHECKER = "none"
MAX_BATCH_ROWS = 2000
BATCH_CHUNK = 16


# --- models -------------------------------------------------------------------------


class ModelCache:
    """The last few loaded policies, by (name, trust_remote_code); local paths go through the guard.

    A model's own code (``trust_remote_code``) runs only where the server was
    started with ``--allow-remote-code``: the caller of an endpoint cannot turn it on.
    """

    def __init__(self, guard: PathGuard, default: str = DEMO_POLICY, capacity: int = 3,
                 allow_remote_code: bool = False):
        self.guard, self.default, self.capacity = guard, default, capacity
        self.allow_remote_code = allow_remote_code
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | None, trust_remote_code: bool = False):
        if trust_remote_code and not self.allow_remote_code:
            raise InputError("this server does not run a model's own code (trust_remote_code); its operator can "
                             "allow it by starting the app with --allow-remote-code")
        name = (name or "").strip() or self.default
        source = self.guard.model_source(name)
        key = (source, bool(trust_remote_code))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            try:
                model, tokenizer = load_policy(source, trust_remote_code=bool(trust_remote_code))
            except ModelLoadError as err:
                raise InputError(str(err)) from err
            except Exception as err:  # a broken checkpoint can raise anything
                raise InputError(f"could not load model '{name}': {type(err).__name__}: {err}") from err
            model.eval()
            self._models[key] = (model, tokenizer)
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model, tokenizer


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
    """The heatmap of the explained trace in ``state`` for one of ``VIEWS``."""
    if not state:
        return views.message_html("Explain a completion to see its steps here.")
    trace, method = state["trace"], state["method"]
    if view == "tokens: entropy":
        return views.token_heatmap_html(trace.tokens, trace.entropies.tolist(), "entropy",
                                        [s.token_start for s in trace.steps], trace.prompt)
    if view == "tokens: advantage":
        return views.token_heatmap_html(trace.tokens, trace.token_advantages[method].tolist(), "advantage",
                                        [s.token_start for s in trace.steps], trace.prompt)
    return views.step_heatmap_html(trace.to_frame(), f"credit_{method}", trace.prompt, state.get("first_error_step"))


# --- the app -----------------------------------------------------------------------------


class Explorer:
    """The callbacks; holds the model cache, the path guard and the bundled samples."""

    def __init__(self, roots, default_model: str = DEMO_POLICY, samples_path: Path = DEFAULT_SAMPLES,
                 max_file_mb: float = MAX_FILE_MB, allow_remote_code: bool = False):
        self.guard = PathGuard(roots)
        self.allow_remote_code = allow_remote_code
        self.models = ModelCache(self.guard, default_model, allow_remote_code=allow_remote_code)
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
            f"<div>{views.step_heatmap_html(f, col, title=label)}</div>" for label, f in frames.items()
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
        run = open_run(self.guard.resolve(run_path or "", "run folder"), self.guard)
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
        run = open_run(self.guard.resolve(run_path or "", "run folder"), self.guard)
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
        return views.step_heatmap_html(rows, credit_column, prompt, None if err is None or int(err) < 0 else int(err))

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


# --- layout --------------------------------------------------------------------------------

CSS = """
.acpo-heatmap span[title] { cursor: help; }
#acpo-header { margin-bottom: 0; }
"""

INTRO = """# acpo explorer
Which reasoning steps earned or lost the reward. Steps are coloured by credit
(<span style="color:#2166ac">blue: raised the reward</span>, <span style="color:#b2182b">red: blame</span>;
scaled to [-1, 1] per trace); hover a step for its numbers. Every number comes from `acpo.explain`;
the methods are described in `docs/METHODS.md`."""


def build_app(explorer: Explorer | None = None, initial: bool = True) -> gr.Blocks:
    """The gr.Blocks app. ``initial`` explains one bundled sample at build time, so the first screen is useful."""
    ex = explorer or Explorer([ASSETS, REPO_ROOT / "runs"])
    model_choices = ex.model_choices()
    samples = ex.sample_choices()
    first = _initial_view(ex, samples) if initial else None

    with gr.Blocks(title="acpo explorer", analytics_enabled=False) as demo:
        gr.Markdown(INTRO, elem_id="acpo-header")
        with gr.Tab("Explore a trace"):
            with gr.Row():
                with gr.Column(scale=2, min_width=340):
                    model = gr.Dropdown(model_choices, value=model_choices[0], allow_custom_value=True,
                                        label="Model", info="a checkpoint folder, LoRA adapter folder or hub id")
                    trust = gr.Checkbox(False, label="Allow the model's own code (trust_remote_code)",
                                        info="runs Python from the model's repository; only for sources you trust",
                                        visible=ex.allow_remote_code)
                    sample_pick = gr.Dropdown(samples, value=first["label"] if first else None,
                                              label="Sample trace (assets/sample_traces.jsonl)")
                    with gr.Accordion("New synthetic problem", open=False):
                        with gr.Row():
                            family = gr.Dropdown(list(TASKS), value=next(iter(TASKS)), label="Task", min_width=90)
                            level = gr.Number(1, label="Level", precision=0, minimum=1, min_width=60)
                            pseed = gr.Number(0, label="Seed", precision=0, min_width=60)
                        new_btn = gr.Button("New problem", size="sm")
                    with gr.Accordion("Problem from a dataset file (GSM8K / MATH style)", open=False):
                        ds_file = gr.File(label="Upload", file_types=[".jsonl", ".json", ".csv", ".parquet"])
                        with gr.Row():
                            ds_path = gr.Textbox(label="or a path inside the allowed folders", scale=3)
                            ds_row = gr.Number(0, label="Row", precision=0, min_width=60, scale=1)
                        ds_btn = gr.Button("Load problem", size="sm")
                    prompt = gr.Textbox(first["prompt"] if first else "", label="Prompt", lines=2)
                    with gr.Row():
                        answer = gr.Textbox(first["answer"] if first else "", label="Reference answer", min_width=80)
                        reward = gr.Textbox(first["reward"] if first else "", label="Reward (empty: checker)",
                                            min_width=80)
                        checker = gr.Dropdown([NO_CHECKER, *TASKS], value=first["checker"] if first else NO_CHECKER,
                                              label="Step checker", min_width=90)
                    completion = gr.Textbox(first["completion"] if first else "", label="Completion", lines=6,
                                            info="paste one, or sample it from the model below")
                    with gr.Accordion("Sample a completion from the model", open=False):
                        with gr.Row():
                            temperature = gr.Slider(0, 1.5, value=1.0, step=0.1, label="Temperature", min_width=160)
                            sseed = gr.Number(0, label="Seed", precision=0, min_width=60)
                            max_new = gr.Number(112, label="Max new tokens", precision=0, min_width=60)
                        sample_btn = gr.Button("Sample", size="sm")
                    with gr.Row():
                        method = gr.Dropdown(UI_METHODS, value="acpo", label="Credit method", min_width=100)
                        segmentation = gr.Dropdown(SEGMENTATIONS, value="lines", label="Segmentation", min_width=100)
                        probe = gr.Textbox("#### ", label="Answer probe (acpo)", min_width=80)
                    explain_btn = gr.Button("Explain", variant="primary")
                with gr.Column(scale=3):
                    view = gr.Radio(VIEWS, value=VIEWS[0], label="View", show_label=False)
                    heatmap = gr.HTML(first["html"] if first else views.message_html("Explain a completion."))
                    verdict = gr.Markdown(first["verdict"] if first else "")
                    entropy_plot = gr.Plot(first["figure"] if first else None, label="Entropy trace")
                    table = gr.Dataframe(first["table"] if first else None, label="Steps", max_height=360,
                                         interactive=False)
                    csv_btn = gr.DownloadButton("Download CSV", value=first["csv"] if first else None, size="sm")
            trace_state = gr.State(first["state"] if first else None)

            explain_inputs = [model, trust, prompt, completion, answer, reward, checker, method, segmentation, probe,
                              view]
            explain_outputs = [heatmap, verdict, entropy_plot, table, csv_btn, trace_state]
            explain_btn.click(ex.explain, explain_inputs, explain_outputs, api_name="explain")
            view.change(ex.render_view, [trace_state, view], heatmap, api_name="render_view")
            sample_pick.change(ex.load_sample, sample_pick, [prompt, completion, answer, reward, checker],
                               api_name="load_sample")
            new_btn.click(ex.new_problem, [family, level, pseed], [prompt, completion, answer, reward, checker],
                          api_name="new_problem")
            ds_btn.click(ex.load_dataset_problem, [ds_file, ds_path, ds_row],
                         [prompt, completion, answer, reward, checker], api_name="load_dataset_problem")
            sample_btn.click(ex.sample, [model, trust, prompt, temperature, sseed, max_new], completion,
                             api_name="sample")

        with gr.Tab("Compare checkpoints"):
            gr.Markdown("The same prompt and completion scored under each checkpoint (step 0 vs the last step of a "
                        "run, base vs LoRA). Steps come from a segmentation that does not depend on the model, so "
                        "step k is the same text under every checkpoint.")
            with gr.Row():
                c_models = gr.Dropdown(model_choices, value=model_choices[:2], multiselect=True,
                                       allow_custom_value=True, label="Checkpoints (two or more)", scale=3)
                c_trust = gr.Checkbox(False, label="Allow the models' own code", scale=1,
                                      visible=ex.allow_remote_code)
            with gr.Row():
                c_prompt = gr.Textbox(first["prompt"] if first else "", label="Prompt", lines=2)
                c_answer = gr.Textbox(first["answer"] if first else "", label="Reference answer")
            c_completion = gr.Textbox(first["completion"] if first else "", label="Completion", lines=5)
            with gr.Row():
                c_copy = gr.Button("Copy from the Explore tab", size="sm")
                c_method = gr.Dropdown(UI_METHODS, value="acpo", label="Credit method")
                c_seg = gr.Dropdown(COMPARE_SEGMENTATIONS, value="lines", label="Segmentation")
                c_probe = gr.Textbox("#### ", label="Answer probe")
            c_btn = gr.Button("Compare", variant="primary")
            c_html = gr.HTML()
            c_plot = gr.Plot(label="Per-step credit and entropy")
            c_table = gr.Dataframe(label="Per step", wrap=True, interactive=False)
            c_csv = gr.DownloadButton("Download CSV", size="sm")
            c_copy.click(lambda p, c, a: (p, c, a), [prompt, completion, answer], [c_prompt, c_completion, c_answer],
                         api_name=False)
            c_btn.click(ex.compare, [c_models, c_trust, c_prompt, c_completion, c_answer, c_method, c_seg, c_probe],
                        [c_html, c_plot, c_table, c_csv], api_name="compare")

        with gr.Tab("Runs"):
            runs = ex.run_choices()
            with gr.Row():
                r_path = gr.Dropdown(runs, value=runs[-1] if runs else None, allow_custom_value=True,
                                     label="Run folder (written by train.py)", scale=4)
                r_btn = gr.Button("Open", variant="primary", scale=1)
            r_summary = gr.Markdown()
            r_plot = gr.Plot(label="Training curves")
            r_hapo = gr.Plot(label="HAPO quadrants", visible=False)
            with gr.Accordion("config.yaml and checkpoints", open=False):
                r_config = gr.Code(language="yaml", label="config.yaml")
                r_ckpts = gr.JSON(label="Checkpoints (paste into the Model or Compare fields)")
            gr.Markdown("### Saved traces")
            with gr.Row():
                r_step = gr.Dropdown([], label="Training step", allow_custom_value=True)
                r_col = gr.Dropdown([], label="Colour by", allow_custom_value=True)
                r_key = gr.Dropdown([], label="Completion (prompt_id / completion_id)", allow_custom_value=True)
            r_traces = gr.Dataframe(label="Completions at this step", wrap=True, interactive=False, max_height=300)
            r_html = gr.HTML()
            r_btn.click(ex.open_run, r_path, [r_summary, r_plot, r_hapo, r_config, r_step, r_ckpts],
                        api_name="open_run")
            r_step.change(ex.run_traces, [r_path, r_step], [r_traces, r_col, r_key], api_name="run_traces")
            gr.on([r_key.change, r_col.change], ex.run_trace_view, [r_path, r_step, r_key, r_col], r_html,
                  api_name="run_trace_view")

        with gr.Tab("Batch and export"):
            gr.Markdown(
                "Explain every completion of a file: CSV / JSONL / Parquet with `prompt`, `completion` and optional "
                "`answer`, `reward`; TRL's `completions/*.parquet`; or verl's rollout JSONL dumps "
                f"(`input`, `output`, `score`). Up to {MAX_FILE_MB} MB and {MAX_BATCH_ROWS} rows."
            )
            with gr.Row():
                b_file = gr.File(label="Upload", file_types=[".jsonl", ".json", ".csv", ".parquet"])
                with gr.Column():
                    b_path = gr.Textbox(label="or a path inside the allowed folders")
                    b_model = gr.Dropdown(model_choices, value=model_choices[0], allow_custom_value=True, label="Model")
                    b_trust = gr.Checkbox(False, label="Allow the model's own code", visible=ex.allow_remote_code)
            with gr.Row():
                b_methods = gr.CheckboxGroup(UI_METHODS, value=["acpo", "hapo"], label="Credit methods")
                b_seg = gr.Dropdown(SEGMENTATIONS, value="lines", label="Segmentation")
                b_probe = gr.Textbox("#### ", label="Answer probe")
                b_max = gr.Number(500, label="Max rows", precision=0)
            b_btn = gr.Button("Explain all", variant="primary")
            b_summary = gr.Markdown()
            b_plot = gr.Plot(label="Credit distribution")
            b_table = gr.Dataframe(label="Credit table (first 200 rows; the CSV has all)", wrap=True,
                                   interactive=False, max_height=360)
            b_csv = gr.DownloadButton("Download the whole credit table (CSV)", size="sm")
            b_btn.click(ex.batch, [b_file, b_path, b_model, b_trust, b_methods, b_seg, b_probe, b_max],
                        [b_summary, b_plot, b_table, b_csv], api_name="batch_explain")
    return demo


def _initial_view(ex: Explorer, samples: list[str]) -> dict | None:
    """Explain one bundled sample (a failed one that shows its working, when there is one) for
    the first screen; without bundled samples, the reference solution of a synthetic problem."""
    rows = ex.samples
    try:
        if samples:
            failed = [r for r in rows if float(r.get("reward") or 0) == 0 and r.get("first_error") is not None]
            worked = [r for r in failed if "\n" in str(r.get("completion", "")).strip()]
            pick = (worked or failed or rows)[0]
            label = sample_label(pick)
            prompt, completion, answer, reward, checker = ex.load_sample(label)
        else:
            label = None
            prompt, _, answer, reward, checker = ex.new_problem(next(iter(TASKS)), 1, 0)
            completion = TASKS[checker].generate(1, 1, 0)[0].solution
        heat, verdict, fig, table, csv, state = ex.explain(None, False, prompt, completion, answer, reward, checker,
                                                           "acpo", "lines", "#### ", VIEWS[0])
    except gr.Error as err:
        print(f"[acpo app] could not explain the first sample: {err}", file=sys.stderr)
        return None
    return dict(prompt=prompt, completion=completion, answer=answer, reward=reward, checker=checker, html=heat,
                verdict=verdict, figure=fig, table=table, csv=csv, state=state, label=label)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python app/main.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default: %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--allow", action="append", default=[], metavar="DIR",
                        help="another folder the app may read runs, checkpoints and files from (repeatable); "
                             "assets/ and runs/ are always allowed")
    parser.add_argument("--model", default=DEMO_POLICY, help="default model (default: the bundled demo policy)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--allow-remote-code", action="store_true",
                        help="let users load models that run their own Python (trust_remote_code); off by default, "
                             "and never on a public server: anyone could point the app at a repository of theirs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    roots = [ASSETS, REPO_ROOT / "runs", *args.allow]
    if Path(args.model).exists():  # the operator named it at launch: it may be read
        roots.append(args.model)
    explorer = Explorer(roots, default_model=args.model, allow_remote_code=args.allow_remote_code)
    started = time.perf_counter()
    demo = build_app(explorer)
    print(f"[acpo app] ready in {time.perf_counter() - started:.1f} s; reading from: "
          + ", ".join(str(r) for r in explorer.guard.roots))
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, share=args.share, show_error=True,
        max_file_size=f"{MAX_FILE_MB}mb", css=CSS, theme=gr.themes.Soft(),
    )


if __name__ == "__main__":
    main()
