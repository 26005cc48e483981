"""Fixes for bugs in the Qt binding that would otherwise crash the app, each tagged so it can be
found and removed when the binding is fixed (STYLE practice 14)."""

from __future__ import annotations

import ctypes
import sys

import PySide6
from PySide6.QtCore import QThread

_IMMORTAL = 1 << 48  # far more references than any process can ever drop


def immortal_singletons() -> None:
    """WORKAROUND for PySide6 6.12.0 on CPython < 3.12: parts of the binding hand out `None`,
    `True` and `False` without taking a reference, as if they were immortal — which they are
    only from CPython 3.12 on. Every `Signal.emit()` drops a reference to `True`; every Python
    override that C++ calls and that returns `None` (a model's `data()`, each pyqtgraph
    `paint()`) drops one to `None`; after a few thousand the interpreter aborts with
    "none_dealloc"/"bool_dealloc: deallocating …". PySide6 6.11.3 is not affected.
    Giving the three singletons a huge reference count makes them immortal here too, which is
    exactly their behaviour on 3.12+. Remove when PySide6 > 6.12.0 fixes this or llmtray needs
    Python ≥ 3.12."""
    if sys.version_info >= (3, 12) or tuple(PySide6.__version_info__[:3]) != (6, 12, 0):
        return
    for singleton in (None, True, False):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt leads every CPython object
        if refcount.value < _IMMORTAL:
            refcount.value += _IMMORTAL


class WorkerThread(QThread):
    """WORKAROUND for PySide6 (6.11, 6.12): the event loop of a plain QThread runs outside
    Python, so the binding makes a fresh Python thread state for each slot it calls there and
    drops it afterwards — every `threading.local` is forgotten between two slots. Peewee keeps
    its connection per thread in one: a worker's `db.close()` then found "no connection" and
    closed nothing (the socket leaked until garbage collection), and Peewee-model queries (the
    alert history) opened a new connection on every refresh — on a team's PostgreSQL a new
    server session each time. Running the loop from a Python `run()` keeps one thread state for
    the thread's whole life. Remove when the binding keeps the thread state itself."""

    def run(self) -> None:  # noqa: D102 - Qt API
        self.exec()
