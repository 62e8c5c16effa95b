"""Process coordination for a run on one or several processes (accelerate), and stopping on a signal.

Every function here is collective where it says so: all processes call it, in
the same order, and all get the same answer. With one process each is a no-op
that returns its input.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading

import torch


def reduce_values(acc, values: dict, op: str = "mean") -> dict:
    """Average (or sum) scalar values across processes (collective)."""
    if acc.num_processes == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=acc.device)
    return dict(zip(keys, acc.reduce(t, op).tolist()))


def any_process(acc, flag: bool) -> bool:
    """True if ``flag`` is true on any process (collective)."""
    if acc.num_processes == 1:
        return flag
    t = torch.tensor([float(flag)], device=acc.device)
    return bool(acc.reduce(t, "sum").item() > 0)


def gather_objects(acc, obj) -> list:
    """``obj`` of every process, in process order (collective)."""
    if acc.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def gather_tensors(acc, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every process's rows of each tensor, concatenated in process order, on the CPU (collective)."""
    if acc.num_processes == 1:
        return tensors
    return tuple(acc.gather(t.to(acc.device)).cpu() for t in tensors)


def from_main(acc, value):
    """The main process's ``value`` on every process (collective)."""
    if acc.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box)
    return box[0]


def weights_digest(model) -> str:
    """A short hash of a model's weights (processes of a DDP run must agree on it)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def end_processes(acc) -> None:
    """Tear the process group down before the interpreter exits, every process together.

    gloo's threads are C++ threads; left running while the interpreter
    finalises, one of them can abort the process ("terminate called without an
    active exception"). The barrier first makes sure that no process destroys
    its group while another still waits in a collective on it.
    """
    if acc.num_processes > 1 and torch.distributed.is_initialized():
        try:
            acc.wait_for_everyone()
        except RuntimeError:  # a peer already gone (it failed): nothing to wait for
            pass
    acc.end_training()


class StopSignals:
    """Ctrl-C / SIGTERM set ``received`` (read after each step); a second one aborts at once.

    Python lets only the main thread set handlers, so elsewhere (a Gradio worker
    thread) signals keep their defaults. ``restore()`` puts the old handlers back.
    """

    def __init__(self, announce: bool, next_step):
        self.received: str | None = None
        self.announce, self.next_step = announce, next_step
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt(f"second stop signal ({name})")
        self.received = name
        if self.announce:
            # os.write, not print: printing while tqdm writes to stderr can raise "reentrant call"
            say(f"\n{name}: finishing step {self.next_step()}, then writing a checkpoint "
                "(press Ctrl-C again to abort at once)\n")

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self.previous = {}


def say(text: str) -> None:
    """Write to stderr without Python's buffered stream (safe inside a signal handler)."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured by pytest)
        pass
