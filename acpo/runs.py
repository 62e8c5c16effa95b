"""A run folder: its layout, its one-writer lock, its metrics log and its summary.

``train.py`` writes, the app and the benches read::

    runs/<name>/
        .lock             held (fcntl.flock) by the one process writing this folder
        config.yaml       the full config, so ``--resume`` can start from it
        metrics.jsonl     one JSON object per logged step (step 0: the first evaluation)
        checkpoints/      step-N folders (see ``acpo.checkpoint``)
        traces/           step-N.parquet, explained held-out completions
        summary.json      written once, when the run finished (strict JSON: null, never NaN)

Every write goes through ``write_atomic`` or ``append_metrics``: flushed to the
disk before it is published, and a failure (a full disk) is one
``RunWriteError`` naming the folder and its free space.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per folder is then the user's to keep
    fcntl = None

CONFIG, METRICS, SUMMARY, CHECKPOINTS, TRACES, LOCK = (
    "config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "traces", ".lock")
MARKERS = (METRICS, CONFIG, CHECKPOINTS, TRACES)
"""What makes a folder a run folder: any one of these."""
TRACES_SUFFIX = ".parquet"
_STEP_NAME = re.compile(r"step-(\d+)")


def step_name(step: int) -> str:
    """The name of step ``step``'s checkpoint folder and (with ``TRACES_SUFFIX``) traces file: ``step-N``."""
    return f"step-{int(step)}"


def step_of(name: str) -> int | None:
    """N for a name ``step-N`` (None for anything else: ``.tmp-step-N``, ``step-x``)."""
    m = _STEP_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


def trace_file(run_dir: Path, step: int) -> Path:
    """``traces/step-N.parquet``: the held-out completions explained at step N."""
    return Path(run_dir) / TRACES / (step_name(step) + TRACES_SUFFIX)


def run_of_checkpoint(path: Path) -> Path | None:
    """The run folder of ``<run>/checkpoints/step-N`` (None for any other path)."""
    path = Path(path)
    if path.parent.name == CHECKPOINTS and step_of(path.name) is not None:
        return path.parent.parent
    return None


