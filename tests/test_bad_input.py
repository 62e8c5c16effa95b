"""Bad input gets one clear line (or works) before any run folder exists: config values, reward functions,
settings that do nothing together, library calls. One parametrized case per input the audit tried."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest

from acpo.config import ConfigWarning, check_environment, make_config

TINY = {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 8, "eval_problems": 2, "trace_problems": 0,
        "pool_size": 20, "steps": 1}


@pytest.mark.parametrize("overrides, message", [
    ({"reward": ["answer", "format"], "reward_weights": [float("nan"), 1.0]}, "reward_weights .* must be finite"),
    ({"reward": ["answer"], "reward_weights": [float("inf")]}, "reward_weights .* must be finite"),
    ({"reward": ["answer", "format"], "reward_weights": [0.0, 0.0]}, "reward_weights are all 0"),
    ({"kl_coef": -0.1, "two_stage": True}, "kl_coef \\(TRL: beta\\) must be 0 or positive"),
    ({"beta": -1.0}, "kl_coef \\(TRL: beta\\) must be 0 or positive"),
    ({"method": "hapo", "hapo_alpha": -0.5}, "hapo_alpha must be 0 or positive"),
    ({"credit_scale": -1.0}, "credit_scale must be 0 or positive"),
    ({"method": "hapo", "hapo_phi": 0.0}, "hapo_phi must be positive"),
    ({"method": "entropy_mask", "entropy_mask_rho": 0.0}, "entropy_mask_rho must be in \\(0, 1\\]"),
    ({"method": "entropy_mask", "entropy_mask_rho": 1.5}, "entropy_mask_rho must be in \\(0, 1\\]"),
    ({"unlock_threshold": 5.0}, "unlock_threshold is a pass rate, in \\(0, 1\\]"),
    ({"credit": "mc_reset"}, "credit mc_reset .* needs a scorer"),
])
def test_impossible_settings_are_refused_in_one_line(overrides, message):
    with pytest.raises(ValueError, match="bad config: " + message) as err:
        make_config({**TINY, **overrides})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    ({"method": "grpo", "acpo_target": "contrast"}, "acpo_target applies to the acpo credit only, and this run's "
                                                    "credit is uniform: it does nothing"),
    ({"method": "hapo", "acpo_per_token": True}, "acpo_per_token applies to the acpo credit only"),
    ({"method": "acpo", "hapo_phi": 3.0}, "hapo_phi applies to the hapo credit only"),
    ({"method": "grpo", "entropy_mask_rho": 0.5}, "entropy_mask_rho applies to the entropy_mask credit only"),
    ({"method": "grpo", "beta": 0.1}, "kl_coef \\(TRL: beta\\) = 0.1 is the KL penalty of stage 2, and this run has "
                                      "no stage 2"),
    ({"method": "grpo", "backend": "trl", "kl_coef": 0.1}, "--backend trl runs TRL's loop, which has no KL penalty"),
    ({"method": "grpo", "backend": "trl", "max_rollout_tokens": 1000}, "which has no max_rollout_tokens"),
])
def test_settings_that_do_nothing_are_said_in_one_line(overrides, message):
    with pytest.warns(ConfigWarning, match=message):
        make_config({**TINY, **overrides})


def test_settings_that_matter_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        for overrides in [{"method": "acpo", "acpo_target": "contrast"}, {"method": "hapo", "hapo_phi": 3.0},
                          {"method": "grpo", "two_stage": True, "kl_coef": 0.1}, {"method": "grpo"}]:
            make_config({**TINY, **overrides})


REWARD_MODULES = {
    "syntax": ("def reward(prompts, completions, **kw):\n    return [1.0 for c in completions\n",
               "module 'rw_syntax' has a syntax error"),
    "raises": ("def reward(prompts, completions, **kw):\n    return [1 / 0 for c in completions]\n",
               "reward function 'reward' failed: ZeroDivisionError: division by zero"),
    "none": ("def reward(prompts, completions, **kw):\n    return None\n",
             "reward function 'reward' returned NoneType None; it must return a list with one reward"),
    "scalar": ("def reward(prompts, completions, **kw):\n    return 1.0\n",
               "reward function 'reward' returned float 1.0; it must return a list"),
    "nested": ("def reward(prompts, completions, **kw):\n    return [[1.0] for c in completions]\n",
               "reward function 'reward' returned \\[1.0\\] for completion 0; it must return a list"),
    "no_kwargs": ("def reward(prompts, completions):\n    return [1.0 for c in completions]\n",
                  "reward function 'reward' does not take the keywords it is called with"),
    "inf": ("def reward(prompts, completions, **kw):\n    return [1e300 for c in completions]\n",
            "reward function 'reward' returned 1e\\+300 for completion 0; rewards must be finite numbers of at most"),
    "nan": ("def reward(prompts, completions, **kw):\n    return [float('nan') for c in completions]\n",
            "reward function 'reward' returned nan for completion 0; rewards must be finite"),
}


@pytest.mark.parametrize("kind", sorted(REWARD_MODULES))
def test_a_broken_reward_function_is_refused_by_name_before_the_run_folder_exists(kind, tmp_path, monkeypatch,
                                                                                 capsys):
    from acpo.cli import train_main

    source, message = REWARD_MODULES[kind]
    (tmp_path / f"rw_{kind}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, f"rw_{kind}", raising=False)
    code = train_main(["--reward", f"rw_{kind}:reward", "--output-dir", str(tmp_path / "runs"), "--run-name", "r",
                       "--steps", "1"], prog="train.py")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "runs").exists()


def test_a_reward_function_that_returns_only_none_is_warned_about_once():
    import torch

    from acpo.trainer import Trainer

    class Row:  # what reward_table reads of a problem
        columns, answer = {}, "5"

    trainer = Trainer.__new__(Trainer)
    trainer.reward_fns, trainer.reward_names, trainer.silent_rewards = [lambda **kw: [None, None]], ["nothing"], set()
    trainer.prompt_of = lambda p: "Q"
    with pytest.warns(UserWarning, match="reward function 'nothing' returned None for all 2 completions"):
        table = trainer.reward_table([Row(), Row()], ["a", "b"])
    assert torch.isnan(table).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.reward_table([Row(), Row()], ["a", "b"])  # said once, not at every step


@pytest.mark.parametrize("overrides, message", [
    ({"rollout": "vllm", "backend": "trl"}, "--rollout vllm needs vLLM, which is not installed"),
    ({"dtype": "float16"}, "--dtype float16 needs a GPU"),
])
def test_what_this_machine_lacks_is_refused_before_the_run_folder_exists(overrides, message, tmp_path, capsys):
    import importlib.util

    import torch

    from acpo.cli import train_main

    if (overrides.get("rollout") == "vllm" and importlib.util.find_spec("vllm")) or torch.cuda.is_available():
        pytest.skip("this machine has what the case lacks")
    with pytest.raises(ValueError, match=message):
        check_environment(make_config({**TINY, **overrides}))
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in overrides.items()]
    assert train_main([*argv, "--output-dir", str(tmp_path / "runs"), "--steps", "1"], prog="train.py") == 2
    assert message.split(",")[0] in capsys.readouterr().err and not (tmp_path / "runs").exists()
