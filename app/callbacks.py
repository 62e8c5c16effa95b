"""The app's callbacks: every button's work, as methods of ``Explorer``.

Each callback takes the widgets' values and returns the outputs' values; every
number comes from ``acpo`` (``explain``, ``explain_batch``, ``Trace.to_frame``,
the task checkers). Bad input raises ``InputError``, which ``ui_errors`` turns
into a message in the page.
"""

from __future__ import annotations

import functools
import math
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

import acpo
from acpo.answers import extract_answer
from acpo.credit.info_gain import DEFAULT_PROBE
from acpo.credit.mc_reset import Cancelled
from acpo.fidelity import fidelity_table
from acpo.data import load_problems
from acpo.models import DEMO_POLICY, ModelLoadError
from acpo.render import credit_scale, message_html, step_heatmap_html, trace_html
from acpo.rollout import generate_texts
from acpo.tasks import TASKS, Problem, first_error_step
from acpo.verdict import (AUTO_CHECKER, CHECKERS, FREEFORM_CHECKER, NO_CHECKER, blamed_step, check_row,  # noqa: F401
                          known_reward, localisable, located, row_reward, unlabelled_counts)
from acpo.tokens import context_length, encode_prompt
from . import views
from .loaders import (
    DEFAULT_SAMPLES,
    FIDELITY_FILE,
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
    read_fidelity,
    read_run_traces,
    read_samples,
    sample_label,
)
from .models import ModelCache

# Cheap methods first; a credit that samples continuations costs seconds per step boundary, so Batch leaves it out.
UI_METHODS = [m for m in ("mean_logprob", "info_gain", "hapo", "entropy_mask", "uniform", "mc_reset")
              if m in acpo.CREDIT_METHODS]
BATCH_METHODS = [m for m in UI_METHODS if not acpo.CREDIT_METHODS[m].samples_continuations]
RESAMPLING = [m for m in UI_METHODS if acpo.CREDIT_METHODS[m].samples_continuations]
FALLBACK_METHOD = "info_gain"
COMPANION_METHOD = "info_gain"  # shown beside the chosen credit in Explore, when there is an answer to probe
FIDELITY_BOOTSTRAP = 1000
SEGMENTATIONS = ["hybrid", "lines", "markers", "entropy", "fixed-8", "fixed-16"]
# Comparing checkpoints step by step needs the same steps under each: segmentations that do not use entropy.
COMPARE_SEGMENTATIONS = ["lines", "markers", "fixed-8", "fixed-16"]
VIEWS = ["steps: credit", "tokens: entropy", "tokens: advantage"]
MAX_BATCH_ROWS = 2000
BATCH_CHUNK = 16


# --- helpers ---------------------------------------------------------------------------


def scrub_paths(message: str) -> str:
    """A message without the server's repo folder (its paths become relative ones)."""
    return message.replace(str(REPO_ROOT) + "/", "")


def ui_errors(fn):
    """Turn bad input into a gr.Error with its message; anything unexpected too, so the app stays up."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled as err:
            raise gr.Error("stopped: the resampling credit was cancelled", title="Stopped") from err
        except (InputError, ModelLoadError, ValueError, FileNotFoundError) as err:
            raise gr.Error(scrub_paths(str(err)), title="Input problem") from err
        except torch.OutOfMemoryError as err:
            raise gr.Error("out of memory: try a shorter completion, fewer rows or a smaller model") from err
        except Exception as err:
            traceback.print_exc()
            raise gr.Error(scrub_paths(f"unexpected error ({type(err).__name__}): {err}")) from err

    return wrapper


def parse_reward(text) -> float | None:
    """A typed reward: None when empty; NaN, infinities and text are refused."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"reward {text!r} is not a number; leave it empty or type e.g. 1 or 0") from None
    if not math.isfinite(value):
        raise InputError(f"reward {text!r} is not a finite number; leave it empty or type e.g. 1 or 0")
    return value


