"""Bad input gets a clear error, and nothing is lost: run folders, NaN loss, Ctrl-C / SIGTERM, killed writes."""

import errno
import hashlib
import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import acpo.checkpoint
import acpo.evaluation
import acpo.loss
import acpo.runs
from acpo.config import make_config
from acpo.runs import RunWriteError
from acpo.loss import NonFiniteLossError
from acpo.trainer import Trainer, run

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"recipe": "grpo", "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 12, "eval_problems": 4,
         "trace_problems": 1, "pool_size": 50}


def config(tmp_path, name, **kw):
    return make_config({**SMALL, "output_dir": str(tmp_path), "run_name": name, **kw})


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def logged_steps(run_dir) -> list[int]:
    return [json.loads(l)["step"] for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def nan_at_call(monkeypatch, k: int, effect=None):
    """policy_loss returns NaN from its k-th call on (one call per step here: micro_batch_size > batch)."""
    calls = []
    real = acpo.loss.policy_loss

    def patched(*args, **kwargs):
        calls.append(1)
        loss, metrics = real(*args, **kwargs)
        if len(calls) >= k:
            if effect:
                effect()
            return loss * float("nan"), metrics
        return loss, metrics

    monkeypatch.setattr(acpo.loss, "policy_loss", patched)


def load_train_py():
    spec = importlib.util.spec_from_file_location("train_cli", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- run folders
def test_existing_run_folder_is_refused_unless_resume_or_overwrite(tmp_path):
    first = run(config(tmp_path, "r", steps=2))
    ck = Path(first["run_dir"]) / "checkpoints"
    before = hashes(ck)
    with pytest.raises(ValueError, match=r"already exists.*--resume.*--overwrite"):
        run(config(tmp_path, "r", steps=1))
    assert hashes(ck) == before  # the refusal touched nothing

    again = run(config(tmp_path, "r", steps=1, overwrite=True))
    assert again["run_dir"] == first["run_dir"]
    assert sorted(p.name for p in ck.iterdir()) == ["step-1"]  # step-2 of the old run is gone
    assert logged_steps(again["run_dir"]) == [0, 1]  # the old metrics too, not appended to
    assert "overwrite: false" in (Path(again["run_dir"]) / "config.yaml").read_text()  # so --resume works


def test_overwrite_and_resume_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--resume .* --overwrite"):
        run(config(tmp_path, "r", steps=1, resume=str(tmp_path / "r"), overwrite=True))


def test_overwrite_will_not_empty_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="does not look like a run folder"):
        run(config(tmp_path, "notes", steps=1, overwrite=True))
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"


# ---------------------------------------------------------------- NaN / inf
def test_nan_loss_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(config(tmp_path, "nan", steps=4, save_every=1))
    ck = trainer.run_dir / "checkpoints"
    seen = {}
    nan_at_call(monkeypatch, 3, effect=lambda: seen.setdefault("step-2", hashes(ck / "step-2")))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train()
    message = str(err.value)
    assert message.startswith("loss is NaN at step 3;")
    assert f"the last good checkpoint is {ck / 'step-2'}" in message
    assert f"(resume with: python train.py --resume {trainer.run_dir})" in message
    assert hashes(ck / "step-2") == seen["step-2"]  # written before step 3 began, untouched after
    assert sorted(p.name for p in ck.iterdir()) == ["step-1", "step-2"]
    assert logged_steps(trainer.run_dir) == [0, 1, 2]
    # the optimizer step was not taken: the weights are still those of step 2
    saved = load_file(str(ck / "step-2" / "model.safetensors"))
    live = trainer.policy.state_dict()
    assert all(torch.equal(saved[k], live[k]) for k in saved)


def test_train_py_reports_a_nan_loss_in_one_line(tmp_path, monkeypatch, capsys):
    nan_at_call(monkeypatch, 1)
    cli = load_train_py()
    rc = cli.main(["--recipe", "grpo", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
                   "--max-new-tokens", "12", "--eval-problems", "4", "--trace-problems", "0", "--pool-size", "50",
                   "--output-dir", str(tmp_path), "--run-name", "nan"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "train.py: error: loss is NaN at step 1;" in err and "no checkpoint was written yet" in err
    assert "Traceback" not in err
    assert list((tmp_path / "nan" / "checkpoints").iterdir()) == []


def test_a_nan_gradient_is_caught_by_the_gradient_norm(tmp_path):
    trainer = Trainer(config(tmp_path, "nang", steps=2, trace_problems=0))
    param = next(p for p in trainer.model.parameters() if p.requires_grad)
    param.register_hook(lambda grad: torch.full_like(grad, float("nan")))  # a finite loss, a NaN gradient
    before = param.detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"^gradient norm is NaN at step 1;"):
        trainer.train()
    assert torch.equal(param.detach(), before)


# ---------------------------------------------------------------- Ctrl-C / SIGTERM
def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_returns(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    calls = []
    real = acpo.loss.policy_loss

    def ctrl_c_during_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(acpo.loss, "policy_loss", ctrl_c_during_step_2)
    summary = run(config(tmp_path, "int", steps=4))  # save_every=0: only the signal makes step-2 a checkpoint
    assert summary["stopped_by"] == "SIGINT" and summary["steps"] == 2
    assert summary["resume_command"] == f"python train.py --resume {tmp_path / 'int'}"
    assert sorted(p.name for p in (tmp_path / "int" / "checkpoints").iterdir()) == ["step-2"]
    assert not (tmp_path / "int" / "summary.json").exists()  # not a finished run
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_a_second_ctrl_c_aborts_at_once(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    nan_free = acpo.loss.policy_loss

    def two_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return nan_free(*args, **kwargs)

    monkeypatch.setattr(acpo.loss, "policy_loss", two_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path, "abort", steps=3, save_every=1))
    assert list((tmp_path / "abort" / "checkpoints").iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before


def wait_for_step(run_dir: Path, step: int, proc, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"train.py exited early: {proc.communicate()}")
        path = run_dir / "metrics.jsonl"
        if path.exists() and any(json.loads(l)["step"] >= step for l in path.read_text().splitlines() if l.strip()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} logged in {timeout}s")


def test_sigterm_mid_run_checkpoints_exits_0_and_resume_finishes(tmp_path):
    args = ["--method", "grpo", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "12",
            "--eval-problems", "4", "--trace-problems", "0", "--pool-size", "50", "--eval-every", "1000"]
    run_dir = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, "--steps", "500",
                             "--output-dir", str(tmp_path), "--run-name", "term"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for_step(run_dir, 2, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM: finishing step" in err and "Traceback" not in err
    assert f"resume with: python train.py --resume {run_dir}" in out
    stopped = int(re.search(r"stopped by SIGTERM after step (\d+)", out).group(1))
    assert 2 <= stopped < 500
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step-{stopped}"]
    assert logged_steps(run_dir) == list(range(stopped + 1))

    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(run_dir),
                           "--steps", str(stopped + 1)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == stopped + 1
    assert logged_steps(run_dir) == list(range(stopped + 2))


# ---------------------------------------------------------------- killed checkpoint writes
def test_leftover_of_a_killed_write_is_ignored_and_cleaned(tmp_path):
    first = run(config(tmp_path, "kill", steps=2, save_every=1, trace_problems=0))
    ck = Path(first["run_dir"]) / "checkpoints"
    # kill -9 while writing step 3: a temp folder with part of the files, a truncated weights file
    partial = ck / ".tmp-step-3"
    partial.mkdir()
    (partial / "config.json").write_bytes((ck / "step-2" / "config.json").read_bytes())
    (partial / "model.safetensors").write_bytes((ck / "step-2" / "model.safetensors").read_bytes()[:100])
    resumed = run(config(tmp_path, "kill", steps=3, trace_problems=0, resume=first["run_dir"]))
    assert resumed["steps"] == 3
    assert logged_steps(first["run_dir"]) == [0, 1, 2, 3]  # went on from step-2
    assert sorted(p.name for p in ck.iterdir()) == ["step-1", "step-2", "step-3"]  # leftover gone


def test_a_full_disk_during_a_checkpoint_says_so_and_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    trainer = Trainer(config(tmp_path, "fail", steps=1, trace_problems=0))
    trainer.train()
    ck = trainer.run_dir / "checkpoints"
    before = hashes(ck / "step-1")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(acpo.checkpoint, "save_file", disk_full)
    with pytest.raises(RunWriteError, match=rf"^could not write checkpoint step-1 in '{ck}': disk full "
                                            r"\(\d+\.\d MB free there\)"):
        trainer.save_checkpoint()  # re-writing step-1 (as after a resume from an earlier checkpoint)
    assert hashes(ck / "step-1") == before
    assert sorted(p.name for p in ck.iterdir()) == ["step-1"]  # the partial copy is gone, its space freed
    monkeypatch.undo()
    trainer.state.step = 7  # the next save cleans the leftover up
    trainer.save_checkpoint()
    assert sorted(p.name for p in ck.iterdir()) == ["step-1", "step-7"]


def test_rewriting_a_step_is_never_left_half_deleted(tmp_path, monkeypatch):
    trainer = Trainer(config(tmp_path, "swap", steps=1, trace_problems=0))
    trainer.train()
    ck = trainer.run_dir / "checkpoints"
    real_rmtree = shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):  # kill -9 after rmtree removed one file
        next(f for f in Path(path).rglob("*") if f.is_file()).unlink()
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(acpo.checkpoint.shutil, "rmtree", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()  # re-writing step-1: the old one may only go once the new one is in place
    assert acpo.checkpoint.missing_files(ck / "step-1", lora=False) == []
    assert acpo.checkpoint.newest_checkpoint(trainer.run_dir, lora=False)[0] == ck / "step-1"
    monkeypatch.setattr(acpo.checkpoint.shutil, "rmtree", real_rmtree)
    trainer.state.step = 2
    trainer.save_checkpoint()
    assert sorted(p.name for p in ck.iterdir()) == ["step-1", "step-2"]  # the half-deleted old copy cleaned up


def test_resume_skips_an_incomplete_last_checkpoint_with_a_warning(tmp_path):
    first = run(config(tmp_path, "cut", steps=2, save_every=1, trace_problems=0))
    ck = Path(first["run_dir"]) / "checkpoints"
    (ck / "step-2" / "trainer_state.json").unlink()  # e.g. a copy of the run folder cut short
    with pytest.warns(UserWarning, match=r"step-2 \(missing trainer_state.json\): resuming from .*step-1"):
        resumed = run(config(tmp_path, "cut", steps=3, save_every=1, trace_problems=0, resume=first["run_dir"]))
    assert resumed["steps"] == 3
    assert logged_steps(first["run_dir"]) == [0, 1, 2, 3]
    assert (ck / "step-2" / "trainer_state.json").exists()  # step 2 redone and saved whole
    assert sorted(p.name for p in ck.iterdir()) == ["step-1", "step-2", "step-3"]


def test_resume_with_no_complete_checkpoint_says_so(tmp_path):
    first = run(config(tmp_path, "none", steps=1, trace_problems=0))
    (Path(first["run_dir"]) / "checkpoints" / "step-1" / "trainer_state.safetensors").unlink()
    with pytest.raises(ValueError, match=r"no complete checkpoint.*missing trainer_state.safetensors.*--overwrite"):
        run(config(tmp_path, "none", steps=2, resume=first["run_dir"]))


# ---------------------------------------------------------------- no pickle
class CreatesAFile:
    """Unpickling this calls open(path, "w"): any code could run in its place."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_never_unpickles_an_old_or_crafted_state_file(tmp_path):
    first = run(config(tmp_path, "pkl", steps=1, trace_problems=0))
    ck = Path(first["run_dir"]) / "checkpoints" / "step-1"
    marker = tmp_path / "code-ran"
    for name in ("trainer_state.json", "trainer_state.safetensors"):  # a checkpoint as earlier versions wrote it
        (ck / name).unlink(missing_ok=True)
    for name in ("trainer_state.pt", "rank_states.pt"):
        torch.save({"step": 1, "payload": CreatesAFile(str(marker))}, ck / name)
    with pytest.raises(ValueError, match=r"trainer_state.pt, rank_states.pt, a pickle, which this version never "
                                         rf"loads .* start a new run from them with --model {ck}"):
        run(config(tmp_path, "pkl", steps=2, trace_problems=0, resume=first["run_dir"]))
    assert not marker.exists()


def test_trainer_state_round_trips_through_safetensors_and_json(tmp_path):
    import random

    import numpy as np

    state = {"step": 3, "best": float("-inf"), "py_rng": random.getstate(), "np_rng": np.random.get_state(),
             "optimizer": {"state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.randn(3, 2)}},
                           "param_groups": [{"betas": (0.9, 0.999), "params": [0]}]},
             "shared": [torch.ones(2)] * 2, "none": None}
    tensors = {}
    data = json.loads(json.dumps(acpo.checkpoint.pack(state, tensors), allow_nan=False))
    back = acpo.checkpoint.unpack(data, tensors)
    assert back["step"] == 3 and back["best"] == float("-inf") and back["none"] is None
    assert back["py_rng"] == state["py_rng"]  # a tuple again: random.setstate accepts it
    assert all(np.array_equal(a, b) for a, b in zip(back["np_rng"], state["np_rng"]))
    assert list(back["optimizer"]["state"]) == [0] and back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    with pytest.raises(TypeError, match="cannot store a CreatesAFile"):
        acpo.checkpoint.pack({"x": CreatesAFile("x")}, {})


# ---------------------------------------------------------------- one writer per run folder
TRAIN_ARGS = ["--recipe", "grpo", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "12",
              "--eval-problems", "4", "--trace-problems", "0", "--pool-size", "50", "--eval-every", "1000"]


def test_a_second_writer_is_refused_with_the_pid_of_the_first(tmp_path):
    run_dir = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TRAIN_ARGS, "--steps", "500", "--save-every",
                             "1", "--output-dir", str(tmp_path), "--run-name", "busy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for_step(run_dir, 2, proc)  # step-1 is saved: a resume would find a checkpoint
        busy = rf"run folder '{run_dir}' is being written by process {proc.pid} "
        with pytest.raises(ValueError, match=busy):
            run(config(tmp_path, "busy", steps=500, trace_problems=0, resume=str(run_dir)))
        with pytest.raises(ValueError, match=busy):
            run(config(tmp_path, "busy", steps=500, trace_problems=0, overwrite=True))
        assert (run_dir / "config.yaml").exists()  # not wiped
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    steps = logged_steps(run_dir)
    assert steps == list(range(len(steps)))  # one history: no step logged twice
    # the first writer is gone: the folder is free again (the kernel dropped its lock)
    resumed = run(config(tmp_path, "busy", steps=steps[-1] + 1, trace_problems=0, resume=str(run_dir)))
    assert resumed["steps"] == steps[-1] + 1


# ---------------------------------------------------------------- robust resume
def test_a_torn_last_metrics_line_does_not_block_resume(tmp_path):
    first = run(config(tmp_path, "torn", steps=1, trace_problems=0))
    with open(Path(first["run_dir"]) / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "reward": 0.')  # a kill, or a full disk, in the middle of a line
    resumed = run(config(tmp_path, "torn", steps=2, trace_problems=0, resume=first["run_dir"]))
    assert resumed["steps"] == 2
    assert logged_steps(first["run_dir"]) == [0, 1, 2]


def test_the_app_and_the_benches_read_a_torn_log_with_the_same_reader(tmp_path):
    import app.loaders
    import bench.rl_report

    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "eval/pass@1": 0.5}\n{"step": 1, "time_s": 2.0}\n{"st')
    assert list(app.loaders.read_metrics(tmp_path / "metrics.jsonl")["step"]) == [0, 1]
    assert list(bench.rl_report.read_metrics(tmp_path)["seconds"]) == [0.0, 2.0]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    first = run(config(tmp_path, "bad", steps=2, save_every=1, trace_problems=0))
    weights = Path(first["run_dir"]) / "checkpoints" / "step-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # torn: the file is shorter than its header says
    with pytest.warns(UserWarning, match=rf"{re.escape(str(weights))} is unreadable .*: resuming from .*step-1"):
        resumed = run(config(tmp_path, "bad", steps=3, trace_problems=0, resume=first["run_dir"]))
    assert resumed["steps"] == 3
    assert logged_steps(first["run_dir"]) == [0, 1, 2, 3]


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    first = run(config(tmp_path, "done", steps=2, trace_problems=0))
    before = hashes(Path(first["run_dir"]))
    rc = load_train_py().main(["--resume", first["run_dir"]])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"run '{first['run_dir']}' finished at step 2 (it has summary.json): nothing to resume" in out
    assert "pass --steps N with N > 2" in out
    assert hashes(Path(first["run_dir"])) == before


def test_after_a_resume_the_summary_is_strict_json_and_reports_the_true_start(tmp_path):
    run(config(tmp_path, "start", steps=1, trace_problems=0, save_every=1))
    run_dir = tmp_path / "start"
    run(config(tmp_path, "start", steps=2, trace_problems=0, resume=str(run_dir)))  # train it one step further

    def no_nan(constant):
        raise AssertionError(f"summary.json holds {constant}, which is not JSON")

    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=no_nan)
    step0 = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert step0["step"] == 0
    assert summary["start_pass@1"] == step0["eval/pass@1"]
    assert summary["start_pass@1_sampled"] == step0["eval/pass@1_sampled"]
    assert (summary["steps"], summary["resumed_from_step"]) == (2, 1)


# ---------------------------------------------------------------- checks before the run folder exists
def test_a_dataset_row_longer_than_the_context_is_refused_before_the_folder_exists(tmp_path):
    data = tmp_path / "data.jsonl"
    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"},
            {"question": "3+" * 200 + "3?", "answer": "#### 603"}]  # 400+ tokens; the demo policy's context is 256
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"1 problem\(s\) leave no room to answer in the model's context of 256 "
                                         r"tokens with --max-new-tokens 12: .* \(\d+ tokens\)"):
        run(config(tmp_path, "long", steps=1, dataset=str(data), eval_problems=1))
    assert not (tmp_path / "long").exists()  # fixing the data needs no --overwrite


# ---------------------------------------------------------------- no non-finite weights saved
def test_weights_made_nan_by_the_optimizer_step_are_never_saved(tmp_path):
    trainer = Trainer(config(tmp_path, "inf", steps=3, save_every=1, trace_problems=0))
    for group in trainer.optimizer.param_groups:  # what --lr inf did: a finite loss and gradient, inf weights
        group["lr"] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"^weights became NaN/inf in the optimizer step of step 1 "
                                                 r".*no checkpoint was written yet"):
        trainer.train()
    assert list((trainer.run_dir / "checkpoints").iterdir()) == []
    with pytest.raises(ValueError, match="refusing to save checkpoint step-0: weights .* hold NaN/inf"):
        trainer.save_checkpoint()
    assert list((trainer.run_dir / "checkpoints").iterdir()) == []


# ---------------------------------------------------------------- a full disk
@pytest.mark.parametrize("where", ["metrics", "traces"])
def test_a_full_disk_while_logging_names_the_folder_and_its_free_space(tmp_path, monkeypatch, where):
    trainer = Trainer(config(tmp_path, "full", steps=1, trace_problems=1))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "metrics":
        monkeypatch.setattr(acpo.runs.os, "fsync", disk_full)
        what, folder = "metrics of step 0", trainer.run_dir
    else:
        monkeypatch.setattr(acpo.evaluation.pd.DataFrame, "to_parquet", disk_full)
        what, folder = "traces of step 0", trainer.run_dir / "traces"
    with pytest.raises(RunWriteError, match=rf"^could not write {what} in '{folder}': disk full \(\d+\.\d MB free "
                                            r"there\); free some space .* --resume"):
        trainer.train()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]


def test_checkpoint_files_reach_the_disk_before_the_rename_publishes_them(tmp_path, monkeypatch):
    trainer = Trainer(config(tmp_path, "sync", steps=1, trace_problems=0))
    final = trainer.run_dir / "checkpoints" / "step-0"
    synced = []
    real = acpo.checkpoint.fsync_path
    monkeypatch.setattr(acpo.checkpoint, "fsync_path", lambda p: (synced.append((p.name, final.exists())), real(p)))
    trainer.save_checkpoint()
    before_rename = {name for name, published in synced if not published}
    assert {"model.safetensors", "trainer_state.json", "trainer_state.safetensors", ".tmp-step-0"} <= before_rename
