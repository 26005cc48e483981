"""The one writer thread: owns the write connection, group-commits, acknowledges after commit.

ActivityWatch wrote from every request thread and drowned in "database is locked" (aw-server#160).
Here requests hand validated batches to one thread and wait on a future. The thread takes every
batch that queued up while it was busy and stores them in one transaction (`Store.add_many`, a
savepoint per batch), so concurrent clients share one commit; each future resolves only after
`COMMIT` returned: acknowledged means durable. The queue is bounded in events: a full backlog
refuses new work (`BacklogFull` → 503 + Retry-After) rather than growing without limit.

After each commit, listeners get a `Committed` notice on this thread (budget monitor, GUI
bridge); they must be quick and must not raise (an exception is logged and ignored).

WAL checkpoints run on a thread of their own. A checkpoint copies the WAL into the database and
syncs it twice; on the slow virtual disks this was measured on an fsync takes ~30 ms, and
SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages, so every few
hundred requests one client waited that long. Commits in WAL mode with `synchronous=NORMAL` do
not sync, so this changes no durability guarantee, only who waits: nobody.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from llmtray.core.commits import Committed
from llmtray.core.errors import LLMTrayError
from llmtray.core.events import UsageEvent
from llmtray.core.pricing import Pricer
from llmtray.core.damage import is_corruption, mark_damaged
from llmtray.core.dburl import Database, unreachable
from llmtray.core.store import AddResult, Batch, Store
from llmtray.team.spool import Spool, broken

log = logging.getLogger(__name__)

Listener = Callable[[Committed], None]
MAX_BACKLOG_EVENTS = 50_000  # ~2 s of work on a slow laptop; a 10,000-event request always fits
MAX_GROUP_EVENTS = 5_000  # per transaction: bounds how long one commit (and the first waiter) takes
CHECKPOINT_INTERVAL_S = 0.25  # at most this often, and only after commits
BACKSTOP_CHECKPOINT_PAGES = 10_000  # the writer checkpoints inline only if the WAL outgrows this (~40 MB)
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # team mode: how soon an unreachable database is tried again


class BacklogFull(LLMTrayError):
    """The writer is this far behind; the client should retry after `retry_after` seconds."""

    def __init__(self, backlog: int, limit: int, retry_after: int = 1):
        super().__init__(f"the writer is behind ({backlog} events waiting, limit {limit}); retry in {retry_after} s")
        self.retry_after = retry_after


class WriterStopped(LLMTrayError):
    """Submitted after `stop()` began, or the writer could not open the database."""


class StoreFailed(LLMTrayError):
    """SQLite refused a commit (disk full, I/O error, locked too long); nothing of the batch was stored."""


class SumsOverflow(StoreFailed):
    """The batch would push a stored running total (a rollup) past 2^63: retrying can't help."""


