"""Bad input gets one clear line (or works) before any run folder exists: config values, reward functions,
settings that do nothing together, library calls. One parametrized case per input the audit tried."""

from __future__ import annotations

import sys
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
])
def test_impossible_settings_are_refused_in_one_line(overrides, message):
    with pytest.raises(ValueError, match="bad config: " + message) as err:
        make_config({**TINY, **overrides})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    ({"method": "grpo", "acpo_target": "contrast"}, "acpo_target applies to the info_gain credit only, and this run's "
                                                    "credit is uniform: it does nothing"),
    ({"method": "hapo", "acpo_per_token": True}, "acpo_per_token applies to the info_gain credit only"),
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

    from acpo.reward_table import Rewards

    class Row:  # what reward_table reads of a problem
        columns, answer = {}, "5"

    def nothing(**kw):
        return [None, None]

    rewards = Rewards([nothing], [], prompt_of=lambda p: "Q")
    with pytest.warns(UserWarning, match="reward function 'nothing' returned None for all 2 completions"):
        table = rewards.table([Row(), Row()], ["a", "b"])
    assert torch.isnan(table).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rewards.table([Row(), Row()], ["a", "b"])  # said once, not at every step


@pytest.mark.parametrize("overrides, message", [
    ({"rollout_engine": "vllm", "backend": "trl"}, "--rollout-engine vllm needs vLLM, which is not installed"),
    ({"dtype": "float16"}, "--dtype float16 needs a GPU"),
])
def test_what_this_machine_lacks_is_refused_before_the_run_folder_exists(overrides, message, tmp_path, capsys):
    import importlib.util

    import torch

    from acpo.cli import train_main

    if (overrides.get("rollout_engine") == "vllm" and importlib.util.find_spec("vllm")) or torch.cuda.is_available():
        pytest.skip("this machine has what the case lacks")
    with pytest.raises(ValueError, match=message):
        check_environment(make_config({**TINY, **overrides}))
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in overrides.items()]
    assert train_main([*argv, "--output-dir", str(tmp_path / "runs"), "--steps", "1"], prog="train.py") == 2
    assert message.split(",")[0] in capsys.readouterr().err and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- library calls


@pytest.fixture(scope="module")
def tiny():
    import torch

    from conftest import char_tokenizer, tiny_llama

    torch.set_num_threads(1)
    tok = char_tokenizer()
    return tiny_llama(len(tok), seed=0, context=128), tok


PROMPTS, COMPLETIONS = ["Q: 1+1=?\n", "Q: 2+2=?\n"], ["1+1=2\n#### 2", "2+2=4\n#### 4"]


@pytest.mark.parametrize("kwargs, message", [
    ({"answers": ["2"]}, "got 1 answers for 2 completions; pass one per completion"),
    ({"meta": [{}]}, "got 1 meta for 2 completions"),
    ({"rewards": [1.0]}, "got 1 rewards for 2 completions"),
    ({"batch_size": 0}, "batch_size must be a whole number of at least 1; got 0"),
    ({"method": []}, "method is an empty list; name at least one credit method"),
    ({"segmentation": "fixed-0"}, "segmentation 'fixed-0': a fixed step holds at least 1 token"),
    ({"completions": [{"text": "1+1=2"}, "2+2=4"]}, "completion 0 is dict"),
    ({"completions": [42, "2+2=4"]}, "completion 0 is int 42"),
    ({"prompts": [{"q": 1}, "Q"]}, "prompt 0 is dict"),
])
def test_explain_batch_refuses_mismatched_or_malformed_arguments_by_name(tiny, kwargs, message):
    import acpo

    args = {"prompts": PROMPTS, "completions": COMPLETIONS, "method": "uniform", "segmentation": "lines", **kwargs}
    with pytest.raises(ValueError, match=message):
        acpo.explain_batch(*tiny, **args)


@pytest.mark.parametrize("completion, message", [
    (None, "a completion is NoneType None; completions are strings or lists of chat messages"),
    (7, "a completion is int 7"),
    ([{"role": "assistant", "content": None}], "a chat completion has a message whose content is not text"),
    (["#### 2"], "a completion is list"),
])
def test_reward_functions_name_a_malformed_completion(completion, message):
    from acpo.rewards import answer_reward, hash_answer_reward

    for fn in (hash_answer_reward, answer_reward):
        with pytest.raises(ValueError, match=message):
            fn(None, [completion], answer=["2"])


