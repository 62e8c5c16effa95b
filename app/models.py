"""The app's model cache: the last few loaded policies, so switching back is instant."""

from __future__ import annotations

import threading
from collections import OrderedDict

from acpo.models import DEMO_POLICY, ModelLoadError, load_policy
from app.loaders import InputError, PathGuard


class ModelCache:
    """The last few loaded policies, by (name, trust_remote_code); local paths go through the guard."""

    def __init__(self, guard: PathGuard, default: str = DEMO_POLICY, capacity: int = 3):
        self.guard, self.default, self.capacity = guard, default, capacity
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | None, trust_remote_code: bool = False):
        name = (name or "").strip() or self.default
        if self.guard.looks_local(name):
            source = str(self.guard.resolve(name, "model path"))
        elif name.count("/") > 1:
            raise InputError(f"model path '{name}' does not exist")
        else:
            source = name  # a hub id; loads only where the hub is reachable
        key = (source, bool(trust_remote_code))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            try:
                model, tokenizer = load_policy(source, trust_remote_code=bool(trust_remote_code))
            except ModelLoadError as err:
                raise InputError(str(err)) from err
            except Exception as err:  # a broken checkpoint can raise anything
                raise InputError(f"could not load model '{name}': {type(err).__name__}: {err}") from err
            model.eval()
            self._models[key] = (model, tokenizer)
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model, tokenizer
