"""The trainer's config: help, presets, YAML, command-line precedence and clear errors."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from acpo.config import RECIPES, TrainConfig, make_config, parse_args
from acpo.rewards import REWARDS

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_field():
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True, check=True)
    for name in TrainConfig.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in out.stdout


def test_recipe_preset_then_yaml_then_cli(tmp_path):
    assert parse_args(["--recipe", "grpo"]).eps_high == 0.2  # preset
    assert parse_args(["--recipe", "acpo"]).eps_high == 0.28  # default
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("recipe: grpo\neps_high: 0.3\nlr: 0.001\ncurriculum: true\n")
    cfg = parse_args(["--config", str(cfg_file), "--lr", "0.002"])
    assert (cfg.recipe, cfg.eps_high, cfg.lr, cfg.curriculum) == ("grpo", 0.3, 0.002, True)
    assert parse_args(["--config", str(cfg_file), "--curriculum", "false"]).curriculum is False


def test_acpo_preset_turns_on_its_parts():
    cfg = make_config({"recipe": "acpo"})
    assert cfg.two_stage and cfg.curriculum and cfg.dynamic_sampling
    assert not make_config({"recipe": "grpo"}).two_stage


def test_method_is_the_old_name_of_recipe_in_yaml_on_the_command_line_and_in_old_run_folders(tmp_path):
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text("method: grpo\n")
    assert parse_args(["--method", "grpo"]) == parse_args(["--recipe", "grpo"]) == parse_args(["--config", str(cfg_file)])
    assert parse_args(["--method", "grpo"]).eps_high == 0.2  # the preset of the recipe it names
    with pytest.raises(ValueError, match="method is the old name for recipe: give one of them, not both"):
        parse_args(["--method", "grpo", "--recipe", "grpo"])
    # a run folder written before the rename resumes, and the command line may then name the new field
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("method: dr_grpo\nsteps: 3\n")
    assert parse_args(["--resume", str(run_dir)]).recipe == "dr_grpo"
    assert parse_args(["--resume", str(run_dir), "--recipe", "grpo"]).recipe == "grpo"
    assert "recipe: dr_grpo" in __import__("acpo.config").config.to_yaml(parse_args(["--resume", str(run_dir)]))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"recipe": "ppo"}, f"unknown recipe 'ppo'; valid: {', '.join(RECIPES)}"),
        ({"method": "ppo"}, f"unknown recipe 'ppo'; valid: {', '.join(RECIPES)}"),
        ({"group_size": 1}, "group_size must be at least 2"),
        ({"w_min": 1.5}, "need 0 < w_min < 1 < w_max"),
    ],
)
def test_bad_values_are_named(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(values)


def test_yaml_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearn_rate: 0.2\n")
    with pytest.raises(ValueError, match=r"unknown fields \['learn_rate'\]"):
        parse_args(["--config", str(bad)])
    bad.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(ValueError, match="learning_rate is TRL's name for lr: give one of them, not both"):
        parse_args(["--config", str(bad)])
    with pytest.raises(ValueError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="not a run folder"):
        parse_args(["--resume", str(tmp_path)])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    parse_args(["--config", str(path)])


# ---------------------------------------------------------------- YAML values are typed like the command line
def test_yaml_values_mean_what_the_same_flags_mean(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    # PyYAML reads 1e-5 as a string and "false"/"no" as true strings: each must mean what --flag VALUE means
    cfg_file.write_text('lr: 1e-5\ntrust_remote_code: "false"\noverwrite: "no"\nsteps: "3"\nwarmup_steps: 2\n')
    cfg = parse_args(["--config", str(cfg_file)])
    assert cfg.lr == 1e-5 and type(cfg.lr) is float
    assert cfg.trust_remote_code is False and cfg.overwrite is False
    assert (cfg.steps, cfg.warmup_steps) == (3, 2)
    assert cfg == parse_args(["--lr", "1e-5", "--trust-remote-code", "false", "--overwrite", "no", "--steps", "3",
                              "--warmup-steps", "2"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lr: fast", "lr: 'fast' is not a number"),
        ("steps: 2.5", "steps: 2.5 is not an integer"),
        ("steps: true", "steps: True is not an integer"),
        ("trust_remote_code: maybe", "trust_remote_code: 'maybe' is not true or false"),
        ("overwrite: [no]", "overwrite: [False] is not true or false"),
        ("run_name: null", "run_name: None is not text"),
        ("aggregation: mean", "aggregation: 'mean' is not one of token_mean, seq_mean_token_mean, dr_grpo"),
    ],
)
def test_a_wrong_yaml_type_is_one_line_naming_key_value_and_type(tmp_path, line, message):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(line + "\n")
    with pytest.raises(ValueError) as err:
        parse_args(["--config", str(cfg_file)])
    assert str(err.value) == f"config file '{cfg_file}': {message}"


def test_train_py_reports_a_wrong_yaml_type_in_one_line(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: fast\n")
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg_file)], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr == f"train.py: error: config file '{cfg_file}': lr: 'fast' is not a number\n"


# ---------------------------------------------------------------- impossible values, before anything is made
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": float("inf")}, "lr is inf; it must be a finite number"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm is nan; it must be a finite number"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be positive"),
        ({"micro_batch_size": 0}, "micro_batch_size must be at least 1, got 0"),
        ({"save_every": -1}, "save_every must be at least 0, got -1"),
        ({"lora_r": -4}, "lora_r must be at least 0, got -4"),
        ({"max_reasoning_steps": 0}, "max_reasoning_steps must be at least 1, got 0"),
        ({"max_steps": 0}, "steps must be at least 1, got 0"),
        ({"num_iterations": 0}, "num_iterations must be at least 1, got 0"),
        ({"eval_every": 0}, "eval_every must be at least 1, got 0"),
        ({"reward": "hash"}, f"unknown reward 'hash'; valid: auto, {', '.join(sorted(REWARDS))}, or module:function"),
        ({"reward": "acpo.nope:f"}, "reward 'acpo.nope:f': cannot import module 'acpo.nope'"),
        ({"reward": "acpo.rewards:nope"}, "reward 'acpo.rewards:nope': module 'acpo.rewards' has no function 'nope'"),
        ({"reward": "answer,format", "reward_weights": [1.0]}, "reward_weights has 1 weights for 2 reward functions"),
        ({"loss_type": "cispo"}, "loss_type: 'cispo' has no counterpart here; supported: grpo, dapo, bnpo, dr_grpo"),
        ({"scale_rewards": "batch"}, "scale_rewards: 'batch' has no counterpart here"),
        ({"report_to": ["none", "wandb"]}, "report_to: 'none' goes alone"),
        ({"report_to": "mlflow"}, "report_to: 'mlflow' is not one of none, tensorboard, trackio, wandb"),
        ({"segmentation": "line"}, "unknown segmentation 'line'"),
        ({"probe": ""}, "probe must not be empty"),
        ({"lr": "1e-5x"}, "lr: '1e-5x' is not a number"),
    ],
)
def test_impossible_values_are_refused_with_their_name(values, message):
    with pytest.raises(ValueError, match="^bad config: " + re.escape(message)):
        make_config(values)


def test_rollout_is_the_old_name_of_rollout_engine_and_says_so_once(tmp_path, monkeypatch):
    import acpo.config as config

    monkeypatch.setattr(config, "_warned_old_names", set())
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text("rollout: vllm\n")
    with pytest.warns(config.ConfigWarning, match="^--rollout is the old name of --rollout-engine; use that"):
        old = parse_args(["--rollout", "vllm"])
    with warnings.catch_warnings():  # once a process: the YAML file's old name is not said again
        warnings.simplefilter("error")
        assert old == parse_args(["--rollout-engine", "vllm"]) == parse_args(["--config", str(cfg_file)])
    assert old.rollout_engine == "vllm" and "rollout_engine: vllm" in config.to_yaml(old)
    with pytest.raises(ValueError, match="rollout is the old name for rollout_engine: give one of them, not both"):
        parse_args(["--rollout", "vllm", "--rollout-engine", "hf"])
    # every run folder written before the rename holds `rollout: hf`: it resumes without a word
    monkeypatch.setattr(config, "_warned_old_names", set())
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("rollout: vllm\nsteps: 3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_args(["--resume", str(run_dir)]).rollout_engine == "vllm"


def test_the_importance_weight_is_on_for_vllm_and_does_nothing_for_hf_rollouts():
    import acpo.config as config

    cfg = make_config({"rollout_engine": "vllm"})
    assert cfg.rollout_is_correction and cfg.rollout_is_cap == 3.0 and cfg.vllm_dtype == "bfloat16"
    with pytest.warns(config.ConfigWarning, match="rollout_is_cap = 2.0 applies to the vllm rollout engine only"):
        make_config({"rollout_is_cap": 2.0})
    with pytest.raises(ValueError, match="^bad config: rollout_is_cap must be at least 1"):
        make_config({"rollout_engine": "vllm", "rollout_is_cap": 0.5})
    trl = make_config({"rollout_engine": "vllm", "vllm_importance_sampling_correction": "false",
                       "vllm_importance_sampling_clip_max": 2.5})  # TRL's names
    assert (trl.rollout_is_correction, trl.rollout_is_cap) == (False, 2.5)


# ---------------------------------------------------------------- TRL's names
TRL_YAML = """\
num_generations: 4
max_completion_length: 32
beta: 0.1
epsilon: 0.1
loss_type: grpo
scale_rewards: none
max_steps: 7
learning_rate: 0.0001
save_steps: 2
"""
OURS = {"group_size": 4, "max_new_tokens": 32, "kl_coef": 0.1, "eps_low": 0.1, "eps_high": 0.1,
        "aggregation": "seq_mean_token_mean", "outcome": "dr_grpo", "steps": 7, "lr": 1e-4, "save_every": 2}


def test_trls_names_mean_our_fields_in_yaml_and_on_the_command_line(tmp_path):
    cfg_file = tmp_path / "trl.yaml"
    cfg_file.write_text(TRL_YAML)
    from_yaml = parse_args(["--config", str(cfg_file)])
    flags = [f"--{line.split(':')[0].replace('_', '-')}={line.split(': ')[1]}" for line in TRL_YAML.splitlines()]
    from_cli = parse_args(flags)
    assert from_yaml == from_cli == make_config(OURS)
    assert {k: getattr(from_yaml, k) for k in OURS} == OURS


def test_trls_epsilon_high_and_loss_types():
    # TRL: epsilon is both clips unless epsilon_high is given; dapo and bnpo are token means
    assert (make_config({"epsilon": 0.15}).eps_high, make_config({"epsilon": 0.15, "epsilon_high": 0.3}).eps_high) \
        == (0.15, 0.3)
    assert make_config({"loss_type": "dapo"}).aggregation == make_config({"loss_type": "bnpo"}).aggregation \
        == "token_mean"
    assert make_config({"loss_type": "dr_grpo"}).aggregation == "dr_grpo"
    assert make_config({"scale_rewards": "group"}).outcome == "grpo"


def test_one_source_may_not_name_a_field_twice(tmp_path):
    with pytest.raises(ValueError, match="max_steps is TRL's name for steps: give one of them, not both"):
        parse_args(["--steps", "3", "--max-steps", "4"])
    # across sources the usual precedence holds: the command line over the YAML file
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 5\n")
    assert parse_args(["--config", str(cfg_file), "--max-steps", "4"]).steps == 4
    cfg_file.write_text("max_steps: 5\n")
    assert parse_args(["--config", str(cfg_file), "--steps", "4"]).steps == 4


def test_a_config_saved_before_max_steps_meant_steps_still_resumes(tmp_path):
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("steps: 9\nmax_steps: 16\nmethod: grpo\n")
    cfg = parse_args(["--resume", str(run_dir)])
    assert (cfg.steps, cfg.max_reasoning_steps) == (9, 16)


def test_reward_and_report_to_take_lists():
    cfg = parse_args(["--reward", "answer", "format", "--reward-weights", "1", "0.5"])
    assert (cfg.reward, cfg.reward_weights) == (["answer", "format"], [1.0, 0.5])
    assert make_config({"reward": "answer,format"}).reward == ["answer", "format"]  # YAML: a list or one string
    assert make_config({"reward": "acpo.rewards:format_reward"}).reward == ["acpo.rewards:format_reward"]
    assert make_config({"report_to": "none"}).report_to == ["none"]


def test_removed_entropy_bonus_options_are_refused_with_the_reason_and_old_run_folders_still_resume(tmp_path):
    reason = (r"entropy_coef no longer exists \(the entropy bonus on top-credit steps was removed: .*"
              r"docs/METHODS.md.*\); delete it")
    with pytest.raises(ValueError, match="bad config: " + reason):
        parse_args(["--entropy-coef", "0.1"])
    with pytest.raises(ValueError, match="bad config: entropy_bonus no longer exists"):
        parse_args(["--recipe", "acpo", "--entropy-bonus", "false"])
    old = tmp_path / "old.yaml"
    old.write_text("recipe: acpo\nentropy_coef: 0.01\n")
    with pytest.raises(ValueError, match=f"config file '{re.escape(str(old))}': " + reason):
        parse_args(["--config", str(old)])
    with pytest.raises(ValueError, match="bad config: entropy_top_frac no longer exists"):
        make_config({"entropy_top_frac": 0.3})
    # a run folder saved when the options existed lists them all: it resumes without them
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("recipe: acpo\nsteps: 3\nentropy_bonus: true\nentropy_coef: 0.001\n"
                                         "entropy_target: 0.0\nentropy_top_frac: 0.3\nentropy_eta: 2.0\n"
                                         "entropy_coef_min: 0.0\nentropy_coef_max: 0.05\n")
    assert parse_args(["--resume", str(run_dir)]) == make_config({"recipe": "acpo", "steps": 3, "resume": str(run_dir)})


def test_train_py_names_a_removed_option_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--entropy-bonus", "true", "--output-dir",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("train.py: error: bad config: entropy_bonus no longer exists (")
    assert not list(tmp_path.iterdir())
