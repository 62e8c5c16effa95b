"""What one request to the app may cost, so that no caller can hold a public server.

The defaults are safe on a public Space (an operator needs to configure
nothing); ``python app/main.py --max-request-seconds ...`` raises them. A
resampling credit (mc_reset) is refused above the caps with its estimate, and
runs one at a time on its own lane, so cheap explains keep flowing beside it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from .pathguard import InputError


@dataclass
class RequestLimits:
    """Caps on one request: estimated seconds, and the resampling credit's continuations and their length."""

    seconds: float = 60.0
    """Largest estimated run time of one resampling request (seconds)."""
    mc_samples: int = 32
    """Most continuations per step boundary (M)."""
    mc_tokens: int = 128
    """Most tokens per continuation."""
    mc_batch: int = 256
    """Most continuations sampled at once."""
    _resampling: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_seconds(self, seconds: float, what: str) -> None:
        if seconds > self.seconds:
            raise InputError(f"{what} would take about {seconds:.0f} s; this server allows {self.seconds:.0f} s per "
                             "request: lower M or the continuation tokens, or pick a cheaper method (its operator "
                             "can raise the cap with --max-request-seconds)")

    @contextmanager
    def resampling_lane(self):
        """Hold the one resampling lane for a request, or refuse at once when another request holds it."""
        if not self._resampling.acquire(blocking=False):
            raise InputError("another resampling credit (mc_reset) is running on this server, one at a time; "
                             "try again when it ends, or pick a cheaper method")
        try:
            yield
        finally:
            self._resampling.release()
