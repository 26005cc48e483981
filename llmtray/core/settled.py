"""Period totals that don't re-add a month of rows on every budget check.

A budget's spend is a sum from its period start to now. Everything before the current 15-minute
bucket has *settled*: live traffic only adds to the current bucket. So the settled part is summed
once per bucket and remembered, and each check adds just the current bucket (an index range of
a few rows). On 90 days of realistic traffic that turns a monitor pass from ~125 ms into ~9 ms
and an enforcement refresh from ~40 ms into ~1 ms (bench/budgets.py) — both run on commits.

Changes to settled buckets are noticed by a watermark, by anyone (another process's `llmtray
import` too): every check reads the rows with an id above the last one seen — a few rows — and
the import datasets (id and creation time); a row older than the current bucket or a removed import forgets the
sums. Only `llmtray reprice` changes rows unseen: its new costs show at the next bucket edge
(within 15 minutes), or at once after `forget()`.
"""

from __future__ import annotations

import sqlite3
import threading

from llmtray.core.db import BUCKET_US
from llmtray.core.queries import Filters, Queries, Totals


class SettledTotals:
    """Remembered totals of settled buckets for one database (thread-safe: proxy threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._edge: int | None = None
        self._mark: int | None = None  # highest event id whose row the sums account for
        self._datasets: frozenset[tuple[int, int]] | None = None  # (id, created) of the imports then
        self._sums: dict[Filters, Totals] = {}

    def check(self, conn: sqlite3.Connection) -> None:
        """Forget the sums if settled buckets changed since the last check."""
        datasets = frozenset(conn.execute("SELECT id, created FROM dataset"))
        with self._lock:
            mark = self._mark
            if self._datasets is not None and not self._datasets <= datasets:
                self._sums = {}  # an import was removed (even if another came meanwhile)
            self._datasets = datasets
        if mark is None:  # nothing remembered yet: just note where the table ends
            (newest,) = conn.execute("SELECT coalesce(max(id), 0) FROM event").fetchone()
            with self._lock:
                self._mark = max(self._mark or 0, newest)
            return
        newest, oldest_ts = conn.execute("SELECT max(id), min(ts) FROM event WHERE id > ?", (mark,)).fetchone()
        if newest is None:
            return
        with self._lock:
            if self._edge is not None and oldest_ts < self._edge:
                self._sums = {}
            self._mark = max(self._mark or 0, newest)

    def get(self, queries: Queries, f: Filters) -> Totals:
        """Totals for `f`, whose `end_us` is the current bucket's start."""
        with self._lock:
            if f.end_us != self._edge:
                self._edge, self._sums = f.end_us, {}
            cached = self._sums.get(f)
        if cached is None:
            cached = queries.totals(f)
            with self._lock:
                if self._edge == f.end_us:
                    self._sums[f] = cached
        return cached

    def forget(self) -> None:
        with self._lock:
            self._sums = {}


class SettledQueries(Queries):
    """`Queries` whose open-ended totals (`start_us` set, no `end_us` — every period spend and
    projection window) add the remembered settled part to a fresh sum of the current bucket."""

    def __init__(self, queries: Queries, settled: SettledTotals, now_us: int):
        super().__init__(queries.conn, queries.tz)
        self.settled = settled
        self.edge = now_us - now_us % BUCKET_US
        settled.check(queries.conn)

    def totals(self, f: Filters = Filters()) -> Totals:
        if f.start_us is None or f.end_us is not None or f.start_us >= self.edge:
            return super().totals(f)
        out = Totals()
        out.add(self.settled.get(self, f.between(f.start_us, self.edge)))
        out.add(super().totals(f.between(self.edge, None)))
        return out


_REGISTRY: dict[str, SettledTotals] = {}
_REGISTRY_LOCK = threading.Lock()


def settled_for(conn: sqlite3.Connection) -> SettledTotals:
    """The process's remembered sums for the database `conn` is open on (shared by its threads)."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    with _REGISTRY_LOCK:
        return _REGISTRY.setdefault(path, SettledTotals())


def forget_all() -> None:
    """Drop every remembered sum (after a reprice, or anything else that edits rows in place)."""
    with _REGISTRY_LOCK:
        registry = list(_REGISTRY.values())
    for settled in registry:
        settled.forget()
