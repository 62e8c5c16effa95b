"""bench/rl_compare.py across sittings: the real-demo preset's argv, runs killed outright (SIGKILL) resume exactly,
the sessions record, and the partial report."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bench.rl_compare as rc
from bench import rl_report, rl_runs
from acpo.config import parse_args

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

# A LoRA run of the demo policy with the preset's credit: small enough for seconds a run.
TINY_LORA = ["--recipe", "grpo", "--credit", "mean_logprob", "--lora-r", "4", "--lora-alpha", "8",
             "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "24", "--eval-problems", "4",
             "--trace-problems", "0", "--pool-size", "50", "--lr", "1e-3"]


# ---------------------------------------------------------------------------------------------- the preset


def test_the_real_demo_preset_is_grpo_against_mean_logprob_3_seeds_100_steps_200_problems(tmp_path):
    args = rc.build_parser().parse_args(["--suite", "real-demo", "--out", str(tmp_path)])
    variants, seeds, budget, extra = rc.plan(args)
    assert [v.name for v in variants] == ["grpo", "grpo-mean_logprob"] and seeds == [0, 1, 2] and budget == 0
    cfgs = {(v.name, s): parse_args(rc.train_argv(v, s, tmp_path, budget, extra)) for v in variants for s in seeds}
    for (name, seed), cfg in cfgs.items():
        assert cfg.recipe == "grpo" and cfg.seed == seed and cfg.run_name == f"{name}-s{seed}"
        assert Path(cfg.model).name == "real-demo-policy" and cfg.lora_r == 16
        assert (cfg.steps, cfg.max_rollout_tokens, cfg.prompts_per_step, cfg.group_size) == (100, 0, 2, 8)
        assert (cfg.eval_problems, cfg.eval_every, cfg.save_every, cfg.threads) == (200, 50, 5, 1)
        assert not cfg.dynamic_sampling  # both sample 2 x 8 completions a step: equal completions at equal steps
        assert cfg.credit == ("mean_logprob" if name == "grpo-mean_logprob" else "auto")
    # everything but the seed, the name and the credit is shared
    shared = {k: v for k, v in vars(cfgs[("grpo", 0)]).items() if k not in ("seed", "run_name", "credit")}
    assert all({k: v for k, v in vars(c).items() if k in shared} == shared for c in cfgs.values())


def test_extra_and_command_line_flags_win_over_the_preset(tmp_path):
    args = rc.build_parser().parse_args(["--suite", "real-demo", "--seeds", "1", "--save-every", "2",
                                         "--extra", "--steps 3 --eval-problems 4", "--out", str(tmp_path)])
    variants, seeds, budget, extra = rc.plan(args)
    cfg = parse_args(rc.train_argv(variants[0], 0, tmp_path, budget, extra))
    assert seeds == [0] and (cfg.steps, cfg.eval_problems, cfg.save_every, cfg.group_size) == (3, 4, 2, 8)


# ---------------------------------------------------------------------------------------------- SIGKILL

# train.py, killed outright (SIGKILL) while it writes checkpoint step-4: after the adapter, before the trainer state
KILLED_WHILE_SAVING_STEP_4 = r"""
import os, signal, sys
import acpo.checkpoint as ck
from acpo.cli import train_main
real = ck.save_file
def save_file(tensors, path, *args, **kwargs):
    if os.sep + ".tmp-step-4" + os.sep in path:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(tensors, path, *args, **kwargs)