def whole_number(value, what: str, low: int, high: int) -> int:
    """A number field as an int in [low, high], else InputError naming the field and the range."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number from {low} to {high}; got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or not low <= f <= high:
        raise InputError(f"{what} must be a whole number from {low} to {high}; got {value!r}")
    return int(f)


class Downloads:
    """CSV files for the download buttons, in one folder the app owns: files older than
    ``keep_s`` go at each write, and the folder goes when the app exits."""

    def __init__(self, keep_s: float = 3600):
        self._dir = tempfile.TemporaryDirectory(prefix="acpo-app-")
        self.folder, self.keep_s = Path(self._dir.name), keep_s

    def write(self, frame: pd.DataFrame, stem: str) -> str:
        cutoff = time.time() - self.keep_s
        for old in self.folder.iterdir():
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        path = self.folder / f"{stem}-{uuid.uuid4().hex[:8]}.csv"
        frame.to_csv(path, index=False)
        return str(path)


def task_scorer(checker: str, prompt: str, answer: str | None):
    """``score(i, text)`` for mc_reset's continuations: the step checker's answer verdict, or None
    (then the reference answer decides, as ``acpo.explain`` does by default)."""
    if not checker or checker == NO_CHECKER or checker not in TASKS:
        return None
    task = TASKS[checker]
    problem = Problem("typed", checker, task.levels[0], prompt, answer or "")
    return lambda i, text: float(task.check(problem, text).answer_correct)


def check_problem(checker: str, prompt: str, answer: str | None, completion: str):
    """The step checker's verdict (``acpo.verdict.check_row``), or None with a warning saying why."""
    try:
        check, why = check_row(checker, prompt, answer, completion)
    except ValueError as err:
        raise InputError(str(err)) from None
    if why:
        gr.Warning(why)
    return check


def verdict_markdown(trace, method: str, check, error_step: int | None) -> str:
    """What the Explore tab says about one explained completion, hit or miss first."""
    col = f"credit_{method}"
    blamed = blamed_step([st.index for st in trace.steps], trace.credits[method].tolist())
    scale = credit_scale(col, trace.credits[method].tolist())
    lines = []
    if error_step is not None and located(check):
        lines.append(views.hit_or_miss(blamed, error_step, method) + " (dashed outline: the checker's first wrong step)")
    elif check is not None and check.first_error is None and check.answer_correct:
        lines.append("✓ checker: every step and the answer are right; there is no wrong step to find")
    elif check is not None and check.first_error is None and not getattr(check, "checkable", True):
        lines.append("checker: no line holds a computation it can check, so the wrong answer's first error "
                     "cannot be located")
    elif check is not None and check.first_error is None:
        lines.append("checker: every computation it can check is right, but the answer is wrong: the error is not in "
                     "the arithmetic, so it cannot be located")
    elif check is not None:
        lines.append(f"checker: the steps are right but the answer line is missing (step {error_step} marked); "
                     "no wrong step to localise")
    parts = [f"**reward** {trace.reward if trace.reward is not None else 'unknown'}", f"**steps** {len(trace.steps)}"]
    if trace.answer is not None:
        parts.append(f"**target answer** <code>{views.md_escape(trace.answer)}</code>")
    parts.append(f"**lowest {col}**: " + (f"step {blamed}" if blamed is not None else "none (several steps share the lowest)"))
    unit = f" {scale.unit}" if scale.unit else ""
    parts.append(f"colour scale ±{scale.top:.3g}{unit}" if scale.signed else f"colour scale 0 … {scale.top:.3g}{unit}")
    if method in trace.seconds:
        parts.append(f"**{method} cost** {trace.seconds[method]:.2f} s")
    lines.append(" · ".join(parts))
    return "  \n".join(lines)


