"""What the app reads from disk: sample traces, rollout files, run folders.

Which paths it may read is ``app/pathguard.py``'s: every path here goes through its ``PathGuard``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

import acpo.runs
from acpo.credit import renamed_credit_columns
from acpo.data import step_labelled_rows, step_layout
from acpo.resources import ASSETS
from acpo.rewards import completion_text
from .pathguard import REPO_ROOT, InputError, PathGuard, display_path, short_path  # noqa: F401 (the app's names)

DEFAULT_SAMPLES = ASSETS / "sample_traces.jsonl"
FIDELITY_FILE = ASSETS / "credit_fidelity.csv"  # written by `python bench/credit_fidelity.py --publish`
MAX_FILE_MB = 25
ROLLOUT_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
LABEL_COLUMNS = ("label", "first_error_step")  # a file's own first-wrong-step index, -1 for none


def check_size(path: Path, limit_mb: float = MAX_FILE_MB) -> None:
    size = path.stat().st_size
    if size > limit_mb * 1024 * 1024:
        raise InputError(f"'{path.name}' is {size / 2**20:.1f} MB; the limit is {limit_mb} MB. Split it or sample rows")


# --- sample traces -------------------------------------------------------------------


def read_samples(path: Path = DEFAULT_SAMPLES) -> list[dict]:
    """Rows of ``assets/sample_traces.jsonl`` (empty when the file is not there)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, row in enumerate(rows):
        row.setdefault("id", row.get("problem_id", f"sample-{i}"))
    return rows


def sample_label(row: dict) -> str:
    verdict = "correct" if float(row.get("reward") or 0) > 0 else "wrong"
    prompt = str(row.get("prompt", "")).strip().removeprefix("Q: ")
    return f"{row['id']} · {verdict} · {prompt[:40]}"


# --- rollout files -------------------------------------------------------------------


def _message_text(value) -> str:
    """A prompt/completion cell as text: plain strings, or chat messages (TRL's conversational form)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        if value and value[-1].get("role") == "assistant":
            return completion_text(value)
        return "".join(str(m.get("content", "")) for m in value)
    return str(value)


def _is_text_cell(value) -> bool:
    """A prompt/completion cell ``_message_text`` reads: text, empty, or chat messages (not a dict or a number)."""
    if value is None or isinstance(value, str) or (isinstance(value, float) and pd.isna(value)):
        return True
    if hasattr(value, "tolist"):
        value = value.tolist()
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _refuse_constant(name: str):
    raise InputError(f"the file holds {name}; rewards and scores must be finite numbers (null or empty when unknown)")


def parse_rewards(values, name: str) -> list[float | None]:
    """A reward column as floats, None where empty or null; NaN, infinities and text are refused."""
    out, bad = [], []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v)
                                                                    and not isinstance(v, str)):
            out.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            bad.append((i, v))
            continue
        if not math.isfinite(f):
            bad.append((i, v))
        out.append(f)
    if bad:
        shown = ", ".join(f"row {i}: {v!r}" for i, v in bad[:5])
        raise InputError(f"'{name}' has rewards that are not finite numbers ({shown}); "
                         "fix them, or leave a reward empty when it is unknown")
    return out


def parse_labels(values, column: str, name: str) -> list[int]:
    """A file's first-error column as step indices: a whole number, -1 (or empty) where no step is wrong."""
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
            out.append(-1)
            continue
        try:
            number = float(v)
        except (TypeError, ValueError):
            number = math.nan
        if not number.is_integer() or number < -1:
            raise InputError(f"'{name}': column {column!r} of row {i} is {v!r}; it is the index of the first wrong "
                             "step (0, 1, ...), or -1 / empty when every step is right")
        out.append(int(number))
    return out