ck.save_file = save_file
sys.exit(train_main(sys.argv[1:]))
"""


def train(*argv, code=None):
    cmd = [sys.executable, *(["-c", code] if code else [str(ROOT / "train.py")]), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)


def rows_without_times(run_dir):
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_killed_mid_checkpoint_resumes_from_the_last_whole_one_and_ends_as_if_never_killed(tmp_path):
    flags = [*TINY_LORA, "--steps", "6", "--save-every", "2", "--eval-every", "3", "--output-dir", str(tmp_path)]
    straight = train(*flags, "--run-name", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = train(*flags, "--run-name", "killed", code=KILLED_WHILE_SAVING_STEP_4)
    assert killed.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed"
    assert (run_dir / "checkpoints" / ".tmp-step-4").is_dir()  # the half-written one is there...
    assert [r["step"] for r in rows_without_times(run_dir)] == [0, 1, 2, 3, 4]  # ...with steps 3-4 logged
    assert rl_runs.has_checkpoint(run_dir) and rl_runs.saved_step(run_dir) == 2  # ...but step-2 is where it goes on from
    (run_dir / "metrics.jsonl").open("a").write('{"step": 5, "rew')  # and a line torn by the kill

    resumed = train(*flags, "--run-name", "killed", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # steps 3-6 redone with the restored optimizer, RNG and step count: the same numbers and the same weights
    assert rows_without_times(run_dir) == rows_without_times(tmp_path / "straight")
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-6" / "adapter_model.safetensors"))
    b = load_file(str(run_dir / "checkpoints" / "step-6" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (run_dir / "checkpoints" / ".tmp-step-4").exists()
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6


def wait_for(predicate, timeout_s: float, what: str, proc=None) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the bench ended before {what}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} in {timeout_s} s")


def test_a_bench_killed_outright_resumes_its_runs_and_counts_two_sessions(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--methods", "grpo", "--seeds", "1", "--budget", "0", "--save-every", "2", "--out", str(out),
            "--extra", " ".join([*TINY_LORA, "--steps", "12", "--eval-every", "6"])]
    bench = subprocess.Popen([sys.executable, str(ROOT / "bench" / "rl_compare.py"), *argv], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run_dir = out / "runs" / "grpo-s0"
    try:
        wait_for(lambda: rl_runs.saved_step(run_dir) >= 2, 300, "checkpoint step-2", bench)
    finally:
        os.killpg(bench.pid, signal.SIGKILL)  # the bench and its train.py, no chance to save anything
        bench.wait()
    assert not (run_dir / "summary.json").exists()
    saved = rl_runs.saved_step(run_dir)

    assert rc.main(argv) == 0  # the same command again
    log = (out / "logs" / "grpo-s0.log").read_text()
    assert f"--resume {run_dir}" in log
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(13))  # steps after the checkpoint redone once, none twice
    sessions = rl_runs.session_summary(rl_runs.read_sessions(out))
    assert [s["session"] for s in sessions] == [1, 2]
    assert sessions[0]["ended"] == "killed (last seen)" and sessions[1]["ended"] == "finished"
    assert sessions[1]["checkpointed steps gained (all runs)"] == 12 - saved
    printed = capsys.readouterr().out
    assert "2 sessions so far" in printed and "All 1 runs finished" in printed


def test_a_run_whose_bench_is_killed_saves_a_checkpoint_and_the_next_bench_waits_then_goes_on_from_it(tmp_path):
    out = tmp_path / "out"
    argv = ["--methods", "grpo", "--seeds", "1", "--budget", "0", "--out", str(out),  # no periodic checkpoints
            "--extra", " ".join([*TINY_LORA, "--steps", "16", "--eval-every", "1000"])]
    bench = subprocess.Popen([sys.executable, str(ROOT / "bench" / "rl_compare.py"), *argv], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = out / "runs" / "grpo-s0"
    try:
        wait_for(lambda: rl_runs.logged_step(run_dir) >= 1, 300, "step 1", bench)
    finally:
        bench.kill()  # the bench alone: its train.py goes on, orphaned, until it notices
        bench.wait()
    assert rl_runs.run_folder_holder(run_dir) is not None  # still training when the next bench starts

    assert rc.main(argv) == 0  # waits for the orphan to save and exit, then resumes from its checkpoint
    log = (out / "logs" / "grpo-s0.log").read_text()
    assert "SIGTERM: finishing step" in log and "interrupted" not in log  # one signal: a clean stop
    assert log.index("waiting for process") < log.index(f"--resume {run_dir}")
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == list(
        range(17))


def test_a_second_bench_on_the_same_folder_is_refused_while_the_first_trains(tmp_path):
    lock = rl_runs.lock_out_folder(tmp_path)
    try:
        with pytest.raises(SystemExit, match=f"process {os.getpid()}"):
            rl_runs.lock_out_folder(tmp_path)
    finally:
        lock.release()
    rl_runs.lock_out_folder(tmp_path).release()  # free again once released


# ---------------------------------------------------------------------------------------------- sessions record


def fake_run(runs_dir: Path, name: str, saved: list[int], logged: int, finished: bool = False) -> Path:
    """A LoRA run folder with complete checkpoints at `saved` and metrics rows 0..logged."""
    d = runs_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("lora_r: 16\nsteps: 100\n")
    for step in saved:
        ck = d / "checkpoints" / f"step-{step}"
        ck.mkdir(parents=True, exist_ok=True)
        for f in ("adapter_model.safetensors", "trainer_state.json", "trainer_state.safetensors"):
            (ck / f).write_text("")
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "time_s": 40.0}) + "\n"
                                             for s in range(logged + 1)))
    if finished:
        (d / "summary.json").write_text("{}")
    return d


def test_sessions_record_start_last_seen_end_and_the_steps_each_gained(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "grpo-s0", [5], 7)
    first = rl_runs.SessionLog(tmp_path, ["rl_compare.py"], heartbeat_s=0.05)
    fake_run(runs, "grpo-s0", [5, 10], 12)
    time.sleep(0.3)  # heartbeats see step-10
    first.stop.set()  # killed outright: no end line
    first.thread.join()
    fake_run(runs, "grpo-s0", [5, 10, 15], 15)  # session 2 starts from the kill's checkpoint... then finishes
    second = rl_runs.SessionLog(tmp_path, ["rl_compare.py"], heartbeat_s=60)
    fake_run(runs, "grpo-s0", [5, 10, 15], 20, finished=True)
    fake_run(runs, "grpo-s1", [5], 6)
    second.end("finished")
    with open(tmp_path / rl_runs.SESSIONS, "a") as f:
        f.write('{"session": 3, "event": "sta')  # torn by a kill
    table = rl_runs.session_summary(rl_runs.read_sessions(tmp_path))
    # session 1's process (this one) is alive and beat just now, but session 2 started after it: it was killed
    assert [(s["session"], s["ended"]) for s in table] == [(1, "killed (last seen)"), (2, "finished")]
    third = rl_runs.SessionLog(tmp_path, ["rl_compare.py"], heartbeat_s=60)  # the last session, alive: running
    assert rl_runs.session_summary(rl_runs.read_sessions(tmp_path))[-1]["ended"] == f"running (process {os.getpid()})"
    third.end("finished")
    assert table[0]["checkpointed steps gained (all runs)"] == 10 - 5
    assert table[1]["checkpointed steps gained (all runs)"] == (20 - 15) + 5  # a finished run counts its last step
    assert table[1]["saved steps per run at the end"] == "grpo-s0 20, grpo-s1 5"
    assert table[0]["last seen (UTC)"] >= table[0]["start (UTC)"]


# ---------------------------------------------------------------------------------------------- partial report


def eval_run(runs_dir: Path, name: str, evals: dict[int, tuple[float, float]], finished: bool) -> None:
    d = runs_dir / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("lora_r: 16\nsteps: 100\nlr: 0.0001\n")
    rows = [{"step": s, "time_s": 45.0, "rollout_tokens": 400 * s, "entropy": 0.2, "reward": 0.4,
             **({"eval/pass@1": evals[s][0], "eval/pass@1_sampled": evals[s][1]} if s in evals else {})}
            for s in range(max(evals) + 1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (d / "summary.json").write_text("{}")


def test_the_report_of_an_unfinished_comparison_is_marked_partial_with_paired_differences(tmp_path, capsys):
    runs = tmp_path / "runs"
    eval_run(runs, "grpo-s0", {0: (0.40, 0.30), 50: (0.45, 0.35), 100: (0.50, 0.40)}, True)
    eval_run(runs, "grpo-mean_logprob-s0", {0: (0.40, 0.30), 50: (0.50, 0.30), 100: (0.55, 0.45)}, True)
    eval_run(runs, "grpo-s1", {0: (0.42, 0.32), 50: (0.44, 0.30)}, False)
    eval_run(runs, "grpo-mean_logprob-s1", {0: (0.42, 0.32), 50: (0.47, 0.36)}, False)
    expected = [rl_runs.run_name(v, s) for v in ("grpo", "grpo-mean_logprob") for s in (0, 1, 2)]
    rl_report.report(tmp_path, expected)
    out = capsys.readouterr().out
    assert "PARTIAL RESULTS: 2 of 6 runs finished" in out
    assert "| grpo-s2 | not started |" in out and "| grpo-s1 | unfinished | 50 / 0 / 100 |" in out

    paired = {r["step"]: r for r in rl_report.paired_rows(runs, expected)}
    assert sorted(paired) == [0, 50, 100]
    assert paired[0]["greedy mean [95% CI]"] == "0.000 [0.000, 0.000]"  # same start: the pairing is right
    assert paired[100]["seeds paired"] == 1 and paired[100]["greedy mean [95% CI]"] == "0.050"  # no CI from 1
    # step 50, greedy: 0.50 - 0.45 and 0.47 - 0.44, mean 0.04, sd 0.02 / sqrt(2), t_{0.975, 1} = 12.706
    half = 12.706 * (0.02 / math.sqrt(2)) / math.sqrt(2)
    assert paired[50]["greedy mean [95% CI]"] == f"{0.04:.3f} [{0.04 - half:.3f}, {0.04 + half:.3f}]"
    assert paired[50]["greedy, per seed"] == "s0 +0.050, s1 +0.030"
    assert paired[50]["sampled, per seed"] == "s0 -0.050, s1 +0.060"
    assert "PARTIAL: the tables below read only the finished runs" in out  # the 2 finished runs' final table


def test_a_comparison_with_nothing_finished_reports_progress_only(tmp_path, capsys):
    eval_run(tmp_path / "runs", "grpo-s0", {0: (0.40, 0.30)}, False)
    assert rl_report.report(tmp_path, ["grpo-s0", "grpo-mean_logprob-s0"]).empty
    out = capsys.readouterr().out
    assert "PARTIAL RESULTS: 0 of 2 runs finished" in out and "No run has finished yet" in out
