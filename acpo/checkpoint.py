"""Checkpoints: ``checkpoints/step-N`` folders a run resumes from, written whole or not at all, read without pickle.

A checkpoint holds the weights (``model.safetensors``, or ``adapter_model.safetensors``
for a LoRA run), the tokenizer, and the trainer's state: its tensors (optimizer
moments, the frozen reference policy, RNG states) in ``trainer_state.safetensors``
and everything else in ``trainer_state.json``. Nothing is unpickled, so a crafted
checkpoint can at worst fail to load.

A write goes to ``.tmp-step-N``, is flushed to the disk, then renamed: a kill
leaves either the old checkpoint or the new one, and a failed write (a full
disk) leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from acpo.runs import CHECKPOINTS, fsync_path, list_checkpoints, write_failed

STATE_JSON, STATE_TENSORS = "trainer_state.json", "trainer_state.safetensors"
PICKLED_STATE = ("trainer_state.pt", "rank_states.pt")  # pickles that earlier versions wrote; never loaded


@dataclass
class TrainState:
    """The trainer's counters and stage state: what a checkpoint carries besides tensors and RNG states (a
    checkpoint written when it held the entropy bonus's beta and H* still loads: those are left out)."""

    step: int = 0  # optimizer steps taken
    stage: int = 1  # ACPO's stage (2: reference KL, confidence-weighted reward)
    best_eval: float = -1.0  # best held-out pass@1 so far
    evals_since_best: int = 0
    rollout_tokens: int = 0  # completion tokens sampled by this process (resets and probes included)
    num_tokens: int = 0  # TRL's num_tokens: prompt + completion tokens trained on, every process

    @classmethod
    def from_checkpoint(cls, state: dict) -> "TrainState":
        """The fields a checkpoint's state holds (a field it lacks, written before it existed, keeps its default)."""
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from, naming the file and why."""


def weights_file(lora: bool) -> str:
    """What a checkpoint's weights are saved as: the adapter for LoRA runs, else the whole model."""
    return "adapter_model.safetensors" if lora else "model.safetensors"


def missing_files(ck: Path, lora: bool) -> list[str]:
    return [name for name in (weights_file(lora), STATE_JSON, STATE_TENSORS) if not (ck / name).is_file()]


def complete_checkpoints(run_dir: Path, lora: bool) -> list[Path]:
    """Checkpoints holding every file a resume reads, oldest first."""
    return [ck for ck in list_checkpoints(run_dir) if not missing_files(ck, lora)]


# ---------------------------------------------------------------------------------------- state <-> files

