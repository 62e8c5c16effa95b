"""Loading a policy (and its tokenizer) from a folder, a LoRA adapter folder or a hub id.

One loader for the trainer and the app, with the project's safety rules:
safetensors weights only, and no remote code unless the caller opts in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DEMO_POLICY = str(Path(__file__).resolve().parent.parent / "assets" / "demo-policy")
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
        raise ModelLoadError(f"'{folder}' has no config.json; point to a folder written by save_pretrained")
    if not any(f.endswith(".safetensors") for f in files):
        pickled = sorted(files & set(PICKLE_WEIGHTS)) or sorted(f for f in files if f.endswith((".bin", ".pt")))
        what = f" (found {', '.join(pickled)})" if pickled else ""
        raise ModelLoadError(
            f"'{folder}' has no .safetensors weights{what}; pickle checkpoints can run arbitrary code "
            "and are refused. Convert them with `model.save_pretrained(dir, safe_serialization=True)`"
        )


def _needs_remote_code(folder: Path) -> bool:
    cfg = folder / "config.json"
    return cfg.exists() and "auto_map" in json.loads(cfg.read_text())


def load_policy(
    name_or_path: str = DEMO_POLICY,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
):
    """``(model, tokenizer)`` from a local folder, a PEFT adapter folder, or a hub id.

    An adapter folder (``adapter_config.json``) loads its base model first and
    attaches the adapter. The tokenizer gets a pad token (eos) if it has none
    and pads on the left, as generation needs.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"'{path}' is a file; pass the folder that holds config.json and the weights")
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

            base = json.loads(adapter.read_text())["base_model_name_or_path"]
            model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
            model = PeftModel.from_pretrained(model, str(path))
            tok_src = str(path) if (path / "tokenizer_config.json").exists() else base
        else:
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
            tok_src = str(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code)
    except ModelLoadError:
        raise
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
