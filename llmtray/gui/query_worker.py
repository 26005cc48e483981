"""Dashboard queries off the GUI thread: a worker per lane, each with its own read connection.

Why lanes: the KPI strip and the live view must move within a second of a commit even while a
90-day chart refresh of millions of events is running, so they get a thread of their own. Each
lane keeps at most one request in flight and only the newest one waiting (older waiting requests
are simply replaced), so a burst of commits costs one extra refresh, never a queue.

Results come back through signals to QObject slots (cross-thread bare callables have crashed
PySide6 ≥ 6.8: WORKAROUND for https://bugreports.qt.io/browse/PYSIDE-3124).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, Signal, Slot

from llmtray.core.damage import DAMAGED, is_corruption, mark_damaged
from llmtray.core.db import cannot_write, open_db, open_read_only
from llmtray.core.errors import LLMTrayError
from llmtray.core.pricing import Pricer
from llmtray.core.queries import Filters, Queries
from llmtray.gui import views
from llmtray.gui.connection import forget, on_live_connection, reason, unreachable
from llmtray.gui.qt_workarounds import WorkerThread

log = logging.getLogger(__name__)

READER_CACHE_KIB = 8_000


@dataclass(frozen=True)
class PageRequest:
    """One page of the events table: sort column and direction, continuing after a (value, id) key."""

    filters: Filters
    order: str = "ts"
    descending: bool = True
    after: tuple[Any, int] | None = None
    limit: int = views.EVENTS_PAGE


@dataclass(frozen=True)
class Sources:
    """How a worker reaches the data: the database file, the zone, and optional extras that other
    parts of llmtray provide (budgets, alert history) when they are installed."""

    db_path: Path
    tz: tzinfo | None
    make_pricer: Callable[[], Pricer] = Pricer
    budget_entries: views.BudgetEntries | None = None
    alert_log: Callable[[Any], Any] | None = None  # AlertLog(db) when alerts exist: .history(limit)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class QueryWorker(QObject):
    """Lives in its own QThread; opens its read connection there on first use.

    Signals: view_ready(generation, name, payload); done(generation, seconds); failed(generation, message);
    page_ready(token, rows); lost(reason) — the team database dropped or refused the connection
    (closed here; the next request reconnects).
    """

    view_ready = Signal(int, str, object)
    done = Signal(int, float)
    failed = Signal(int, str)
    page_ready = Signal(int, object)
    lost = Signal(str)

    def __init__(self, sources: Sources):
        super().__init__()
        self._sources = sources
        self._db = None
        self._queries: Queries | None = None
        self._pricer: Pricer | None = None
        self._alert_history: Callable[[int], list[Any]] | None = None
        self._closed = False  # by `close`: requests still queued behind it must not reopen

    def _connect(self) -> Queries:
        if self._queries is None:
            try:
                self._db = open_db(self._sources.db_path)
            except (sqlite3.OperationalError, OSError) as exc:
                if not cannot_write(exc):
                    raise
                self._db = open_read_only(self._sources.db_path)  # a read-only data dir: show it anyway
            conn = self._db.connection()
            # Views read rollups, a few MB even at 10M events; the writer's 32 MB page cache per
            # reader would make up a third of the window's memory for nothing (DESKTOP.md: RSS).
            conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
            self._queries = Queries(conn, self._sources.tz)
            self._pricer = self._sources.make_pricer()
            if self._sources.alert_log is not None:
                self._alert_history = self._sources.alert_log(self._db).history
        return self._queries

    @Slot(int, object)
    def run(self, generation: int, request: views.ViewRequest) -> None:
        if self._closed:
            return
        started = time.perf_counter()
        try:
            on_live_connection(lambda: self._compute(generation, request), reused=self._queries is not None,
                               drop=self._drop)
        except Exception as exc:  # a failed refresh must not kill the lane; the window says why
            self._fail(generation, exc, "dashboard refresh failed")
        self.done.emit(generation, time.perf_counter() - started)

    def _compute(self, generation: int, request: views.ViewRequest) -> None:
        q = self._connect()
        assert self._pricer is not None
        ctx = views.ViewContext(q, request, self._sources.clock(), self._pricer,
                                self._sources.budget_entries, self._alert_history)
        q.conn.execute("BEGIN")  # one snapshot per refresh: the KPIs and charts agree
        try:
            for name, payload in views.compute(ctx):
                self.view_ready.emit(generation, name, payload)
        finally:
            q.conn.execute("COMMIT")

    @Slot(int, object)
    def page(self, token: int, request: PageRequest) -> None:
        if self._closed:
            return
        try:
            rows = on_live_connection(
                lambda: self._connect().events_page(request.filters, request.order, request.descending,
                                                    request.after, request.limit),
                reused=self._queries is not None, drop=self._drop)
        except Exception as exc:
            self._fail(-token, exc, "events page failed")
            rows = []
        self.page_ready.emit(token, rows)

    def _fail(self, generation: int, exc: Exception, what: str) -> None:
        if unreachable(exc):  # an outage, not a bug: no traceback per refresh while it lasts
            self._drop()
            self.lost.emit(reason(exc))
            return
        log.exception(what)
        self.failed.emit(generation, self._explain(exc))

    def _explain(self, exc: Exception) -> str:
        if is_corruption(exc):
            mark_damaged(self._sources.db_path, exc)
            return (f"{DAMAGED} ({exc}). Quit llmtray and start it again: it sets the damaged "
                    "file aside and salvages every event it can read.")
        if isinstance(exc, LLMTrayError):  # says what is wrong in words already
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    @Slot()
    def close(self) -> None:
        """Runs in the worker thread: Peewee keeps the connection per thread."""
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        forget(self._db)  # a dead team connection is closed too: the next request opens a new one
        self._db = self._queries = None


class QueryLane(QObject):
    """The GUI-side handle of one worker thread.

    Signals: view_ready(name, payload) — only results of the newest request;
    refreshed(seconds) — a request finished; failed(message); lost(reason) — the team database
    can't be reached.
    """

    view_ready = Signal(str, object)
    refreshed = Signal(float)
    failed = Signal(str)
    lost = Signal(str)
    page_ready = Signal(int, object)
    _run = Signal(int, object)
    _page = Signal(int, object)

    def __init__(self, name: str, sources: Sources, parent: QObject | None = None):
        super().__init__(parent)
        self._thread = WorkerThread(self)
        self._thread.setObjectName(f"llmtray-queries-{name}")
        self.worker = QueryWorker(sources)
        self.worker.moveToThread(self._thread)
        self._run.connect(self.worker.run)
        self._page.connect(self.worker.page)
        self.worker.view_ready.connect(self._on_view)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.page_ready.connect(self.page_ready)
        self.worker.lost.connect(self.lost)
        self._generation = 0
        self._in_flight: views.ViewRequest | None = None
        self._superseded = False
        self._waiting: views.ViewRequest | None = None
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, request: views.ViewRequest) -> None:
        """Run `request` now, or after the one in flight (replacing any request already waiting)."""
        if self._in_flight is None:
            self._send(request)
            return
        wanted = set(request.views) | set(self._waiting.views if self._waiting else ())
        if _what(request) != _what(self._in_flight):
            self._superseded = True  # the running answer is for filters no longer shown: redo its views
            wanted |= set(self._in_flight.views)
        order = views.LIVE_VIEWS + views.CHART_VIEWS
        self._waiting = replace(request, views=tuple(v for v in order if v in wanted))

    def fetch_page(self, token: int, request: PageRequest) -> None:
        self._page.emit(token, request)

    def _send(self, request: views.ViewRequest) -> None:
        self._generation += 1
        self._in_flight, self._superseded = request, False
        self._run.emit(self._generation, request)

    @Slot(int, str, object)
    def _on_view(self, generation: int, name: str, payload: object) -> None:
        if generation == self._generation and not self._superseded:
            self.view_ready.emit(name, payload)

    @Slot(int, float)
    def _on_done(self, generation: int, seconds: float) -> None:
        if generation != self._generation:
            return
        superseded = self._superseded
        self._in_flight = None
        if self._waiting is not None:
            request, self._waiting = self._waiting, None
            self._send(request)
        if not superseded:
            self.refreshed.emit(seconds)

    @Slot(int, str)
    def _on_failed(self, generation: int, message: str) -> None:
        self.failed.emit(message)

    def stop(self) -> None:
        """Close the worker's connection in its own thread, then end the thread."""
        if not self._thread.isRunning():
            return
        QMetaObject.invokeMethod(self.worker, "close", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.quit()
        self._thread.wait()


def _what(request: views.ViewRequest) -> tuple[Any, ...]:
    """What a request shows (not which views it refreshes)."""
    return request.filters, request.range_key, request.breakdown