def _read_table(path: Path, name: str) -> pd.DataFrame:
    suffix = Path(name).suffix.lower()
    if suffix not in ROLLOUT_SUFFIXES:
        raise InputError(f"cannot read '{name}': unsupported file type {suffix or '(none)'}; use CSV, JSONL or Parquet")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"prompt": str, "completion": str, "answer": str}, keep_default_na=False,
                               encoding="utf-8")
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if suffix == ".json" and text.lstrip().startswith("["):
                return pd.DataFrame(json.loads(text))
            return pd.DataFrame([json.loads(ln, parse_constant=_refuse_constant) for ln in lines])
        return pd.read_parquet(path)
    except UnicodeDecodeError as err:
        raise InputError(f"'{name}' is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from err
    except (json.JSONDecodeError, ValueError, OSError) as err:
        raise InputError(f"could not read '{name}' as {suffix[1:].upper()}: {err}") from err
    except Exception as err:  # pyarrow raises its own types for a broken parquet file
        raise InputError(f"could not read '{name}' as {suffix[1:].upper()}: {err}") from err


def detect_layout(columns: list[str]) -> str:
    """``verl`` (input/output/score), ``trl`` (step/prompt/completion/advantage) or ``plain``."""
    cols = set(columns)
    if {"input", "output"} <= cols and "completion" not in cols:
        return "verl"
    if {"prompt", "completion", "step"} <= cols and "advantage" in cols:
        return "trl"
    return "plain"


def read_rollouts(path: Path, name: str | None = None, limit_mb: float = MAX_FILE_MB) -> tuple[pd.DataFrame, str]:
    """A rollout file as columns ``prompt, completion, answer, reward, prompt_id, completion_id``.

    Layouts:
    * plain CSV/JSONL/Parquet with ``prompt``, ``completion`` and optional ``answer``, ``reward``;
    * TRL's ``completions/*.parquet`` (``step, prompt, completion, <reward functions>, advantage``):
      the reward is the ``reward`` column if there is one, else the sum of the reward-function columns;
    * verl's rollout JSONL dumps (``input, output, score[, gts], step``);
    * step-labelled files (ProcessBench's ``problem, steps, label``, PRM800K-style ratings): see
      ``step_labelled_rollouts``; the table then has ``steps`` and ``label`` too.
    ``answer`` / ``reward`` are None where unknown; a reward that is NaN, infinite or text is refused.
    ``family`` (a synthetic task's name, when the file has it) lets a step checker label the rows; a file's
    own first-error column (``label`` or ``first_error_step``: the index of the first wrong
    step under the chosen segmentation, -1 for none) is the ground truth instead;
    ids come from ``prompt_id``/``problem_id`` and ``completion_id``/``id`` when the file has them.
    Returns the table and the layout name.
    """
    name = name or path.name
    check_size(path, limit_mb)
    raw = _read_table(path, name)
    if raw.empty:
        raise InputError(f"'{name}' has no rows")
    columns = [str(c) for c in raw.columns]
    if step_layout(columns) is not None and "completion" not in columns:
        return step_labelled_rollouts(raw, name), step_layout(columns)
    layout = detect_layout(columns)
    if layout == "verl":
        raw = raw.rename(columns={"input": "prompt", "output": "completion", "score": "reward", "gts": "answer"})
    missing = [c for c in ("prompt", "completion") if c not in raw.columns]
    if missing:
        raise InputError(
            f"'{name}' has no column {', '.join(map(repr, missing))}; found columns: {columns}. "
            "Expected: prompt, completion[, answer, reward] (or TRL completions / verl rollout dumps)"
        )
    for column in ("prompt", "completion"):
        bad = [(i, v) for i, v in enumerate(raw[column]) if not _is_text_cell(v)]
        if bad:
            shown = ", ".join(f"row {i}: {type(v).__name__} {v!r:.30}" for i, v in bad[:3])
            raise InputError(f"'{name}': the {column} of {len(bad)} row(s) is not text ({shown}); a {column} is text "
                             "or a list of chat messages")
    out = pd.DataFrame({
        "prompt": [_message_text(v) for v in raw["prompt"]],
        "completion": [_message_text(v) for v in raw["completion"]],
    })
    out["answer"] = [None if v is None or str(v).strip() == "" or (isinstance(v, float) and pd.isna(v)) else str(v)
                     for v in raw["answer"]] if "answer" in raw.columns else None
    if "reward" in raw.columns:
        out["reward"] = parse_rewards(raw["reward"].tolist(), name)
    elif layout == "trl":
        skip = {"step", "prompt", "completion", "advantage", "mode", "image"}
        funcs = [c for c in raw.columns if c not in skip and pd.api.types.is_numeric_dtype(raw[c])]
        reward = raw[funcs].sum(axis=1, min_count=1) if funcs else pd.Series([None] * len(raw))
        out["reward"] = parse_rewards([None if pd.isna(r) else float(r) for r in reward], name)
    else:
        out["reward"] = None
    out["family"] = [str(v) if isinstance(v, str) else None for v in raw["family"]] if "family" in raw else None
    label = next((c for c in LABEL_COLUMNS if c in raw.columns), None)
    if label is not None:
        out["label"] = parse_labels(raw[label].tolist(), label, name)
    prompt_ids = next((c for c in ("prompt_id", "problem_id") if c in raw.columns), None)
    completion_ids = next((c for c in ("completion_id", "id", "sample_id") if c in raw.columns), None)
    out["prompt_id"] = [str(v) for v in raw[prompt_ids]] if prompt_ids else _prompt_ids(out["prompt"])
    out["completion_id"] = ([str(v) for v in raw[completion_ids]] if completion_ids
                            else [str(i) for i in range(len(out))])
    empty = [i for i, c in enumerate(out["completion"]) if not c.strip()]
    if empty:
        raise InputError(f"'{name}': row(s) {empty[:5]} have an empty completion; remove them or fill them in")
    return out, layout


def step_labelled_rollouts(raw: pd.DataFrame, name: str) -> pd.DataFrame:
    """A step-labelled file (ProcessBench, PRM800K style: ``acpo.data.step_labelled_rows``) as rollout columns
    plus ``steps`` (the given steps, explained as they are split) and ``label`` (the human label: the earliest
    wrong step, -1 when none); the reward is the file's ``final_answer_correct`` where it has one."""
    try:
        rows = step_labelled_rows(raw, f"'{name}'")
    except ValueError as err:
        raise InputError(str(err)) from err
    return pd.DataFrame({
        "prompt": [r.problem for r in rows], "completion": ["\n".join(r.steps) for r in rows],
        "answer": None, "reward": [None if r.final_answer_correct is None else float(r.final_answer_correct)
                                   for r in rows],
        "family": None, "prompt_id": [r.id for r in rows], "completion_id": [r.generator or r.id for r in rows],
        "steps": [list(r.steps) for r in rows], "label": [r.label for r in rows],
    })


def _prompt_ids(prompts: pd.Series) -> list[str]:
    first: dict[str, int] = {}
    return [f"p{first.setdefault(p, len(first))}" for p in prompts]


# --- run folders ---------------------------------------------------------------------

@dataclass
class Run:
    """What a run folder written by ``train.py`` holds (any part may be missing)."""

    path: Path
    guard: PathGuard
    config_text: str = ""
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: list[Path] = field(default_factory=list)
    trace_steps: list[int] = field(default_factory=list)

    def trace_file(self, step: int) -> Path:
        return acpo.runs.trace_file(self.path, step)


def read_metrics(path: Path) -> pd.DataFrame:
    """``metrics.jsonl`` as a frame by step; unreadable lines (a run still writing) are skipped, and a
    value of the wrong type (a string, a list) becomes a gap, not a crash."""
    frame = pd.DataFrame(acpo.runs.read_metrics(path))
    for col in frame.columns:
        if col not in TEXT_METRICS:
            frame[col] = pd.to_numeric(frame[col].map(_number_or_none), errors="coerce")
    if "step" in frame.columns:
        frame = frame.dropna(subset=["step"]).sort_values("step").reset_index(drop=True)
    return frame


TEXT_METRICS = {"method", "run", "time", "timestamp", "note"}


def _number_or_none(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def open_run(path: Path, guard: PathGuard | None = None) -> Run:
    """Read a run folder: config, metrics, checkpoints, trace files.

    Each file and subfolder is checked by ``guard`` (by default: it must stay
    inside the run folder) before it is read, so a link cannot lead out.
    """
    guard = guard or PathGuard([path])
    if not path.is_dir():
        raise InputError(f"'{path}' is not a folder; pick the run folder that holds {acpo.runs.METRICS}")
    markers = [path / name for name in acpo.runs.MARKERS]
    if not any(m.exists() for m in markers):
        raise InputError(f"'{path}' does not look like a run folder (no {', '.join(acpo.runs.MARKERS)})")
    for m in markers:
        if m.exists() or m.is_symlink():
            guard.inside(m, "run file")
    run = Run(path, guard)
    if (path / acpo.runs.CONFIG).exists():
        run.config_text = (path / acpo.runs.CONFIG).read_text(encoding="utf-8", errors="replace")
    if (path / acpo.runs.METRICS).exists():
        run.metrics = read_metrics(path / acpo.runs.METRICS)
    run.checkpoints = [p for _, p in acpo.runs.numbered(path / acpo.runs.CHECKPOINTS) if guard.allowed(p)]
    run.trace_steps = [n for n, _ in acpo.runs.numbered(path / acpo.runs.TRACES, acpo.runs.TRACES_SUFFIX)]
    return run


def read_run_traces(run: Run, step: int) -> pd.DataFrame:
    f = run.trace_file(step)
    if not f.exists():
        raise InputError(f"run '{run.path.name}' has no traces for step {step}; saved steps: {run.trace_steps}")
    f = run.guard.inside(f, "traces file")
    try:
        frame = pd.read_parquet(f)
    except Exception as err:
        raise InputError(f"could not read '{f.name}': {err}") from err
    return renamed_credit_columns(frame)  # traces written under an old credit name


def find_runs(roots: Iterable[Path], depth: int = 2) -> list[Path]:
    """Run folders (holding ``acpo.runs.METRICS``) at most ``depth`` levels under each root, oldest first
    (by when their metrics were last written), so the last one is the newest."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for level in range(depth + 1):
            pattern = "/".join(["*"] * level + [acpo.runs.METRICS])
            found += [p.parent for p in root.glob(pattern) if _within(p, root)]
    return sorted(set(found), key=lambda run: ((run / acpo.runs.METRICS).stat().st_mtime, str(run)))


def find_checkpoints(runs: Iterable[Path]) -> list[Path]:
    out = []
    for run in runs:
        out += [p for _, p in acpo.runs.numbered(run / acpo.runs.CHECKPOINTS) if _within(p, run)]
    return out


def _within(path: Path, root: Path) -> bool:
    """Whether ``path`` stays inside ``root`` once every link is followed (links out are not listed)."""
    return PathGuard([root]).allowed(path)


def read_fidelity(path: Path = FIDELITY_FILE) -> pd.DataFrame:
    """The credit-fidelity table measured on the demo policy (empty when it was never published)."""
    if not path.exists():
        return pd.DataFrame()
    return renamed_credit_columns(pd.read_csv(path))