def recommended_method(fidelity: pd.DataFrame) -> tuple[str, str]:
    """(method, why): the cheap registered method with the best measured top-1 on the demo policy,
    and a sentence with its numbers, read from the published credit-fidelity table."""
    cheap = fidelity[fidelity["credit"].isin(BATCH_METHODS)] if "credit" in fidelity else fidelity.iloc[:0]
    if cheap.empty:
        return FALLBACK_METHOD, (f"No measured credit fidelity found ({FIDELITY_FILE.name}); showing "
                                 f"{FALLBACK_METHOD}. Run `python bench/credit_fidelity.py --publish` to measure.")
    best = cheap.sort_values(["top1", "auroc"], ascending=False).iloc[0]
    n = int(best["traces"])
    when = f", {best['measured']}" if "measured" in best and pd.notna(best["measured"]) else ""
    why = (f"The first screen uses **{best['credit']}**: on {n} failed demo-policy traces its lowest-credit step "
           f"was the first wrong step {best['top1']:.0%} of the time (95% CI {best['top1_lo']:.0%}–"
           f"{best['top1_hi']:.0%}; chance {best['chance_top1']:.0%}), AUROC {best['auroc']:.2f}, the best of the "
           f"cheap methods (`bench/credit_fidelity.py`{when}).")
    others = [f"{r['method']} {r['top1']:.0%}" for _, r in cheap.iterrows() if r["credit"] != best["credit"]]
    mc = fidelity[fidelity["credit"].isin(RESAMPLING)] if "credit" in fidelity else fidelity.iloc[:0]
    if len(mc):
        top = mc.sort_values("top1", ascending=False).iloc[0]
        others.append(f"{top['method']} {top['top1']:.0%} at {top['ms_per_trace']:.0f} ms per trace")
    if others:
        why += " Others: " + ", ".join(others) + "."
    return str(best["credit"]), why


def render_trace(state: dict | None, view: str) -> str:
    """The heatmap of the explained trace in ``state`` for one of ``VIEWS`` (the core's renderer)."""
    if not state:
        return message_html("Explain a completion to see its steps here.")
    kind = {"tokens: entropy": "entropy", "tokens: advantage": "advantage"}.get(view, "steps")
    return trace_html(state["trace"], state["method"], kind, state.get("first_error_step"))


# --- the app -----------------------------------------------------------------------------


