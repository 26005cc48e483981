"""A thread that does one round of background work after a delay, then at an interval.

The daily backups and the bill's sync both run this way inside the tray app and `llmtray serve`:
first a while after start (not in the start-up rush), then every interval, stopping between
rounds at once. Each round says itself what a failure means; this only schedules.
"""

from __future__ import annotations

import threading


class Periodic:
    """Subclasses implement `round()` and `interval()`; `start`/`stop` from any thread."""

    def __init__(self, name: str, first_after: float):
        self._first_after = first_after
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def round(self) -> object:
        raise NotImplementedError

    def interval(self) -> float:
        raise NotImplementedError

    def _run(self) -> None:
        wait = self._first_after
        while not self._stopping.wait(wait):
            self.round()
            wait = self.interval()
