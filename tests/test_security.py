"""What an anonymous caller of the app cannot make the server read, or hold: adapter chains, costly requests,
long answers. Each case failed before the guard it tests (see docs/SECURITY.md)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import torch

from conftest import char_tokenizer, tiny_llama

from acpo.models import ModelLoadError, load_policy


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``inside/``: a model and an adapter on it; ``outside/``: a model the app must never read."""
    torch.set_num_threads(1)
    inside, outside = tmp_path_factory.mktemp("inside"), tmp_path_factory.mktemp("outside")
    tok = char_tokenizer()
    for folder, seed in [(inside / "base", 0), (outside / "model", 1)]:
        tiny_llama(len(tok), seed=seed, context=64).save_pretrained(folder)
        tok.save_pretrained(folder)
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny_llama(len(tok), seed=0, context=64),
                          LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(inside / "lora")
    return dict(inside=inside, outside=outside, lora=inside / "lora")


def adapter(models, name: str, base) -> str:
    """A copy of the fixture's adapter at ``inside/name`` whose base is ``base``."""
    folder = models["inside"] / name
    if not folder.exists():
        shutil.copytree(models["lora"], folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return str(folder)


def test_every_link_of_an_adapter_chain_is_checked_against_the_allowed_folders(models, monkeypatch):
    from app.models import ModelCache
    from app.pathguard import InputError, PathGuard

    evil = adapter(models, "lora-evil", models["outside"] / "model")
    chain = adapter(models, "lora-chain", evil)
    read = []
    import transformers

    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, *a, **k: read.append(str(path)) or real(path, *a, **k))
    cache = ModelCache(PathGuard([models["inside"]]))
    for name in (chain, evil):
        with pytest.raises(InputError, match="the adapter's base model '.*' is outside the folders this app may read"):
            cache.get(name)
    assert read == []  # the outside model was never loaded
    good = adapter(models, "lora-good", adapter(models, "lora-mid", models["inside"] / "base"))
    model, _ = cache.get(good)  # two adapters on an allowed model load
    assert model.name_or_path == good


@pytest.mark.parametrize("case", ["self", "pair", "deep"])
def test_adapter_cycles_and_deep_chains_are_refused_in_one_line(models, case):
    a, b, c = (str(models["inside"] / f"{case}-{x}") for x in "abc")
    if case == "self":
        adapter(models, f"{case}-a", a)
        expected = "is based on itself"
    elif case == "pair":
        adapter(models, f"{case}-a", b)
        adapter(models, f"{case}-b", a)
        expected = "is based on itself"
    else:
        adapter(models, f"{case}-c", models["inside"] / "base")
        adapter(models, f"{case}-b", c)
        adapter(models, f"{case}-a", b)
        expected = "chain of more than 2 adapters"
    with pytest.raises(ModelLoadError, match=expected) as err:
        load_policy(a)
    assert "\n" not in str(err.value)
