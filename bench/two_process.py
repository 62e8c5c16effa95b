"""Does a two-process run end cleanly every time? The DDP test's training, run N times, failures counted.

Each run is `tests/test_train.py::test_two_processes_end_with_identical_weights_and_one_lr_schedule`'s
command: `accelerate launch --num_processes 2 train.py --recipe grpo --steps 2 ...` on the demo policy,
CPU, gloo. A run passes when the launcher exits 0, summary.json holds two equal weight checksums, and
nothing on stderr says a process aborted ("terminate called", "SIGABRT", "Signal 6").

    python bench/two_process.py            # 10 runs
    python bench/two_process.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABORT = re.compile(r"terminate called|SIGABRT|Signal 6|core dumped", re.IGNORECASE)


def command(out_dir: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"),
            "--recipe", "grpo", "--steps", "2", "--prompts-per-step", "2", "--group-size", "4",
            "--max-new-tokens", "40", "--eval-problems", "6", "--trace-problems", "0", "--pool-size", "200",
            "--lr", "1e-3", "--warmup-steps", "4", "--output-dir", str(out_dir), "--run-name", name]


def one_run(out_dir: Path, i: int, timeout: int) -> dict:
    name = f"ddp-{i}"
    t0 = time.time()
    try:
        # faulthandler: a process that aborts prints every thread's Python stack, naming what was still running
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        out = subprocess.run(command(out_dir, name), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             env=env)
        rc, stderr = out.returncode, out.stderr
    except subprocess.TimeoutExpired as err:
        rc, stderr = "timeout", (err.stderr or b"").decode(errors="replace") if isinstance(err.stderr, bytes) else ""
    summary = out_dir / name / "summary.json"
    checksums = json.loads(summary.read_text()).get("param_checksums", []) if summary.exists() else []
    aborted = bool(ABORT.search(stderr))
    ok = rc == 0 and len(checksums) == 2 and len(set(checksums)) == 1 and not aborted
    why = "" if ok else (ABORT.search(stderr).group(0) if aborted else
                         "no summary.json" if not checksums else "weights differ" if len(set(checksums)) > 1
                         else (stderr.strip().splitlines() or ["?"])[-1][:80])
    if not ok:  # the whole stderr of a failed run, for its stacks
        log = ROOT / "bench" / "out" / f"two_process_fail_{i + 1}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(stderr)
        why += f" (stderr: {log.relative_to(ROOT)})"
    return {"run": i + 1, "rc": rc, "seconds": time.time() - t0, "passed": ok, "why": why}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="two-process-") as out:
        for i in range(args.runs):
            rows.append(one_run(Path(out), i, args.timeout))
            r = rows[-1]
            print(f"run {r['run']}: rc {r['rc']}, {r['seconds']:.0f} s, {'pass' if r['passed'] else 'FAIL ' + r['why']}",
                  file=sys.stderr, flush=True)
    print("| run | return code | seconds | result |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['rc']} | {r['seconds']:.0f} | {'pass' if r['passed'] else 'FAIL: ' + r['why']} |")
    failed = sum(not r["passed"] for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
