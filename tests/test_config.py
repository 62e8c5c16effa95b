"""The trainer's config: help, presets, YAML, command-line precedence and clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from acpo.config import METHODS, TrainConfig, make_config, parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_field():
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True, check=True)
    for name in TrainConfig.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in out.stdout


def test_method_preset_then_yaml_then_cli(tmp_path):
    assert parse_args(["--method", "grpo"]).eps_high == 0.2  # preset
    assert parse_args(["--method", "acpo"]).eps_high == 0.28  # default
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("method: grpo\neps_high: 0.3\nlr: 0.001\ncurriculum: true\n")
    cfg = parse_args(["--config", str(cfg_file), "--lr", "0.002"])
    assert (cfg.method, cfg.eps_high, cfg.lr, cfg.curriculum) == ("grpo", 0.3, 0.002, True)
    assert parse_args(["--config", str(cfg_file), "--curriculum", "false"]).curriculum is False


def test_acpo_preset_turns_on_its_parts():
    cfg = make_config({"method": "acpo"})
    assert cfg.entropy_bonus and cfg.two_stage and cfg.curriculum and cfg.dynamic_sampling
    assert not make_config({"method": "grpo"}).two_stage


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "ppo"}, f"unknown method 'ppo'; valid: {', '.join(METHODS)}"),
        ({"group_size": 1}, "group_size must be at least 2"),
        ({"w_min": 1.5}, "need 0 < w_min < 1 < w_max"),
    ],
)
def test_bad_values_are_named(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(values)


def test_yaml_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(ValueError, match=r"unknown fields \['learning_rate'\]"):
        parse_args(["--config", str(bad)])
    with pytest.raises(ValueError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="not a run folder"):
        parse_args(["--resume", str(tmp_path)])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    parse_args(["--config", str(path)])