def prompt_style(run_dir: Path):
    """How the run asked its problems (``acpo.prompts.PromptStyle`` from its config.yaml), None when the
    folder has no readable config: a checkpoint is best asked as it was trained."""
    from acpo.config import read_yaml
    from acpo.prompts import PromptStyle

    try:
        cfg = read_yaml(Path(run_dir) / CONFIG)
        return PromptStyle(bool(cfg.get("chat_template", True)), str(cfg.get("system_prompt") or ""),
                           str(cfg.get("instruction") or ""), str(cfg.get("answer_format") or "####"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def numbered(folder: Path, suffix: str = "") -> list[tuple[int, Path]]:
    """(N, path) of the ``step-N`` folders in ``folder`` (with ``suffix``: the ``step-N<suffix>`` files), by N."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if suffix and (p.suffix != suffix or p.is_dir()) or not suffix and not p.is_dir():
            continue
        n = step_of(p.name.removesuffix(suffix) if suffix else p.name)
        if n is not None:
            out.append((n, p))
    return sorted(out)


class RunFolderBusy(ValueError):
    """Another process holds the run folder's lock."""


class RunFinished(ValueError):
    """``--resume`` of a run that already finished: nothing to do, and nothing is changed."""


class RunWriteError(OSError):
    """A write into a run folder failed (a full disk, a quota, permissions); the message says where and why."""


# ---------------------------------------------------------------------------------------- one writer


class RunLock:
    """An exclusive lock on a run folder, held from the first write until the run ends.

    ``flock`` on ``<run>/.lock``: the kernel drops it when the holder exits,
    even on ``kill -9``, so a stale lock file never blocks a later run. The
    file holds the holder's PID, which a refused second writer is told.
    """

    def __init__(self, run_dir: Path):
        self.run_dir, self.fd = Path(run_dir), None
        if fcntl is None:
            return
        path = self.run_dir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(
                f"run folder '{self.run_dir}' is being written by process {holder} (it holds {path}); "
                "wait for that run to end or stop it, or pick another --run-name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __del__(self):  # a trainer dropped without train() (the benches) frees its folder too
        if fcntl is not None:  # None late in interpreter shutdown, when the kernel frees the lock anyway
            self.release()


def lock_run_folder(run_dir: Path, fresh: bool, overwrite: bool = False) -> RunLock:
    """Lock ``run_dir`` for writing; a ``fresh`` run's folder is made, and checked again under the lock."""
    if fresh:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_failed(err, run_dir.parent, f"run folder '{run_dir.name}'") from err
    lock = RunLock(run_dir)
    problem = run_dir_problem(run_dir, overwrite) if fresh else None
    if problem:
        lock.release()
        raise ValueError(problem)
    return lock


# ---------------------------------------------------------------------------------------- the folder


def claim_run_folder(output_dir: str, name: str, resume: str | None, overwrite: bool, steps: int,
                     is_main: bool, share: Callable = lambda value: value) -> Path:
    """``resume``'s folder, or ``output_dir/name``: new, empty, or (with ``overwrite``) a run to start afresh.

    The main process checks it and ``share`` hands its verdict to the others (every
    process agrees); with ``overwrite`` the old contents go later (``start_run_folder``).
    """
    if resume:
        if overwrite:
            raise ValueError(f"--resume '{resume}' continues that run and --overwrite deletes it: pass one")
        done = finished_at(Path(resume))
        if done is not None and steps <= done:
            raise RunFinished(f"run '{resume}' finished at step {done} (it has summary.json): nothing to "
                              f"resume, nothing changed; to train it further pass --steps N with N > {done}")
        return Path(resume)
    run_dir = Path(output_dir) / name
    problem = share(run_dir_problem(run_dir, overwrite) if is_main else None)
    if problem:
        raise ValueError(problem)
    return run_dir


def lock_shared(run_dir: Path, fresh: bool, overwrite: bool, is_main: bool,
                share: Callable = lambda value: value) -> RunLock | None:
    """The main process, the one writer, locks the run folder (a fresh run's is made); the others get None.

    A failure on the main process is raised on every process (``share`` hands its message over).
    """
    lock, error = None, None
    if is_main:
        try:
            lock = lock_run_folder(run_dir, fresh=fresh, overwrite=overwrite)
        except (ValueError, OSError) as err:
            error = err
    message = share(None if error is None else str(error))
    if error is not None:
        raise error
    if message:
        raise ValueError(message)
    return lock


def resume_command(run_dir: Path, processes: int) -> str:
    """The command that continues the run in ``run_dir``."""
    launcher = "python" if processes == 1 else f"accelerate launch --num_processes {processes}"
    return f"{launcher} train.py --resume {shlex.quote(str(run_dir))}"


def start_run_folder(run_dir: Path, config_text: str, overwrite: bool) -> None:
    """A fresh run's folder: emptied with ``overwrite``, then checkpoints/, traces/ and config.yaml."""
    if overwrite:
        empty_folder(run_dir)
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
    (run_dir / TRACES).mkdir(exist_ok=True)
    write_text_atomic(run_dir / CONFIG, config_text, "config.yaml")


def run_dir_problem(run_dir: Path, overwrite: bool) -> str | None:
    """Why a fresh run cannot start in ``run_dir`` (None: it can)."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return f"run folder '{run_dir}' is a file; pick another --run-name or --output-dir"
    if not [p for p in run_dir.iterdir() if p.name != LOCK]:
        return None
    if not overwrite:
        return (f"run folder '{run_dir}' already exists; continue it with --resume {run_dir}, start it afresh "
                "with --overwrite (deletes its contents), or pick another --run-name")
    if not any((run_dir / name).exists() for name in (CONFIG, CHECKPOINTS, METRICS)):
        return (f"--overwrite will not empty '{run_dir}': it does not look like a run folder (no config.yaml, "
                "checkpoints/ or metrics.jsonl); delete it yourself or pick another --run-name")
    return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """checkpoints/step-N folders, oldest first (not .tmp-step-N or .old-step-N, the leftovers of a write).

    Both backends write this layout (TRL's: weights and tokenizer only, safetensors).
    """
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / CHECKPOINTS).glob("step-*")
             if p.is_dir() and (m := re.fullmatch(r"step-(\d+)", p.name))]
    return [p for _, p in sorted(found)]


def empty_folder(folder: Path) -> None:
    """Delete what ``folder`` holds, except its lock (whose holder is the caller)."""
    for child in folder.iterdir() if folder.exists() else []:
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def finished_at(run_dir: Path) -> int | None:
    """The step a finished run ended at (its summary.json), or None for a run that has not finished."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["steps"])
    except (ValueError, KeyError, TypeError):
        return None  # a summary cut short: not a finished run


# ---------------------------------------------------------------------------------------- writing


def free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MB"
    except OSError:
        return "unknown space"


def write_failed(err: BaseException, folder: Path, what: str) -> RunWriteError:
    """A RunWriteError for a failed write of ``what`` into ``folder``: the reason and the space left."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "StorageFull" in text:
        reason = "disk full"
    else:
        reason = getattr(err, "strerror", None) or text
    return RunWriteError(f"could not write {what} in '{folder}': {reason} ({free_space(folder)} free there); "
                         "free some space (or pick another --output-dir) and --resume the run")


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None], what: str) -> None:
    """``write(tmp)``, flush it to the disk, then rename it to ``path``: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except (OSError, RuntimeError) as err:  # pyarrow and torch raise RuntimeError subclasses for I/O too
        tmp.unlink(missing_ok=True)
        raise write_failed(err, path.parent, what) from err


def write_text_atomic(path: Path, text: str, what: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text), what)


# ---------------------------------------------------------------------------------------- metrics


def _metric_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """(line, row) for every line of a metrics file that holds a whole JSON object."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill or a full disk, or a blank one
            continue
        if isinstance(row, dict):
            yield line, row


def read_metrics(run_dir_or_file: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl in file order; lines that are not a whole JSON object are skipped.

    The one reader of the log for the trainer, the app and the benches: a run
    still writing, or one cut off by a kill or a full disk, leaves a torn last
    line, and that must not make the run unreadable.
    """
    path = Path(run_dir_or_file)
    path = path / METRICS if path.is_dir() else path
    return [row for _, row in _metric_lines(path)] if path.is_file() else []


def append_metrics(run_dir: Path, row: dict) -> None:
    """One line onto metrics.jsonl, flushed to the disk (a step's log survives a crash after it)."""
    path = Path(run_dir) / METRICS
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise write_failed(err, path.parent, f"metrics of step {row.get('step')}") from err


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Keep the rows up to ``step`` (a resumed run goes on from there) and drop torn lines."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return
    keep = [line for line, row in _metric_lines(path) if row.get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep), "metrics")


def eval_at(rows: list[dict], which: str, key: str = "eval/pass@1") -> float:
    """``key`` of the ``first`` or ``last`` row that has it (NaN if none does)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return float("nan")
    return values[0] if which == "first" else values[-1]


# ---------------------------------------------------------------------------------------- summary


def strict_json(value):
    """``value`` with every NaN/inf float replaced by None, so that ``json.dumps`` writes standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def run_summary(run_dir: Path, end_greedy: float, end_sampled: float, resumed_from: int | None, wall_s: float,
                steps: int, processes: int, checksums: list[str]) -> dict:
    """What summary.json holds; the start figures are the run's first evaluation, also after a resume."""
    logged = read_metrics(run_dir)
    return {"run_dir": str(run_dir), "start_pass@1": eval_at(logged, "first"), "end_pass@1": end_greedy,
            "start_pass@1_sampled": eval_at(logged, "first", "eval/pass@1_sampled"), "end_pass@1_sampled": end_sampled,
            "resumed_from_step": resumed_from, "wall_s": wall_s, "steps": steps, "processes": processes,
            "param_checksums": checksums}


def write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json, which marks the run finished: standard JSON (unknown numbers are null)."""
    text = json.dumps(strict_json(summary), indent=2, allow_nan=False)
    write_text_atomic(Path(run_dir) / SUMMARY, text, "summary.json")


# ---------------------------------------------------------------------------------------- trackers


def start_trackers(acc, names: list[str], run_dir: Path, resume: bool, config: dict) -> None:
    """accelerate's trackers for --report-to: tensorboard in the run folder, trackio / wandb runs named after it.

    Made once the run folder is known and handed to accelerate as its own;
    ``Accelerator.log`` then writes to each.
    """
    names = [n for n in names if n != "none"]
    if not names:
        return
    from accelerate.tracking import TensorBoardTracker, TrackioTracker, WandBTracker

    project = os.environ.get("ACPO_PROJECT", "acpo")
    make = {"tensorboard": lambda: TensorBoardTracker("tensorboard", str(run_dir)),
            "trackio": lambda: TrackioTracker(project, name=run_dir.name),
            "wandb": lambda: WandBTracker(project, name=run_dir.name, resume="allow" if resume else None)}
    acc.log_with = [make[n]() for n in names]
    acc.init_trackers(project, config={k: ",".join(map(str, v)) if isinstance(v, list) else v
                                       for k, v in config.items()})
