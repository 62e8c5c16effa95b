"""The app's model cache: the last few loaded policies, so switching back is instant."""

from __future__ import annotations

import threading
from collections import OrderedDict

from acpo.models import DEMO_POLICY, ModelLoadError, load_policy
from .pathguard import InputError, PathGuard


class ModelCache:
    """The last few loaded policies, by (name, trust_remote_code); every local path of a model's adapter chain
    goes through the guard.

    A model's own code (``trust_remote_code``) runs only where the server was
    started with ``--allow-remote-code``: the caller of an endpoint cannot turn it on.
    """

    def __init__(self, guard: PathGuard, default: str = DEMO_POLICY, capacity: int = 3,
                 allow_remote_code: bool = False):
        self.guard, self.default, self.capacity = guard, default, capacity
        self.allow_remote_code = allow_remote_code
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | None, trust_remote_code: bool = False):
        if trust_remote_code and not self.allow_remote_code:
            raise InputError("this server does not run a model's own code (trust_remote_code); its operator can "
                             "allow it by starting the app with --allow-remote-code")
        name = (name or "").strip() or self.default
        source = self.guard.model_source(name)
        key = (source, bool(trust_remote_code))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            try:
                model, tokenizer = load_policy(source, trust_remote_code=bool(trust_remote_code),
                                               check=self.guard.check_model)
            except InputError:
                raise
            except ModelLoadError as err:
                raise InputError(str(err)) from err
            except Exception as err:  # a broken checkpoint can raise anything
                raise InputError(f"could not load model '{name}': {type(err).__name__}: {err}") from err
            model.eval()
            self._models[key] = (model, tokenizer)
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model, tokenizer