def rng_state() -> dict:
    """This process's random generators (python, numpy, torch, CUDA), for its part of a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pack(value, tensors: dict[str, torch.Tensor]):
    """``value`` as JSON-able data; its tensors move into ``tensors`` and are named by reference.

    Types JSON lacks are tagged: tuples (``random.setstate`` needs one), dicts
    with non-string keys (optimizer state is keyed by parameter index), small
    numpy arrays (numpy's RNG state), NaN/inf. Anything else is refused, so no
    state can need pickle to come back.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return pack(value.item(), tensors)
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"__tuple__": [pack(v, tensors) for v in value]}
    if isinstance(value, list):
        return [pack(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: pack(v, tensors) for k, v in value.items()}
        return {"__items__": [[pack(k, tensors), pack(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's state; use tensors, numbers, "
                    "strings, lists, tuples and dicts")


def unpack(data, tensors: dict[str, torch.Tensor]):
    """The inverse of ``pack``."""
    if isinstance(data, list):
        return [unpack(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return tensors[data["__tensor__"]]
    if "__float__" in data:
        return float(data["__float__"])
    if "__ndarray__" in data:
        return np.asarray(data["__ndarray__"], dtype=data["dtype"])
    if "__tuple__" in data:
        return tuple(unpack(v, tensors) for v in data["__tuple__"])
    if "__items__" in data:
        return {unpack(k, tensors): unpack(v, tensors) for k, v in data["__items__"]}
    return {k: unpack(v, tensors) for k, v in data.items()}


# ---------------------------------------------------------------------------------------- write

def write_checkpoint(run_dir: Path, step: int, policy, tokenizer, state: dict) -> Path:
    """checkpoints/step-N from the policy's weights, its tokenizer and the trainer's ``state``.

    Refuses NaN/inf weights (the checkpoint before them stays the last good one).
    On a failed write (RunWriteError, e.g. a full disk) the partial copy is
    removed and any earlier step-N is left as it was.
    """
    bad = [name for name, p in policy.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"refusing to save checkpoint step-{step}: weights {bad[:3]} hold NaN/inf")
    folder = Path(run_dir) / CHECKPOINTS
    final, tmp = folder / f"step-{step}", folder / f".tmp-step-{step}"
    for stale in [*folder.glob(".tmp-step-*"), *folder.glob(".old-step-*")]:  # left by a killed write
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        policy.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tensors: dict[str, torch.Tensor] = {}
        data = pack(state, tensors)
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(data, allow_nan=False))
        for f in tmp.rglob("*"):
            fsync_path(f)
        fsync_path(tmp)
    except (OSError, RuntimeError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(err, folder, f"checkpoint step-{step}") from err
    # the rename publishes a complete folder; an old step-N (resumed from an earlier one) goes only after
    if final.exists():
        old = folder / f".old-step-{step}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    fsync_path(folder)
    return final


# ---------------------------------------------------------------------------------------- read

def restore_weights(policy, weights: dict[str, torch.Tensor], lora: bool, ck: Path) -> None:
    """Load a checkpoint's weights into the policy (its adapter for LoRA); ValueError when they do not fit."""
    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, weights)
        return
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ValueError(f"checkpoint {ck} does not match the model: missing {missing}, unexpected {unexpected}")
    if "lm_head.weight" in missing and getattr(policy.config, "tie_word_embeddings", False):
        policy.tie_weights()


def read_checkpoint(ck: Path, lora: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, trainer state) of one checkpoint; CheckpointError naming the file that is missing or unreadable."""
    pickled = [name for name in PICKLED_STATE if (ck / name).exists()]
    if pickled and not (ck / STATE_JSON).exists():
        raise CheckpointError(
            f"checkpoint {ck} keeps its trainer state in {', '.join(pickled)}, a pickle, which this version "
            "never loads (a crafted pickle runs code). Its weights still load as a model: start a new run "
            f"from them with --model {ck}")
    missing = missing_files(ck, lora)
    if missing:
        raise CheckpointError(f"{ck} (missing {', '.join(missing)})")
    name = ""
    try:
        name = weights_file(lora)
        weights = load_file(str(ck / name))
        name = STATE_TENSORS
        tensors = load_file(str(ck / name))
        name = STATE_JSON
        state = unpack(json.loads((ck / name).read_text()), tensors)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise CheckpointError(f"{ck / name} is unreadable ({err})") from err
    return weights, state


def newest_checkpoint(run_dir: Path, lora: bool, warn: bool = True) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """The newest checkpoint that reads whole: (folder, weights, state).

    Newer ones that are incomplete (a copy cut short) or unreadable (a torn
    file) are skipped with a warning naming them; an old pickled one stops the
    search with its own message.
    """
    skipped = []
    for ck in reversed(list_checkpoints(run_dir)):
        try:
            weights, state = read_checkpoint(ck, lora)
        except CheckpointError as err:
            if any((ck / name).exists() for name in PICKLED_STATE) and not (ck / STATE_JSON).exists():
                raise
            skipped.append(str(err))
            continue
        if skipped and warn:
            warnings.warn(f"skipping incomplete or unreadable checkpoint(s) {'; '.join(skipped)}: resuming from {ck}",
                          stacklevel=3)
        return ck, weights, state
    if skipped:
        raise CheckpointError(f"run folder '{run_dir}' has no complete checkpoint to resume from: "
                              f"{'; '.join(skipped)}; start it afresh with --overwrite")
    raise CheckpointError(f"run folder '{run_dir}' has no checkpoints/step-N to resume from; "
                          "start it afresh with --overwrite")


# ---------------------------------------------------------------------------------------- a trainer's checkpoint

def save_training(acc, run_dir: Path, state: TrainState, policy, tokenizer, optimizer, scheduler, ref_model,
                  curriculum) -> None:
    """checkpoints/step-N of a run on every process (collective): the main process writes; every process stops
    when that write fails. Each process's RNG and curriculum state go in as ``ranks[i]``."""
    from acpo.distributed import any_process, gather_objects

    ranks = gather_objects(acc, {"rng": rng_state(), "curriculum": curriculum.state_dict()})
    failed = None
    if acc.is_main_process:
        data = {**asdict(state), "ranks": ranks, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ref_model": None if ref_model is None else ref_model.state_dict()}
        try:
            write_checkpoint(run_dir, state.step, policy, tokenizer, data)
        except (OSError, ValueError) as err:
            failed = err
    if any_process(acc, failed is not None):
        raise failed or RuntimeError(f"the main process could not write checkpoint step-{state.step}")


def load_training(acc, run_dir: Path, lora: bool, policy, optimizer, scheduler, curriculum):
    """(TrainState, frozen reference policy or None) from the newest readable checkpoint, weights, optimizer,
    scheduler, this process's RNG and curriculum restored in place."""
    import copy

    ck, weights, state = newest_checkpoint(run_dir, lora, warn=acc.is_main_process)
    restore_weights(policy, weights, lora, ck)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ref_model = None
    if state["ref_model"] is not None:
        ref_model = copy.deepcopy(policy).eval().requires_grad_(False)
        ref_model.load_state_dict(state["ref_model"])
    if len(state["ranks"]) != acc.num_processes:
        raise ValueError(f"checkpoint {ck} was written by {len(state['ranks'])} processes; resume it with as many")
    set_rng_state(state["ranks"][acc.process_index]["rng"])
    curriculum.load_state_dict(state["ranks"][acc.process_index]["curriculum"])
    return TrainState.from_checkpoint(state), ref_model