class _Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection, soon after commits happened."""

    def __init__(self, db_path: Path, interval: float = CHECKPOINT_INTERVAL_S):
        self._db_path, self._interval = db_path, interval
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtray-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=True)
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or I/O: the next round (or the backstop) retries
                    log.debug("background checkpoint failed: %s", exc)
                self._stopping.wait(self._interval)  # commits meanwhile are batched into the next round
        finally:
            conn.close()


@dataclass(frozen=True, slots=True)
class _Pending:
    batch: Batch
    future: Future[AddResult]


class Writer:
    """Owns the database's write connection on its own thread; `submit` is thread-safe."""

    def __init__(self, db_path: Database, make_pricer: Callable[[], Pricer] = Pricer, *,
                 max_backlog: int = MAX_BACKLOG_EVENTS, max_group: int = MAX_GROUP_EVENTS,
                 current_pricer: Callable[[], Pricer] | None = None, spool: Path | None = None):
        """`current_pricer`, when given, is asked before each commit (pricing.toml edited while
        running: `PricingFile.current`); otherwise `make_pricer()` once at open. `spool` (team
        mode): where batches are committed while the team database is unreachable."""
        self._db_path, self._make_pricer = db_path, make_pricer
        self._spool = Spool(spool, self._pricer) if spool is not None else None
        self.unreachable: str | None = None  # why the team database can't be reached (None: it can)
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST_S
        self._current_pricer = current_pricer
        self.max_backlog, self._max_group = max_backlog, max_group
        self._queue: deque[_Pending] = deque()
        self._backlog = 0  # events queued or being written
        self._cond = threading.Condition()
        self._stopping = False
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._spooled = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the database on the writer thread (migrating it if needed); raises what opening raised."""
        self._thread = threading.Thread(target=self._run, name="llmtray-writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    def stop(self) -> None:
        """Commit everything already submitted, checkpoint the WAL, close. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def spooled(self) -> int:
        """Events kept in the spool, waiting for the team database (0 outside team mode)."""
        return self._spooled

    # --- producers ---------------------------------------------------------------------------

    def submit(self, events: Sequence[UsageEvent], source: str, *, replace: bool = False) -> Future[AddResult]:
        """Queue one atomic batch; the future resolves after its commit (or with the error).
        `replace`: see `Batch.replace` (coding agents' calls that grew after they were stored)."""
        future: Future[AddResult] = Future()
        with self._cond:
            if self._stopping or self._open_error is not None:
                raise WriterStopped("the ingest writer is shutting down")
            if self._backlog and self._backlog + len(events) > self.max_backlog:
                raise BacklogFull(self._backlog, self.max_backlog)
            self._backlog += len(events)
            self._queue.append(_Pending(Batch(events, source, replace=replace), future))
            self._cond.notify()
        return future

    # --- the thread ----------------------------------------------------------------------------

    def _pricer(self) -> Pricer:
        return (self._current_pricer or self._make_pricer)()

    def _run(self) -> None:
        store: Store | None = None
        try:
            store = Store.open(self._db_path, self._pricer())
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            if self._spool is None or not unreachable(exc):
                self._open_error = exc
                self._opened.set()
                return
            self._went_offline(exc)
        self._spooled = self._spool.pending() if self._spool is not None else 0
        self._opened.set()
        if store is not None:
            store.conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
            store = self._deliver(store)
        checkpointer = _Checkpointer(self._db_path) if isinstance(self._db_path, Path) else None  # SQLite's WAL
        try:
            while (group := self._next_group()) is not None:
                if store is None and time.monotonic() >= self._retry_at:
                    store = self._reconnect()
                if not group:
                    continue
                if store is not None:
                    if self._current_pricer is not None:
                        store.pricer = self._current_pricer()
                    if not self._commit(store, group):  # the team database went away mid-commit
                        store.close()
                        store = None
                if store is None:
                    assert self._spool is not None
                    self._commit(self._spool.store(), group, to_spool=True)
                if checkpointer is not None:
                    checkpointer.poke()
            if checkpointer is not None:
                checkpointer.stop()
                try:
                    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a clean WAL on exit
                except sqlite3.Error as exc:
                    log.warning("final WAL checkpoint failed: %s", exc)
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            if store is not None:
                store.close()
            if self._spool is not None:
                self._spool.close()

    # --- team mode: the spool ----------------------------------------------------------------------

    def _went_offline(self, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.unreachable is None:
            log.warning("the team database is unreachable (%s): events are kept in %s until it is back",
                        reason, self._spool.path if self._spool else "?")
        self.unreachable = reason
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def _reconnect(self) -> Store | None:
        try:
            store = Store.open(self._db_path, self._pricer())
        except Exception as exc:  # noqa: BLE001 - still unreachable (or refusing us): retried later
            self._went_offline(exc)
            return None
        return self._deliver(store)

    def _deliver(self, store: Store) -> Store | None:
        """Online again: hand the spool over (when it holds anything), then write there."""
        if self._spool is None:
            return store
        try:
            result = self._spool.deliver(self._db_path)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - lost again midway: delivery resumes next time
            if not unreachable(exc):
                log.exception("delivering the team spool failed; it is kept and retried")
            self._went_offline(exc)
            store.close()
            return None
        if self.unreachable is not None:
            log.warning("the team database is reachable again")
        self.unreachable, self._retry_delay, self._spooled = None, RETRY_FIRST_S, 0
        if result.copied:
            self._notify_notice(Committed(accepted=result.copied, duplicates=result.already, first_ts_us=None,
                                          last_ts_us=None, sources=frozenset()))
        return store

    def _next_group(self) -> list[_Pending] | None:
        """Every batch waiting (up to the group limit), or None once stopping with nothing left;
        offline (team mode), an empty list when it's time to try the team database again."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                if self.unreachable is not None:
                    self._cond.wait(max(0.05, self._retry_at - time.monotonic()))
                    if not self._queue and not self._stopping:
                        return []
                    continue
                self._cond.wait()
            group: list[_Pending] = []
            events = 0
            while self._queue and (not group or events + len(self._queue[0].batch.events) <= self._max_group):
                item = self._queue.popleft()
                if item.future.set_running_or_notify_cancel():
                    group.append(item)
                    events += len(item.batch.events)
                else:  # the request was abandoned before we got to it: not acknowledged, not stored
                    self._backlog -= len(item.batch.events)
            return group

    def _commit(self, store: Store, group: list[_Pending], *, to_spool: bool = False) -> bool:
        """Store `group` and resolve its futures; False (futures untouched) when the team
        database's connection broke under the transaction: the caller spools the group."""
        try:
            results: list[AddResult | Exception] = list(store.add_many([p.batch for p in group]))
        except Exception as exc:  # noqa: BLE001 - the whole transaction failed; every waiter hears why
            if not to_spool and self._spool is not None and (broken(store) or unreachable(exc)):
                self._went_offline(exc)
                return False
            log.error("storing %d batch(es) failed: %s", len(group), exc)
            failure = StoreFailed(f"could not store the events: {exc}")
            results = [failure] * len(group)
            failures = [exc]
        else:  # a batch that failed alone (its savepoint rolled back) may have met a damaged page
            failures = [r for r in results if isinstance(r, Exception)]
        finally:
            with self._cond:
                self._backlog -= sum(len(p.batch.events) for p in group)
        if damage := next((e for e in failures if is_corruption(e)), None):
            mark_damaged(self._db_path, damage)  # the next start sets the file aside and salvages
        if to_spool:  # counted before anyone hears "accepted" (and asks /v1/health)
            self._spooled += sum(r.accepted for r in results if isinstance(r, AddResult))
        stored: list[tuple[AddResult, str]] = []
        for pending, result in zip(group, results):
            if isinstance(result, AddResult):
                pending.future.set_result(result)
                stored.append((result, pending.batch.source))
            else:
                if isinstance(result, sqlite3.OperationalError) and "integer overflow" in str(result):
                    result = SumsOverflow("these events would push a running total of this day past 2^63 "
                                          "(nano-dollars or tokens); nothing of the batch was stored")
                elif not isinstance(result, StoreFailed):
                    log.error("a batch of %d events was rolled back: %s", len(pending.batch.events), result)
                    result = StoreFailed(f"could not store the events: {result}")
                pending.future.set_exception(result)
        if stored:
            self._notify(stored)
        return True

    def _notify(self, stored: list[tuple[AddResult, str]]) -> None:
        firsts = [r.first_ts_us for r, _ in stored if r.first_ts_us is not None]
        lasts = [r.last_ts_us for r, _ in stored if r.last_ts_us is not None]
        notice = Committed(
            accepted=sum(r.accepted for r, _ in stored),
            duplicates=sum(r.duplicates for r, _ in stored),
            first_ts_us=min(firsts, default=None),
            last_ts_us=max(lasts, default=None),
            sources=frozenset(source for r, source in stored if r.accepted),
        )
        self._notify_notice(notice)

    def _notify_notice(self, notice: Committed) -> None:
        for listener in list(self._listeners):
            try:
                listener(notice)
            except Exception:  # noqa: BLE001 - a broken listener must not stop ingest
                log.exception("commit listener %r failed", listener)
