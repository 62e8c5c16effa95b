"""The runs of an RL comparison (`bench/rl_compare.py`) and how they outlive one sitting.

What a comparison is made of (its variants, the order the report lists them in) and how a run
folder is named; a run's checkpoints and progress; the wrapper that stops a run when its bench
dies; OUT/sessions.jsonl, one line per invocation and heartbeat; and the out-folder lock that
keeps two benches from training the same runs.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Variant:
    """One line of the comparison: a name (run folders are `<name>-s<seed>`) and its train.py flags."""

    name: str
    flags: tuple[str, ...]


METHODS = [Variant(m, ("--recipe", m))
           for m in ("grpo", "dr_grpo", "entropy_mask", "hapo", "acpo", "rrpo", "attr_reset")]
SRPO = Variant("srpo", ("--recipe", "srpo"))  # optional: the demo policy cannot name its wrong step
CREDITS = [  # other registered credits, and the information gain's readings, in the trainer's loss
    Variant("grpo-mean_logprob", ("--recipe", "grpo", "--credit", "mean_logprob")),
    Variant("acpo-contrast", ("--recipe", "acpo", "--acpo-target", "contrast")),
]
ABLATIONS = [
    Variant("acpo-seg-lines", ("--recipe", "acpo", "--segmentation", "lines")),
    Variant("acpo-seg-entropy", ("--recipe", "acpo", "--segmentation", "entropy")),
    Variant("acpo-additive", ("--recipe", "acpo", "--composition", "additive")),
    Variant("acpo-one-stage", ("--recipe", "acpo", "--two-stage", "false")),
    Variant("acpo-no-curriculum", ("--recipe", "acpo", "--curriculum", "false")),
    Variant("acpo-conf-0.5", ("--recipe", "acpo", "--conf-gamma", "0.5")),  # METHODS.md's confidence reward
]
TESTBED = [Variant("grpo", ("--recipe", "grpo")),
           Variant("grpo-mean_logprob", ("--recipe", "grpo", "--credit", "mean_logprob")),
           Variant("grpo-verified_steps", ("--recipe", "grpo", "--credit", "verified_steps")),
           Variant("acpo", ("--recipe", "acpo")),
           Variant("hapo", ("--recipe", "hapo")),
           # the expensive oracle: M continuations after every step boundary of every completion; its
           # continuation tokens are not in the budget (logged as credit_rollout_tokens, reported beside)
           Variant("grpo-mc_reset", ("--recipe", "grpo", "--credit", "mc_reset"))]
ORDER = ([v.name for v in METHODS] + [SRPO.name] + [v.name for v in ABLATIONS] + [v.name for v in CREDITS]
         + [v.name for v in TESTBED if v.name not in {"grpo", "acpo", "hapo", "grpo-mean_logprob"}])


# ---------------------------------------------------------------------------------------------- run folders

def run_name(variant: str, seed: int) -> str:
    return f"{variant}-s{seed}"


def split_run_name(name: str) -> tuple[str, int]:
    """'acpo-seg-lines-s2' -> ('acpo-seg-lines', 2)."""
    variant, _, seed = name.rpartition("-s")
    if not variant or not seed.isdigit():
        raise ValueError(f"run folder '{name}' is not named <method>-s<seed>")
    return variant, int(seed)


def resumable_checkpoints(run_dir: Path) -> list[Path]:
    """A run's complete checkpoints (weights, trainer and per-process state), oldest first: what `train.py
    --resume` can go on from.

    Their weights are the adapter for a LoRA run (`lora_r` > 0 in the run's config.yaml), else the whole model; a
    folder without a readable config.yaml has none. A checkpoint cut short by a kill is never one: the trainer
    writes `.tmp-step-N` and renames it only once every file is on the disk.
    """
    from acpo.checkpoint import complete_checkpoints
    from acpo.config import read_yaml

    try:
        lora = int(read_yaml(Path(run_dir) / "config.yaml").get("lora_r") or 0) > 0
    except (ValueError, TypeError):
        return []
    return complete_checkpoints(run_dir, lora=lora)


def has_checkpoint(run_dir: Path) -> bool:
    return bool(resumable_checkpoints(run_dir))


def saved_step(run_dir: Path) -> int:
    """The step of a run's newest complete checkpoint, where a resume goes on from (0: none)."""
    from acpo.runs import step_of

    found = resumable_checkpoints(run_dir)
    return (step_of(found[-1].name) or 0) if found else 0


def logged_step(run_dir: Path) -> int:
    """The last step in a run's metrics.jsonl (0: none); steps after its last checkpoint are redone on resume."""
    from acpo.runs import read_metrics as read_rows

    return max((int(r.get("step", 0)) for r in read_rows(run_dir)), default=0)


# A run's train.py stops when its bench dies, however the bench dies: a thread sends it one SIGTERM once its parent
# is gone, so it finishes its step, saves a checkpoint and exits, rather than train on unwatched holding its folder.
# (Not prctl's PR_SET_PDEATHSIG: that signal comes again each time the child is handed to another of the dying
# bench's threads, and a second SIGTERM makes the trainer abort without a checkpoint.)
ENDS_WITH_PARENT = """
import os, runpy, signal, sys, threading
def stop_when_orphaned(parent):
    while os.getppid() == parent:
        threading.Event().wait(2.0)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=stop_when_orphaned, args=(int(sys.argv[1]),), daemon=True).start()
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
def run_folder_holder(run_dir: Path) -> str | None:
    """The process holding a run folder's lock (`acpo.runs.RunLock`: a train.py writing it), None when none does."""
    from acpo.runs import LOCK, RunFolderBusy, RunLock

    if not (Path(run_dir) / LOCK).exists():
        return None
    try:
        RunLock(run_dir).release()
        return None
    except RunFolderBusy:
        return (Path(run_dir) / LOCK).read_text().strip() or "unknown"


def wait_for_run_folder(run_dir: Path, timeout_s: float | None = None, poll_s: float = 2.0) -> bool:
    """Wait until no process holds the run folder's lock; False when one still does after `timeout_s`.

    A run whose bench died stops at the end of its step, which takes minutes on a busy CPU, or an hour at
    `nice 19` on a loaded one, so by default there is no timeout.
    """
    end = None if timeout_s is None else time.time() + timeout_s
    while run_folder_holder(run_dir) is not None:
        if end is not None and time.time() >= end:
            return False
        time.sleep(poll_s)
    return True


# ---------------------------------------------------------------------------------------------- sessions

SESSIONS = "sessions.jsonl"
HEARTBEAT_S = 120.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_progress(runs_dir: Path) -> dict[str, dict[str, int]]:
    """{run: {"saved": newest checkpoint's step, "logged": last logged step, "finished": 0/1}} of every run folder."""
    out = {}
    for d in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        if d.is_dir() and (d / "config.yaml").exists():
            finished = (d / "summary.json").exists()
            logged = logged_step(d)
            out[d.name] = {"saved": logged if finished else saved_step(d), "logged": logged, "finished": int(finished)}
    return out


class SessionLog:
    """OUT/sessions.jsonl: one invocation of the bench that trains is one session.

    It writes a `start` line, a `seen` line every `HEARTBEAT_S` seconds while it
    runs, and an `end` line when it returns; each carries every run's progress. A
    session killed outright (SIGKILL, the machine taken away) has no `end`: its
    last `seen` line is where it stopped.
    """

    def __init__(self, out: Path, argv: list[str], heartbeat_s: float = HEARTBEAT_S):
        self.path, self.runs_dir = Path(out) / SESSIONS, Path(out) / "runs"
        self.number = 1 + max((int(r.get("session", 0)) for r in read_sessions(out)), default=0)
        self.stop = threading.Event()
        self.write("start", command=shlex.join([sys.executable, *argv]), pid=os.getpid(), host=socket.gethostname())
        self.thread = threading.Thread(target=self.beat, args=(heartbeat_s,), daemon=True)
        self.thread.start()

    def write(self, event: str, **extra) -> None:
        row = {"session": self.number, "event": event, "time": now_iso(), **extra,
               "runs": run_progress(self.runs_dir)}
        torn = False
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(("\n" if torn else "") + json.dumps(row) + "\n")  # a line torn by a kill stays alone
            f.flush()
            os.fsync(f.fileno())

    def beat(self, every_s: float) -> None:
        while not self.stop.wait(every_s):
            try:
                self.write("seen")
            except OSError:  # a full disk must not kill the bench; the next beat tries again
                pass

    def end(self, status: str) -> None:
        self.stop.set()
        self.thread.join()
        self.write("end", status=status)


def read_sessions(out: Path) -> list[dict]:
    """The lines of OUT/sessions.jsonl (a line torn by a kill is skipped)."""
    from acpo.runs import read_metrics as read_rows

    path = Path(out) / SESSIONS
    return read_rows(path) if path.is_file() else []


def still_running(start: dict, last: dict) -> bool:
    """Whether a session with no `end` line is alive: its process exists on this host and beat recently."""
    if start.get("host") != socket.gethostname() or not start.get("pid"):
        return False
    try:
        os.kill(int(start["pid"]), 0)
    except (OSError, ValueError):
        return False
    age = (datetime.now(timezone.utc) - datetime.fromisoformat(last["time"])).total_seconds()
    return age < 3 * HEARTBEAT_S


def session_summary(rows: list[dict]) -> list[dict]:
    """One row per session: start, last sign of life, how it ended, checkpointed steps gained by every run."""
    by = {}
    for r in rows:
        by.setdefault(int(r.get("session", 0)), []).append(r)
    table = []
    for number, rs in sorted(by.items()):
        first, last = rs[0], rs[-1]
        if last.get("event") == "end":
            ended = last.get("status", "?")
        elif number == max(by) and still_running(first, last):  # the out-folder lock: only the last can be
            ended = f"running (process {first.get('pid')})"
        else:
            ended = "killed (last seen)"
        start_runs, end_runs = first.get("runs", {}), last.get("runs", {})
        gained = sum(max(0, v.get("saved", 0) - start_runs.get(k, {}).get("saved", 0)) for k, v in end_runs.items())
        hours = (datetime.fromisoformat(last["time"]) - datetime.fromisoformat(first["time"])).total_seconds() / 3600
        table.append({"session": number, "start (UTC)": first["time"], "last seen (UTC)": last["time"],
                      "hours": f"{hours:.2f}", "ended": ended, "checkpointed steps gained (all runs)": gained,
                      "saved steps per run at the end": ", ".join(f"{k} {v.get('saved', 0)}"
                                                                  for k, v in sorted(end_runs.items()))})
    return table


def lock_out_folder(out: Path):
    """Hold OUT/.lock while this bench trains there: a second bench on the same folder would run its runs twice."""
    from acpo.runs import RunFolderBusy, RunLock

    try:
        return RunLock(out)
    except RunFolderBusy:
        holder = (out / ".lock").read_text().strip() or "unknown"
        raise SystemExit(f"rl_compare.py: another rl_compare.py (process {holder}) is training in '{out}'; wait for "
                         "it to end or stop it (it resumes), then run this again") from None