def test_a_typeset_minus_is_a_minus():
    from acpo.answers import answers_match, extract_final_answer
    from acpo.rewards import hash_answer_reward

    assert answers_match(extract_final_answer("5-8=\u22123\n#### \u22123"), "-3")
    assert hash_answer_reward(None, ["#### \u22123", "#### 3"], answer=["-3", "-3"]) == [1.0, 0.0]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q", "completion": {"text": "1+1=2"}}, "the completion of 1 row\\(s\\) is not text \\(row 0: dict"),
    ({"prompt": 12, "completion": "1+1=2"}, "the prompt of 1 row\\(s\\) is not text \\(row 0: int 12"),
    ({"prompt": "Q", "completion": 3.5}, "the completion of 1 row\\(s\\) is not text \\(row 0: float 3.5"),
])
def test_batch_rows_whose_prompt_or_completion_is_not_text_are_refused(row, message, tmp_path):
    import json

    from app.loaders import InputError, read_rollouts

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=message):
        read_rollouts(path)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from conftest import char_tokenizer, tiny_llama

    folder = tmp_path_factory.mktemp("models") / "good"
    tok = char_tokenizer()
    tiny_llama(len(tok), seed=0, context=64).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("damage, message", [
    ("garbage", "could not read the weights of '.*' \\(model.safetensors\\): .*truncated or corrupt"),
    ("truncated", "could not read the weights of '.*' \\(model.safetensors\\): .*truncated or corrupt"),
    ("config", "'.*config.json' is not valid JSON"),
])
def test_a_damaged_model_folder_is_one_line_naming_the_file(saved_model, damage, message, tmp_path):
    import shutil

    from acpo.models import ModelLoadError, load_policy

    folder = tmp_path / damage
    shutil.copytree(saved_model, folder)
    weights = folder / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"not a safetensors file" * 10)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=message):
        load_policy(str(folder))


@pytest.mark.parametrize("header", [b"GGUF\x03\x00\x00\x00", b"GGUF\x03\x00\x00\x00" + (2**62).to_bytes(8, "little")])
def test_a_truncated_or_lying_gguf_file_is_one_line(header, tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from acpo.models import ModelLoadError, load_policy

    monkeypatch.setenv("ACPO_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(header)
    with pytest.raises(ModelLoadError, match="could not (read|load) GGUF '.*model.gguf'") as err:
        load_policy(str(gguf))
    assert "\n" not in str(err.value)


def test_longest_token_chars_bounds_the_token_count_from_the_length():
    from conftest import bpe_tokenizer

    from acpo.tokens import longest_token_chars

    tok = bpe_tokenizer()
    longest = longest_token_chars(tok)
    for text in ["hello world " * 50, "a" * 300, "1+1=2\n#### 2" * 20]:
        assert len(tok(text, add_special_tokens=False)["input_ids"]) >= len(text) / longest


def test_a_huge_dataset_row_is_refused_without_being_tokenized(tmp_path, monkeypatch):
    import json

    import acpo.trainer
    from acpo.trainer import run

    data = tmp_path / "data.jsonl"
    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"},
            {"question": "3+" * 2_500_000 + "3?", "answer": "#### 1"}]  # 5 MB: tokenizing it took gigabytes
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    longest = []
    real = acpo.trainer.encode_prompt
    monkeypatch.setattr(acpo.trainer, "encode_prompt",
                        lambda tok, p, *a: longest.append(len(str(p))) or real(tok, p, *a))
    with pytest.raises(ValueError, match=r"1 problem\(s\) leave no room to answer in the model's context of 256 "
                                         r"tokens with --max-new-tokens 8: .* \(over 248 tokens\)"):
        run(make_config({**TINY, "output_dir": str(tmp_path), "run_name": "huge", "dataset": str(data),
                         "eval_problems": 1}))
    assert max(longest) < 10_000 and not (tmp_path / "huge").exists()


def test_an_answer_the_tokenizer_cannot_spell_is_refused_not_scored_as_unk(tiny):
    import acpo

    with pytest.raises(ValueError, match="answer '1€2' has characters this tokenizer does not know \\('€' become"):
        acpo.explain(*tiny, PROMPTS[0], COMPLETIONS[0], method="info_gain", answer="1€2", segmentation="lines")
    assert acpo.explain(*tiny, PROMPTS[0], COMPLETIONS[0], method="info_gain", answer="12", segmentation="lines").steps



def test_a_reward_function_is_checked_on_the_first_row_of_a_local_dataset(tmp_path, monkeypatch):
    import json

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "#### 2", "difficulty": "easy"}) + "\n")
    (tmp_path / "rw_dataset.py").write_text(
        "def needs_difficulty(prompts, completions, difficulty, **kw):\n"
        "    return [float(d == 'easy') for d in difficulty]\n"
        "def breaks(prompts, completions, difficulty, **kw):\n"
        "    return {'easy': 1.0}[difficulty]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "rw_dataset", raising=False)
    make_config({**TINY, "dataset": str(data), "reward": ["rw_dataset:needs_difficulty"]})  # the column reaches it
    with pytest.raises(ValueError, match="reward function 'breaks' failed: TypeError: .*unhashable type: 'list'"):
        make_config({**TINY, "dataset": str(data), "reward": ["rw_dataset:breaks"]})


def test_a_corrupt_gguf_or_weights_file_in_the_app_is_one_line(saved_model, tmp_path, monkeypatch):
    import shutil

    pytest.importorskip("gguf")
    from app.models import ModelCache
    from app.pathguard import InputError, PathGuard

    monkeypatch.setenv("ACPO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    shutil.copytree(saved_model, tmp_path / "bad-weights")
    (tmp_path / "bad-weights" / "model.safetensors").write_bytes(b"garbage" * 10)
    cache = ModelCache(PathGuard([tmp_path]))
    for name, message in [("bad.gguf", "could not read GGUF '.*bad.gguf': it is truncated or corrupt"),
                          ("bad-weights", "could not read the weights of '.*bad-weights' \\(model.safetensors\\)")]:
        with pytest.raises(InputError, match=message) as err:
            cache.get(str(tmp_path / name))
        assert "\n" not in str(err.value)
