"""Coalesce bursts of calls into a few a second: leading edge now, trailing edge later.

Why: the writer can commit hundreds of times a second during an import; refreshing the dashboard
on each would starve the GUI thread. After a call goes through, further calls within `interval_ms`
collapse into one that runs when the interval ends (so the last change is never missed). Modelled
on qutebrowser's `misc/throttle.py`; no polling timer runs while nothing happens.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Slot


class Throttle(QObject):
    """Calls `func` at most once per `interval_ms`; call `trigger()` as often as you like."""

    def __init__(self, func: Callable[[], None], interval_ms: int, parent: QObject | None = None):
        super().__init__(parent)
        self._func = func
        self._pending = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._on_timeout)

    @Slot()
    def trigger(self) -> None:
        if self._timer.isActive():
            self._pending = True
            return
        self._fire()

    def cancel(self) -> None:
        self._pending = False
        self._timer.stop()

    def _fire(self) -> None:
        self._pending = False
        self._timer.start()
        self._func()

    @Slot()
    def _on_timeout(self) -> None:
        if self._pending:
            self._fire()
