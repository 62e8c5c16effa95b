"""The testbed: the running_total family's checker, the planted-slip demonstrations, the committed testbed policy,
and the testbed suite of bench/rl_compare.py."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

import bench.rl_compare as rc
from bench import rl_report
from acpo.config import parse_args
from acpo.recipe import credit_of, credit_options, load_problem_sets
from acpo.tasks import Problem, get_task, heldout_problems, make_problems
from acpo.tasks.running_total import TOTAL_RANGE
from acpo.testbed import (
    MIX,
    TESTBED_PATH,
    card_pass_at_1,
    is_planted_slip,
    load_testbed_policy,
    slipped_demonstration,
)

TASK = get_task("running_total")
LINE = re.compile(r"^(\d+)([-+])(\d)=(\d+)$")


def _problem(prompt: str, answer: str) -> Problem:
    return Problem(id="hand", family="running_total", level=1, prompt=prompt, answer=answer)


# --- the task family -------------------------------------------------------------------------------------------


def test_right_trace_passes_and_a_forgotten_borrow_is_flagged_at_its_step():
    # 52+3-8+4: 55, then 55-8 needs a borrow (5 < 8) = 47, then 51 (computed by hand)
    problem = _problem("Q: 52+3-8+4=?\n", "51")
    right = TASK.check(problem, "52+3=55\n55-8=47\n47+4=51\n#### 51")
    assert right.first_error is None and right.answer_correct
    slipped = TASK.check(problem, "52+3=55\n55-8=57\n57+4=61\n#### 61")  # borrow forgotten, then carried on
    assert slipped.first_error == 1 and not slipped.answer_correct
    assert slipped.step_char_spans[1] == (8, 15)


def test_a_skipped_operation_and_a_wrong_addition_are_flagged_too():
    problem = _problem("Q: 52+3-8+4=?\n", "51")
    assert TASK.check(problem, "52+3=55\n47+4=51\n#### 51").first_error == 1  # 55-8 skipped
    assert TASK.check(problem, "52+3=56\n56-8=48\n48+4=52\n#### 52").first_error == 0


def test_problems_are_long_one_digit_chains_whose_totals_stay_two_digit():
    for problem in TASK.generate(300, 1, seed=2):
        expression = problem.prompt.removeprefix("Q: ").removesuffix("=?\n")
        operands = re.findall(r"[-+](\d+)", expression)
        assert 8 <= len(operands) <= 12 and all(len(b) == 1 and b != "0" for b in operands)
        total = int(expression[:2])
        for op, b in re.findall(r"([-+])(\d)", expression):
            total += int(b) if op == "+" else -int(b)
            assert TOTAL_RANGE[0] <= total <= TOTAL_RANGE[1]
        assert int(problem.answer) == eval(expression) == total  # noqa: S307 (digits and + - only)


def test_running_total_has_its_own_heldout_pool_that_training_pools_exclude():
    pool = {p.prompt for p in heldout_problems(600, MIX)}
    assert len(pool) == 600 and all(p.startswith("Q: ") for p in pool)
    assert not pool & {p.prompt for p in make_problems(mix=MIX, n=2000, seed=0)}


# --- the planted slip ------------------------------------------------------------------------------------------


def test_planted_slip_appears_only_on_borrow_subtractions_at_the_configured_rate():
    rng, rate = random.Random(7), 0.3
    borrows = slipped = other_wrong = 0
    for problem in TASK.generate(1500, 1, seed=11):
        text = slipped_demonstration(problem, rng, rate)
        *lines, answer = text.split("\n")
        ops = re.findall(r"([-+])(\d)", problem.prompt.removeprefix("Q: ").removesuffix("=?\n")[2:])
        assert len(lines) == len(ops)
        written = int(problem.prompt[3:5])
        for line, (op, b) in zip(lines, ops):
            a, line_op, line_b, r = LINE.match(line).groups()
            assert (int(a), line_op, line_b) == (written, op, b)  # each step starts from the total written before
            exact = written + int(b) if op == "+" else written - int(b)
            borrow = op == "-" and written % 10 < int(b)  # brute force, independent of needs_borrow
            borrows += borrow
            if int(r) != exact:
                if borrow and int(r) == exact + 10:
                    slipped += 1
                else:
                    other_wrong += 1
            written = int(r)
        assert answer == f"#### {written}"
    assert other_wrong == 0 and borrows > 2000
    sd = (rate * (1 - rate) / borrows) ** 0.5
    assert abs(slipped / borrows - rate) < 4 * sd, (slipped, borrows)


def test_slip_rate_zero_is_the_reference_solution():
    for problem in TASK.generate(50, 1, seed=1):
        assert slipped_demonstration(problem, random.Random(0), 0.0) == problem.solution


def test_is_planted_slip_names_a_borrow_subtraction_ten_too_high():
    assert is_planted_slip("43-7=46") and not is_planted_slip("43-7=36")
    assert not is_planted_slip("47-3=54") and not is_planted_slip("43+7=60") and not is_planted_slip("#### 5")


# --- the committed policy --------------------------------------------------------------------------------------


def test_committed_testbed_policy_loads_and_writes_the_task_format():
    model, tokenizer = load_testbed_policy()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    config = json.loads((TESTBED_PATH / "build_config.json").read_text())
    assert 0 < config["slip_rate"] < 1
    n, figure = card_pass_at_1()
    assert n >= 100 and 0.0 < figure < 1.0
    problem = heldout_problems(1, MIX)[0]
    ids = tokenizer(problem.prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=128, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    result = TASK.check(problem, text)
    assert result.answer is not None and len(result.steps) >= 9  # 8-12 steps, then the answer line


def test_load_testbed_policy_names_the_build_command_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m acpo.testbed build"):
        load_testbed_policy(tmp_path)


# --- the RL comparison suite -----------------------------------------------------------------------------------


def test_testbed_suite_runs_the_credits_on_the_testbed_policy():
    variants = rc.select_variants("testbed", srpo=False, names=None)
    assert [v.name for v in variants] == ["grpo", "grpo-mean_logprob", "grpo-verified_steps", "acpo", "hapo",
                                          "grpo-mc_reset"]
    credits = {}
    for v in variants:
        argv = rc.train_argv(v, 3, rc.ROOT / "runs", 1000, [*rc.SUITE_FLAGS["testbed"], "--reset-samples", "2"])
        cfg = parse_args(argv)
        assert (cfg.model, cfg.tasks, cfg.max_new_tokens, cfg.seed) == ("assets/testbed-policy", "running_total:1",
                                                                        128, 3)
        credits[v.name] = credit_of(cfg)
    assert credits == {"grpo": "uniform", "grpo-mean_logprob": "mean_logprob", "grpo-verified_steps": "verified_steps",
                       "acpo": "info_gain", "hapo": "hapo", "grpo-mc_reset": "mc_reset"}
    mc = parse_args(rc.train_argv(variants[-1], 0, rc.ROOT / "runs", 1000, ["--reset-samples", "2"]))
    assert credit_options(mc, "#### ") == {"samples": 2, "max_new_tokens": 64, "seed": 0}
    _, evaluated, _ = load_problem_sets(parse_args(["--tasks", "running_total:1", "--eval-problems", "5"]))
    assert [p.prompt for p in evaluated] == [p.prompt for p in heldout_problems(5, MIX)]


def test_testbed_methods_can_be_picked_by_name():
    assert [v.name for v in rc.select_variants("methods", False, ["grpo-verified_steps", "grpo-mc_reset"])] == [
        "grpo-verified_steps", "grpo-mc_reset"]


def _write_run(runs, name, evals, tokens_per_step, credit_tokens=0):
    d = runs / name
    d.mkdir(parents=True)
    rows = [{"step": 0, "eval/pass@1": evals[0][0], "eval/pass@1_sampled": evals[0][1], "rollout_tokens": 0}]
    for s in range(1, max(evals) + 1):
        row = {"step": s, "time_s": 1.0, "entropy": 0.1, "rollout_tokens": s * tokens_per_step,
               "credit_rollout_tokens": credit_tokens}
        if s in evals:
            row.update({"eval/pass@1": evals[s][0], "eval/pass@1_sampled": evals[s][1]})
        rows.append(row)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text("{}")


def test_paired_differences_and_tokens_to_the_sampled_target(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "grpo-s0", {0: (0.9, 0.40), 2: (0.9, 0.50), 4: (0.9, 0.55)}, 100)  # 0.5 at 200 tokens
    _write_run(runs, "grpo-s1", {0: (0.9, 0.40), 2: (0.9, 0.45), 4: (0.8, 0.50)}, 100)  # at 400
    _write_run(runs, "grpo-mc_reset-s0", {0: (0.9, 0.40), 2: (1.0, 0.60), 4: (1.0, 0.70)}, 100, 50)  # at 200
    _write_run(runs, "grpo-mc_reset-s1", {0: (0.9, 0.40), 2: (0.9, 0.42), 4: (0.9, 0.45)}, 100, 50)  # never: 400
    table = rl_report.run_table(rl_report.load_runs(runs), target_sampled=0.5)
    tables = rl_report.paired_tables(table, 0.5)
    reach = {r["method"]: r for r in tables["reach_sampled"]}
    assert reach["grpo"]["per seed"] == "200, 400" and reach["grpo-mc_reset"]["reached"] == "1/2"
    assert reach["grpo-mc_reset"]["credit's own sampled tokens"] == "200" and reach["grpo"]["all sampled tokens"] == "400"
    (row,) = tables["paired"]
    # per-seed differences by hand: greedy (+0.1, +0.1), sampled (+0.15, -0.05), tokens (0, 0)
    assert row["seeds paired"] == 2 and row["Δ greedy [95% CI]"] == "+0.100 [+0.100, +0.100]"
    half = 12.706 * 0.2 / 2 ** 0.5 / 2 ** 0.5  # t_{0.975, 1} x sd / sqrt(2)
    assert row["Δ sampled [95% CI]"] == f"+0.050 [{0.05 - half:+.3f}, {0.05 + half:+.3f}]"
    assert row["Δ tokens to target [95% CI]"] == "0 [0, 0]"
    assert row["detectable Δ sampled"] == f"{(12.706 + 1.376) * 0.2 / 2:.3f}"  # sd of (0.15, -0.05) = 0.1414


def test_the_mc_reset_credits_own_sampling_is_logged_beside_the_rollout_budget(tmp_path):
    from acpo.config import make_config
    from acpo.trainer import run

    cfg = make_config({"recipe": "grpo", "credit": "mc_reset", "reset_samples": 1, "prompts_per_step": 1,
                       "group_size": 2, "max_new_tokens": 24, "eval_problems": 1, "trace_problems": 0,
                       "pool_size": 50, "steps": 2, "eval_every": 50, "output_dir": str(tmp_path), "run_name": "mc"})
    run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "mc" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "credit_rollout_tokens" in r]
    assert len(steps) == 2
    # every completion has at least one step boundary (the prompt alone), one continuation of 1-24 tokens each
    assert all(2 <= r["credit_rollout_tokens"] <= 2 * 24 * 24 for r in steps)
    assert all(r["rollout_tokens"] <= 2 * 24 * (i + 1) for i, r in enumerate(steps))  # not in the budget


def test_credit_fidelity_samples_the_testbed_from_its_own_heldout_pool():
    from bench.credit_fidelity import heldout_for

    _, tokenizer = load_testbed_policy()
    assert [p.prompt for p in heldout_for(tokenizer, "running_total:1")] == [p.prompt for p in heldout_problems(600, MIX)]
    with pytest.raises(ValueError, match="valid families"):
        heldout_for(tokenizer, "no_such_family:1")
