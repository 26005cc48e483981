"""Hard caps for the metering proxy: which enforced budgets are exhausted, known without SQL on
the event loop.

Why not `core.budgets.exhausted_enforced_budget` per request: its cache is cleared by every commit,
and the proxy commits after every call, so each proxied call would re-evaluate every enforced
budget on the event loop — measured at 7–23 ms per budget with 20,000 events (bench/proxy.py),
stalling every stream the loop is relaying. Here the same public pieces (`load_budgets`,
`evaluate`, `Scope.matches`) run on a thread of their own: after commits (coalesced, at most one
evaluation per `MIN_GAP_S`), when a period rolls over, and every `TTL_S` (budgets edited in another
process). A request only matches its attribution against the last snapshot.

Consistency: a cap takes effect one evaluation after the commit that exhausted it; calls sent in
that window (like calls already in flight) go through. `wait_current()` waits for that window to
close (tests use it; so can anything that must see its own commit). The first proxied call waits
for the first evaluation, so a cap holds from the start.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmtray.config import Config
from llmtray.core.budgets import BudgetStatus, evaluate, load_budgets
from llmtray.core.commits import Committed
from llmtray.core.queries import Queries
from llmtray.core.store import to_us

log = logging.getLogger(__name__)

TTL_S = 2.0  # budgets added or edited elsewhere (CLI, another process) show up this fast
MIN_GAP_S = 0.1  # under steady traffic: at most ten evaluations a second


@dataclass(frozen=True)
class _Snapshot:
    exhausted: tuple[BudgetStatus, ...]  # enforced budgets at or over their limit, most over first
    until_us: int  # the earliest end of an enforced budget's current period


class BudgetGate:
    """Exhausted enforced budgets, re-evaluated on the `llmtray-proxy-budgets` thread."""

    def __init__(self, db_path: Path, config: Config):
        self._db_path, self._config = db_path, config
        self._snapshot = _Snapshot((), 2**63)
        self._cond = threading.Condition()
        self._wanted = 1  # evaluations asked for (a commit, a refresh); the first one is implied
        self._done = 0  # the `_wanted` value the current snapshot answers
        self._stopping = False
        self._stopped = threading.Event()  # interrupts the pause between evaluations
        self._thread: threading.Thread | None = None
        self.ready: Future[None] = Future()  # resolves after the first evaluation

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="llmtray-proxy-budgets", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def committed(self, notice: Committed | None = None) -> None:
        """A writer listener: spend changed, evaluate again (quick; never blocks the writer)."""
        with self._cond:
            self._wanted += 1
            self._cond.notify_all()

    def wait_current(self, timeout: float | None = None) -> bool:
        """Block until the snapshot reflects every commit and refresh asked for before this call."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._wanted
            while self._done < target and not self._stopping:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._done >= target

    def refresh(self, timeout: float | None = None) -> bool:
        """Evaluate again now (a budget was just added here) and wait for it."""
        self.committed()
        return self.wait_current(timeout)

    def refusal(self, values: dict[str, Any]) -> BudgetStatus | None:
        """The exhausted enforced budget whose scope matches this call, most over its limit first."""
        snapshot = self._snapshot
        if to_us(datetime.now(UTC)) >= snapshot.until_us:  # a period rolled over: the snapshot is stale
            self.committed()
            return None
        return next((s for s in snapshot.exhausted if s.budget.scope.matches(values)), None)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._cond:
                    while self._done == self._wanted and not self._stopping:
                        if not self._cond.wait(TTL_S):
                            self._wanted += 1  # nothing happened for a while: look again anyway
                    if self._stopping:
                        return
                    target = self._wanted
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._db_path, timeout=10.0)
                        conn.execute("PRAGMA query_only = ON")
                    self._snapshot = self._evaluate(conn)
                except sqlite3.Error as exc:  # fail open: keep the last snapshot, say why
                    log.warning("proxy: enforced budgets could not be evaluated: %s", exc)
                with self._cond:
                    self._done = target
                    self._cond.notify_all()
                if not self.ready.done():
                    self.ready.set_result(None)
                if self._stopped.wait(MIN_GAP_S):
                    return
        finally:
            if conn is not None:
                conn.close()
            if not self.ready.done():
                self.ready.set_result(None)  # stopping before the first evaluation: nobody waits forever

    def _evaluate(self, conn: sqlite3.Connection) -> _Snapshot:
        queries = Queries(conn, self._config.tz)
        now = datetime.now(UTC)
        until, exhausted = 2**63, []
        for budget in load_budgets(conn):
            if not budget.enforce:
                continue
            status = evaluate(queries, budget, now, self._config.week_start, project=False)
            until = min(until, status.end_us)
            if status.spent_nanos >= budget.limit_nanos:
                exhausted.append(status)
        exhausted.sort(key=lambda s: (-s.percent, s.budget.name))
        return _Snapshot(tuple(exhausted), until)