class Explorer:
    """The callbacks; holds the model cache, the path guard, the bundled samples and the download folder."""

    def __init__(self, roots, default_model: str = DEMO_POLICY, samples_path: Path = DEFAULT_SAMPLES,
                 max_file_mb: float = MAX_FILE_MB, fidelity_path: Path = FIDELITY_FILE,
                 allow_remote_code: bool = False):
        self.guard = PathGuard(roots)
        self.allow_remote_code = allow_remote_code
        self.models = ModelCache(self.guard, default_model, allow_remote_code=allow_remote_code)
        self.default_model = default_model
        self.samples = read_samples(samples_path)
        self.max_file_mb = max_file_mb
        self.fidelity = read_fidelity(fidelity_path)
        self.first_method, self.first_method_why = recommended_method(self.fidelity)
        self.downloads = Downloads()
        self._stops: dict[str, threading.Event] = {}  # session -> "stop the resampling" flag
        self._rates: dict[tuple, float] = {}  # (model, batch) -> seconds per generated token step

    # -- choices --

    def model_choices(self) -> list[str]:
        out = [display_path(Path(self.default_model))] if Path(self.default_model).exists() else [self.default_model]
        out += [display_path(p) for p in find_checkpoints(find_runs(self.guard.roots))]
        return list(dict.fromkeys(out))

    def run_choices(self) -> list[str]:
        """Run folders, oldest first (the last is the newest)."""
        return [display_path(p) for p in find_runs(self.guard.roots)]

    def sample_choices(self) -> list[str]:
        return [sample_label(r) for r in self.samples]

    def refresh_models(self, *current):
        """Re-scan the allowed folders for checkpoints (new runs appear without a restart)."""
        choices = self.model_choices()
        return [gr.update(choices=choices) for _ in current] or gr.update(choices=choices)

    def refresh_runs(self):
        runs = self.run_choices()
        return gr.update(choices=runs, value=runs[-1] if runs else None)

    # -- Explore --

    @ui_errors
    def load_sample(self, label: str):
        """Fill the problem fields from a bundled sample trace."""
        row = next((r for r in self.samples if sample_label(r) == label), None)
        if row is None:
            raise InputError(f"no sample trace called {label!r}")
        checker = (row.get("family") if row.get("family") in TASKS
                   else FREEFORM_CHECKER if row.get("answer") not in (None, "") else NO_CHECKER)
        reward = "" if row.get("reward") is None else str(row["reward"])
        return row["prompt"], row["completion"], str(row.get("answer") or ""), reward, checker

    @ui_errors
    def new_problem(self, family: str, level, seed):
        """A fresh synthetic problem (prompt, answer, checker); the completion is cleared."""
        task = TASKS.get(family)
        if task is None:
            raise InputError(f"unknown task family {family!r}; valid: {', '.join(TASKS)}")
        level = whole_number(level, "level", min(task.levels), max(task.levels))
        problem = task.generate(1, level, whole_number(seed, "seed", 0, 2**31 - 1))[0]
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
        index = whole_number(row or 0, "row", 0, max(0, len(problems) - 1))
        p = problems[index]
        return p.prompt, "", p.answer, "", FREEFORM_CHECKER

    @ui_errors
    def sample(self, model_name, trust_remote_code, prompt, temperature, seed, max_new_tokens):
        """Sample a completion of ``prompt`` from the model (greedy at temperature 0)."""
        if not prompt or not prompt.strip():
            raise InputError("the prompt is empty; pick a problem or type one")
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        limit = context_length(model)
        n_prompt = len(encode_prompt(tokenizer, prompt))
        budget = whole_number(max_new_tokens, "max new tokens", 1, 4096)
        if limit is not None:
            if n_prompt >= limit:
                raise InputError(f"the prompt ({n_prompt} tokens) fills the model's context of {limit} tokens")
            budget = min(budget, limit - n_prompt)
        return generate_texts(model, tokenizer, [prompt], temperature=float(temperature),
                              seed=whole_number(seed, "seed", 0, 2**31 - 1), max_new_tokens=budget)[0]

    def resampling_options(self, checker, prompt, answer, samples, temperature, batch, tokens, progress=None,
                           stop: threading.Event | None = None) -> dict:
        """``method_options`` for mc_reset from the Explore fields, with a progress bar and a stop flag."""
        opts = {"samples": whole_number(samples, "continuations per boundary (M)", 1, 256),
                "batch_size": whole_number(batch, "continuation batch size", 1, 1024),
                "max_new_tokens": whole_number(tokens, "continuation tokens", 1, 1024)}
        try:
            opts["temperature"] = float(temperature)
        except (TypeError, ValueError):
            raise InputError(f"temperature must be a number above 0; got {temperature!r}") from None
        if not 0 < opts["temperature"] <= 5:
            raise InputError(f"the resampling temperature must be above 0 and at most 5; got {temperature!r}")
        score = task_scorer(checker, prompt, answer)
        if score is None and not answer:
            raise InputError("the resampling credit scores continuations: give a reference answer or pick a step "
                             "checker")
        if score is not None:
            opts["score"] = score
        started = time.perf_counter()

        def report(done, total):
            if stop is not None and stop.is_set():
                raise Cancelled("stopped by the user")
            if progress is not None:
                elapsed = time.perf_counter() - started
                left = f", about {elapsed / done * (total - done):.0f} s left" if done else ""
                progress(done / max(total, 1), desc=f"sampled {done}/{total} continuations{left}")

        opts["progress"] = report
        return opts

    def explain_trace(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                      segmentation, probe, resampling=None):
        """The core call behind the Explore tab: (trace state, step table)."""
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one or press Sample")
        if method not in UI_METHODS:
            raise InputError(f"unknown credit method {method!r}; valid: {', '.join(UI_METHODS)}")
        answer = (answer or "").strip() or None
        check = check_problem(checker, prompt or "", answer, completion)
        reward_value = row_reward(parse_reward(reward), check, completion, answer)
        methods = [method]
        if method != COMPANION_METHOD and (answer or extract_answer(completion)):
            methods.append(COMPANION_METHOD)
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        options = {method: resampling} if method in RESAMPLING else None
        trace = acpo.explain(model, tokenizer, prompt or "", completion, method=methods, segmentation=segmentation,
                             answer=answer, reward=reward_value, probe=probe or DEFAULT_PROBE, method_options=options)
        state = {"trace": trace, "method": method, "first_error_step": first_error_step(check, trace.steps), "check": check}
        return state, views.step_table(trace.to_frame(), method)

    @ui_errors
    def explain(self, model_name, trust_remote_code, prompt, completion, answer, reward, checker, method,
                segmentation, probe, view, mc_samples=8, mc_temperature=1.0, mc_batch=64, mc_tokens=64,
                request: gr.Request = None, progress=gr.Progress()):
        """Explain one completion: heatmap, verdict, entropy trace, step table, CSV of the table."""
        resampling = None
        if method in RESAMPLING:
            stop = self._stops.setdefault(getattr(request, "session_hash", None) or "api", threading.Event())
            stop.clear()
            resampling = self.resampling_options(checker, prompt or "", (answer or "").strip(), mc_samples,
                                                 mc_temperature, mc_batch, mc_tokens, progress, stop)
        state, table = self.explain_trace(model_name, trust_remote_code, prompt, completion, answer, reward, checker,
                                          method, segmentation, probe, resampling)
        trace = state["trace"]
        fig = views.entropy_figure(trace.entropies.tolist(), trace.tokens, trace.to_frame(), f"credit_{method}")
        verdict = verdict_markdown(trace, method, state["check"], state["first_error_step"])
        csv = self.downloads.write(trace.to_frame(), f"acpo-steps-{method}-{segmentation}")
        return render_trace(state, view), verdict, fig, views.display_table(views.hide_columns(table)), csv, state

    def stop(self, request: gr.Request = None):
        """Stop this session's running resampling credit after its current batch of continuations."""
        stop = self._stops.get(getattr(request, "session_hash", None) or "api")
        if stop is not None:
            stop.set()

    @ui_errors
    def estimate_resampling(self, model_name, trust_remote_code, prompt, completion, segmentation, method,
                            mc_samples, mc_batch, mc_tokens):
        """Before mc_reset runs: how many continuations it will sample and about how long it will take."""
        if method not in RESAMPLING:
            return ""
        if not completion or not completion.strip():
            return "Resampling credit: paste or sample a completion to see its cost."
        m = whole_number(mc_samples, "continuations per boundary (M)", 1, 256)
        batch = whole_number(mc_batch, "continuation batch size", 1, 1024)
        tokens = whole_number(mc_tokens, "continuation tokens", 1, 1024)
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        steps = acpo.explain(model, tokenizer, prompt or "", completion, method="uniform",
                             segmentation=segmentation).steps
        total = len(steps) * m
        per_call = max(1, batch // m) * m
        calls = math.ceil(len(steps) / max(1, batch // m))
        seconds = calls * tokens * self._step_seconds(model, tokenizer, prompt or "", min(per_call, total))
        return (f"**Resampling credit (mc_reset)** will sample {len(steps)} boundaries × M={m} = {total} "
                f"continuations of up to {tokens} tokens in {calls} batch(es): about **{seconds:.0f} s** on this "
                "machine (rough; the progress bar refines it). Stop cancels it.")

    def _step_seconds(self, model, tokenizer, prompt: str, width: int) -> float:
        """Seconds per generated token for ``width`` sequences at once, timed once per model and width."""
        key = (id(model), width)
        if key not in self._rates:
            from acpo.rollout import HFEngine

            engine = HFEngine(model, tokenizer, 8, 1.0, width)
            started = time.perf_counter()
            engine.generate([encode_prompt(tokenizer, prompt)], n=width)
            self._rates[key] = (time.perf_counter() - started) / 8
        return self._rates[key]

    @ui_errors
    def render_view(self, state, view):
        return render_trace(state, view)

    # -- Compare --

    @ui_errors
    def compare(self, model_names, trust_remote_code, prompt, completion, answer, method, segmentation, probe,
                checker=NO_CHECKER):
        """The same completion scored under each checkpoint: heatmaps on one shared scale with the checker's
        outline, a difference heatmap, a per-step chart, the table and its CSV."""
        names = [n for n in (model_names or []) if n and n.strip()]
        if len(names) < 2:
            raise InputError("pick at least two checkpoints to compare")
        if segmentation not in COMPARE_SEGMENTATIONS:
            raise InputError(
                f"segmentation {segmentation!r} depends on each model's entropy, so steps would differ between "
                f"checkpoints; use one of {', '.join(COMPARE_SEGMENTATIONS)}"
            )
        if method not in BATCH_METHODS:
            raise InputError(f"Compare scores cheap credit methods: one of {', '.join(BATCH_METHODS)}")
        if not completion or not completion.strip():
            raise InputError("the completion is empty; paste one (or copy it from the Explore tab)")
        answer = (answer or "").strip() or None
        check = check_problem(checker, prompt or "", answer, completion)
        reward = row_reward(None, check, completion, answer)
        frames, traces = {}, {}
        for name in names:
            label = name if name not in frames else f"{name} ({len(frames)})"
            model, tokenizer = self.models.get(name, trust_remote_code)
            trace = acpo.explain(model, tokenizer, prompt or "", completion, method=method,
                                 segmentation=segmentation, answer=answer, reward=reward, probe=probe or DEFAULT_PROBE)
            trace.meta["checkpoint"] = name
            traces[label], frames[label] = trace, trace.to_frame()
        col = f"credit_{method}"
        top = max(credit_scale(col, f[col].tolist()).top for f in frames.values())
        error_step = first_error_step(check, next(iter(traces.values())).steps)
        cells = []
        for label, f in frames.items():
            blamed = blamed_step(f["step"].tolist(), f[col].tolist())
            said = views.hit_or_miss(blamed, error_step, method) if located(check) \
                else f"lowest credit at step {blamed}"
            cells.append(f"<div>{step_heatmap_html(f, col, None, error_step, title=f'{label}: {said}', top=top)}</div>")
        labels = list(frames)
        first, last = frames[labels[0]], frames[labels[-1]]
        diff = first[["step", "text"]].copy()
        delta = f"Δ {col}"  # a difference is signed even where the credit is one-sided: the diverging map
        diff[delta] = last[col].to_numpy() - first[col].to_numpy()
        diff_html = step_heatmap_html(diff, delta, None, error_step, title=f"difference: {labels[-1]} − {labels[0]}")
        grid = (f'<div style="display:grid; grid-template-columns: repeat({min(len(frames), 3)}, minmax(0, 1fr)); '
                f'gap:12px;">{"".join(cells)}</div><div style="margin-top:12px;">{diff_html}</div>')
        unit = credit_scale(col, []).unit
        grid = (f'<div class="acpo-compare" data-shared-scale="{top:.6g}">'
                f'<p style="font: 12px system-ui, sans-serif; color:#57606a;">The checkpoints\' panels share one '
                f'colour scale ({top:.3g} {unit} at full colour); the difference has its own.</p>{grid}</div>')
        full = pd.concat(frames.values(), ignore_index=True)
        return (grid, views.compare_figure(frames, col), views.display_table(views.compare_table(frames, col)),
                self.downloads.write(full, f"acpo-compare-{method}"))

    # -- Runs --

    @ui_errors
    def open_run(self, run_path):
        """A run folder's curves, config, checkpoints and saved trace steps."""
        run = open_run(self.guard.resolve(run_path or "", "run folder"), self.guard)
        m = run.metrics
        n_steps = m["step"].nunique() if "step" in m else 0
        facts = [f"**{views.md_escape(run.path.name)}**", f"{n_steps} logged steps", f"{len(run.checkpoints)} checkpoints",
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
        return read_run_traces(run, whole_number(step, "training step", 0, 10**9))

    @ui_errors
    def run_traces(self, run_path, step):
        """The completions of one saved traces file: a summary row each (with hit/miss), and the credit columns."""
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
        """The heatmap of one saved completion (its rows of the traces file), with its verdict."""
        traces = self._run_traces(run_path, step)
        if not key:
            raise InputError("pick a completion (prompt_id / completion_id)")
        if credit_column not in traces.columns:
            raise InputError(f"the traces have no column {credit_column!r}; pick one of the credit columns")
        prompt_id, _, completion_id = str(key).partition(" / ")
        rows = traces[(traces["prompt_id"].astype(str) == prompt_id)
                      & (traces["completion_id"].astype(str) == completion_id)]
        if rows.empty:
            raise InputError(f"no completion {key!r} in the traces of step {step}")
        err = rows["first_error_step"].iloc[0] if "first_error_step" in rows else -1
        error_step = None if err is None or pd.isna(err) or int(err) < 0 else int(err)
        prompt = rows["prompt"].iloc[0] if "prompt" in rows else None
        rows = rows.sort_values("step")
        said = views.hit_or_miss(blamed_step(rows["step"].tolist(), rows[credit_column].astype(float).tolist()),
                                 error_step, credit_column.removeprefix("credit_"))
        head = (f'<p class="acpo-verdict" style="font: 14px system-ui, sans-serif;">{views.md_escape(said)}</p>'
                if said else "")
        return head + step_heatmap_html(rows, credit_column, prompt, error_step)

    # -- Batch --

    @staticmethod
    def _batch_checks(rollouts: pd.DataFrame, checker: str) -> list:
        """The step checker's verdict per row that has an answer (``acpo.verdict.check_row``; with
        ``AUTO_CHECKER`` the task of the file's ``family`` column, else the free-form checker)."""
        return [check_row(checker, r.prompt, str(r.answer), r.completion, r.family)[0] if r.answer is not None
                else None for r in rollouts.itertuples()]

    @ui_errors
    def batch(self, upload, path_text, model_name, trust_remote_code, methods, segmentation, probe, max_rows,
              checker=AUTO_CHECKER, progress=gr.Progress()):
        """Explain every completion of a rollout file: credit distribution, the credit table, and where a step
        checker labels the rows, which credit found the first wrong step (per method and per completion)."""
        if upload:
            path, name = Path(upload), Path(upload).name
        else:
            path = self.guard.resolve(path_text or "", "rollout file")
            name = path.name
        methods = [m for m in (methods or []) if m]
        if not methods:
            raise InputError("pick at least one credit method")
        unknown = [m for m in methods if m not in BATCH_METHODS]
        if unknown:
            raise InputError(f"Batch scores {', '.join(BATCH_METHODS)}; not {', '.join(unknown)} (the resampling "
                             "credit samples continuations per step: use it on one trace in Explore)")
        limit = whole_number(max_rows, "Max rows", 1, MAX_BATCH_ROWS)
        rollouts, layout = read_rollouts(path, name, self.max_file_mb)
        dropped = max(0, len(rollouts) - limit)
        rollouts = rollouts.iloc[:limit].reset_index(drop=True)
        checks = self._batch_checks(rollouts, checker or AUTO_CHECKER)
        rewards = [row_reward(r.reward, c, r.completion, r.answer) for r, c in zip(rollouts.itertuples(), checks)]
        computed = sum(not known_reward(r.reward) and w is not None for r, w in zip(rollouts.itertuples(), rewards))
        model, tokenizer = self.models.get(model_name, trust_remote_code)
        answers = [a if isinstance(a, str) else None for a in rollouts["answer"]] if rollouts["answer"].notna().any() \
            else None
        traces, total = [], len(rollouts)
        progress(0, desc=f"explaining {total} completions")
        for start in range(0, total, BATCH_CHUNK):
            rows = list(range(start, min(total, start + BATCH_CHUNK)))
            # rows with and without a known reward are explained apart: explain_batch takes all rewards or none
            for part in ([i for i in rows if rewards[i] is not None], [i for i in rows if rewards[i] is None]):
                if not part:
                    continue
                chunk = rollouts.iloc[part]
                meta = [{"prompt_id": r.prompt_id, "completion_id": r.completion_id,
                         "checkpoint": str(model_name or "")} for r in chunk.itertuples()]
                known = rewards[part[0]] is not None
                try:
                    got = acpo.explain_batch(
                        model, tokenizer, chunk["prompt"].tolist(), chunk["completion"].tolist(), method=methods,
                        segmentation=segmentation, answers=None if answers is None else [answers[i] for i in part],
                        rewards=[rewards[i] for i in part] if known else None,
                        probe=probe or DEFAULT_PROBE, meta=meta,
                    )
                except ValueError as err:
                    raise InputError(f"rows {part[0]}..{part[-1]} of '{name}': {err}") from err
                traces += list(zip(part, got))
            done = rows[-1] + 1
            progress(done / total, desc=f"explained {done}/{total}")
        traces = [t for _, t in sorted(traces, key=lambda pair: pair[0])]
        full = pd.concat([t.to_frame() for t in traces], ignore_index=True)
        col = f"credit_{methods[0]}"
        note = f" (first {limit} of {limit + dropped} rows)" if dropped else ""
        summary = (f"**{total} completions**{note} · {len(full)} steps · layout `{layout}` · "
                   f"mean {col} {full[col].mean():+.4f} (std {full[col].std():.4f})")
        if computed:
            summary += f"  \n{computed} rewards computed from the answer (the file gives none for those rows)"
        unknown_rewards = sum(r is None for r in rewards)
        if unknown_rewards:
            summary += (f"  \n{unknown_rewards} rows have no reward and no answer: their token advantages and HAPO "
                        "credits are 0")
        errors = [first_error_step(c, t.steps) if located(c) else None
                  for c, t in zip(checks, traces)]
        rows_table = views.batch_rows(rollouts, traces, errors, methods)
        labelled = [i for i, (c, e) in enumerate(zip(checks, errors)) if e is not None and localisable(c)]
        fidelity = self.batch_fidelity(traces, errors, labelled, methods)
        if fidelity is not None:
            best = fidelity.sort_values(["top1", "auroc"], ascending=False).iloc[0]
            hits = sum(views.hit_mark(blamed_step([s.index for s in traces[i].steps],
                                                  traces[i].credits[methods[0]].tolist()), errors[i]) == "✓"
                       for i in labelled)
            summary += (f"  \n**{len(labelled)} failed completions have a checker-located first wrong step**: "
                        f"{methods[0]} found it in {hits}/{len(labelled)}; best here: **{best['method']}** "
                        f"(top-1 {best['top1']:.2f}, chance {best['chance_top1']:.2f})")
        else:
            summary += ("  \nNo row can be labelled by a step checker (it needs an `answer`, and a failed "
                        "completion whose first wrong line the checker locates): no fidelity table")
        skipped = unlabelled_counts(checks)
        if skipped:
            summary += "  \nNot labelled: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
        state = {"traces": traces, "errors": errors, "method": methods[0]}
        return (summary, views.credit_histogram(full, col), views.display_table(views.hide_columns(full.head(200))),
                self.downloads.write(full, "acpo-credit-table"),
                views.display_table(fidelity) if fidelity is not None else None,
                views.display_table(rows_table), state,
                message_html("Click a completion row to see its heatmap."))

    @staticmethod
    def batch_fidelity(traces, errors, labelled, methods) -> pd.DataFrame | None:
        """``acpo.fidelity.fidelity_table`` on the labelled completions (the bench's metrics), or None."""
        if not labelled:
            return None
        scores = {m: [traces[i].credits[m].numpy() for i in labelled] for m in methods}
        return fidelity_table(scores, [errors[i] for i in labelled], FIDELITY_BOOTSTRAP)

    @ui_errors
    def batch_trace(self, state, evt: gr.SelectData):
        """The heatmap of the completion whose row was clicked in the per-completion table."""
        if not state or evt is None:
            raise InputError("explain a file first, then click one of its completion rows")
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return self.batch_trace_at(state, row)

    def batch_trace_at(self, state, row) -> str:
        traces = state["traces"]
        row = whole_number(row, "row", 0, len(traces) - 1)
        trace, error, method = traces[row], state["errors"][row], state["method"]
        said = views.hit_or_miss(blamed_step([s.index for s in trace.steps], trace.credits[method].tolist()), error,
                                 method)
        head = f'<p class="acpo-verdict">{views.md_escape(said)}</p>' if said else ""
        return head + trace_html(trace, method, "steps", error)
