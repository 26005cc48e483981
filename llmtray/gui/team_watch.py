"""Team mode: notice what other machines write, and whether the team database can be reached.

On SQLite every write goes through this process's ingest writer, whose commits reach the window
through `CommitBridge`. On a team's PostgreSQL other machines write too, and nothing tells this
process; so a worker thread asks the server every `POLL_MS` for a change mark — three numbers
read in one round trip from an index and a small rollup table, not a scan of the events
(bench/team_watch.py measures it against `count(*)` at 1M events) — and the window refreshes when
it moves. The same poll is the connection check: when it fails the window and the tray say the
database is unreachable, and it retries with a growing delay until the server answers again.

LISTEN/NOTIFY would save the poll, but a notification sent while this machine's connection is
down is lost, and the writers are other llmtray versions on other machines; a mark compared
against the last one seen cannot miss a change.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QTimer, Signal, Slot

from llmtray.core.db import connect
from llmtray.core.dburl import PostgresUrl
from llmtray.gui.connection import forget, reason, unreachable
from llmtray.gui.qt_workarounds import WorkerThread

log = logging.getLogger(__name__)

POLL_MS = 2_000
RETRY_MS = (1_000, 2_000, 4_000, 8_000, 15_000, 30_000)  # after the 1st, 2nd, … failure in a row

# Inserts raise max(id) (the store hands ids out in commit order); a delete lowers the event
# count of the per-user daily totals, a reprice changes their cost: both are maintained by the
# triggers on every write path (store, imports, `llmtray reprice`, dataset removal).
CHANGE_MARK = ("SELECT (SELECT coalesce(max(id), 0) FROM event_row),"
               " (SELECT coalesce(sum(events), 0) FROM rollup_user_total_day),"
               " (SELECT coalesce(sum(cost_nanos), 0) FROM rollup_user_total_day)")


def change_mark(conn: Any) -> tuple[int, ...]:
    """What changes whenever an event is added, removed or repriced, by any machine."""
    return tuple(int(v) for v in conn.execute(CHANGE_MARK).fetchone())


class WatchWorker(QObject):
    """Lives in the watch thread, with its own connection (opened there, on first poll).

    Signals: changed() — the mark moved since the last poll (or was first read);
    state(message) — "" when the database answers again, else why it can't be reached (emitted
    on each change of state)."""

    changed = Signal()
    state = Signal(str)

    def __init__(self, url: PostgresUrl, poll_ms: int = POLL_MS):
        super().__init__()
        self._url, self._poll_ms = url, poll_ms
        self._conn: Any = None
        self._mark: tuple[int, ...] | None = None
        self._failures = 0
        self._timer: QTimer | None = None

    @Slot()
    def start(self) -> None:
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.poll)
        self.poll()

    @Slot()
    def poll(self) -> None:
        try:
            if self._conn is None:
                self._conn = connect(self._url, read_only=True)
            mark = change_mark(self._conn)
        except Exception as exc:  # noqa: BLE001 - the watch must outlive any error
            if unreachable(exc):
                self._lost(exc)
            else:  # a bug, not an outage: say it, and keep watching at the slowest pace
                log.exception("team database change check failed")
                self._next(RETRY_MS[-1])
            return
        if self._failures:
            log.info("team database %s answers again", self._url)
            self._failures = 0
            self.state.emit("")
        if mark != self._mark:  # the first mark too: what was written before it may postdate the window's read
            self.changed.emit()
        self._mark = mark
        self._next(self._poll_ms)

    def _lost(self, exc: BaseException) -> None:
        forget(self._conn)
        self._conn = None
        if not self._failures:  # one line per outage, not one per retry
            log.warning("team database %s unreachable (%s): retrying", self._url, reason(exc))
            self.state.emit(reason(exc))
        self._next(RETRY_MS[min(self._failures, len(RETRY_MS) - 1)])
        self._failures += 1

    def _next(self, ms: int) -> None:
        if self._timer is not None:
            self._timer.start(ms)

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        forget(self._conn)
        self._conn = None


class TeamWatch(QObject):
    """The GUI-side handle: starts the watch thread, relays its signals on the GUI thread.

    Signals: changed() — another machine (or this one) changed the events; state_changed(message)
    — why (the driver's words) while the database can't be reached, "" once it answers again."""

    changed = Signal()
    state_changed = Signal(str)

    def __init__(self, url: PostgresUrl, poll_ms: int = POLL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.offline = ""  # the last reason the database couldn't be reached; "" while it answers
        self._thread = WorkerThread(self)
        self._thread.setObjectName("llmtray-team-watch")
        self.worker = WatchWorker(url, poll_ms)
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.start)
        self.worker.changed.connect(self.changed)
        self.worker.state.connect(self._state)

    def start(self) -> None:
        self._thread.start()

    @Slot(str)
    def _state(self, message: str) -> None:
        self.offline = message
        self.state_changed.emit(message)

    def stop(self) -> None:
        """Stop polling and close the connection in the watch thread, then end the thread."""
        if not self._thread.isRunning():
            return
        QMetaObject.invokeMethod(self.worker, "stop", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.quit()
        self._thread.wait()

