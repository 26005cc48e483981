"""The one place where writer-thread commits become a Qt signal (STYLE practice 8).

The ingest writer (or the demo feeder, or an import) calls `notify(committed)` on its own thread;
Qt queues the `committed` signal to receivers in the GUI thread. Receivers must be QObject slots:
PySide6 ≥ 6.8 has crashed on bare callables connected across threads
(WORKAROUND for https://bugreports.qt.io/browse/PYSIDE-3124).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from llmtray.core.commits import Committed


class CommitBridge(QObject):
    """Signals: committed(Committed) — emitted once per durable commit, from any thread;
    ingest_failed(str) — the ingest service could not start (why), from its startup thread;
    notice(str) — something to tell the user once (the coding-agents watcher), from its thread."""

    committed = Signal(object)
    ingest_failed = Signal(str)
    notice = Signal(str)

    def notify(self, committed: Committed) -> None:
        """Thread-safe: the writer's listener. Emitting from a foreign thread queues the signal."""
        self.committed.emit(committed)

    def ingest_started(self, error: BaseException | None) -> None:
        """Thread-safe: the service's `when_ready` callback."""
        if error is not None:
            self.ingest_failed.emit(str(error) or type(error).__name__)
