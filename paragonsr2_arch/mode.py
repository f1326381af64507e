"""The switch between the optimised path (default) and the straightforward one of the spec."""

from __future__ import annotations

import contextlib
import contextvars

_FAST = contextvars.ContextVar("paragonsr2_fast", default=True)


@contextlib.contextmanager
def reference_mode():
    """Within this block ParagonSR2 networks run the straightforward implementation of the spec
    (module forwards as written in blocks.py/layers.py; base path as nearest upsample + blur)."""
    token = _FAST.set(False)
    try:
        yield
    finally:
        _FAST.reset(token)


def fast_enabled() -> bool:
    return _FAST.get()
