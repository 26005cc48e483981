"""Fixes for bugs in the Qt binding that would otherwise crash the app, each tagged so it can be
found and removed when the binding is fixed (STYLE practice 14)."""

from __future__ import annotations

import ctypes
import sys

import PySide6


def keep_true_alive() -> None:
    """WORKAROUND for PySide6 6.12.0 on CPython < 3.12: `SignalInstance.emit()` returns `True`
    without taking a new reference, so every emit — ours and pyqtgraph's — drops one reference to
    `True` until the interpreter aborts with "bool_dealloc: deallocating True or False" (after a
    few hundred to a few thousand emits). CPython 3.12+ makes `True` immortal, which is why the
    binding's own tests do not see it; 6.11.3 is not affected. Giving `True` a huge reference
    count makes it immortal here too; remove when PySide6 > 6.12.0 fixes `emit`."""
    if sys.version_info >= (3, 12) or tuple(PySide6.__version_info__[:3]) != (6, 12, 0):
        return
    refcount = ctypes.c_ssize_t.from_address(id(True))  # ob_refcnt is the first field of every object
    if refcount.value < 1 << 40:
        refcount.value += 1 << 48
