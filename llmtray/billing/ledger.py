"""The billing ledger in the llmtray database (DB migration "billing"): how a fetched window is
written — all of it in one transaction, so a day is never half-written — and read back.

A window's rows replace whatever the ledger held for those days: `DELETE` then `INSERT` per
(source, day range), so a re-fetch never adds to an earlier fetch, and a line the provider
dropped disappears. Each thread opens its own connection (`open_ledger`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from llmtray.billing.rows import COLUMNS, BilledRow
from llmtray.billing.transport import Page
from llmtray.core import db as dbmod

PAGES_KEPT_S = 45 * 86400  # raw pages older than this are dropped: their rows were replaced long ago


def open_ledger(path: Path) -> sqlite3.Connection:
    """A connection of the calling thread's own, on a migrated database, in autocommit mode
    (every write below is one explicit transaction)."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    dbmod.migrate(path)
    conn = dbmod.connect(path, autocommit=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = 1")
    return conn


@dataclass(frozen=True)
class SourceState:
    source: str
    state: str  # ok, syncing, needs_admin_key, rate_limited, unavailable, malformed, auth_failed, …
    message: str
    last_attempt: float | None
    last_success: float | None
    retry_at: float | None
    backfilled: bool


def write_window(conn: sqlite3.Connection, source: str, days: list[date], provisional: set[date],
                 pages: list[Page], rows: Iterable[BilledRow], now: float | None = None, *,
                 backfill: bool = True) -> None:
    """Replace the source's rows for `days` (a contiguous window) with `rows`, mark each day
    provisional or settled, keep the raw pages, and record the success — one transaction.
    `backfill`: the window was the full backfill, so later rounds may re-fetch only the last days."""
    now = time.time() if now is None else now
    first, last = days[0].isoformat(), days[-1].isoformat()
    placeholders = ", ".join("?" * (len(COLUMNS) + 1))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM billing_row WHERE source = ? AND day BETWEEN ? AND ?", (source, first, last))
        conn.executemany(
            f"INSERT INTO billing_row (source, {', '.join(COLUMNS)}) VALUES ({placeholders})",
            [(source, r.day.isoformat(), *(getattr(r, c) for c in COLUMNS[1:])) for r in rows])
        conn.executemany(
            "INSERT INTO billing_day (source, day, status, as_of) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " status = excluded.status, as_of = excluded.as_of",
            [(source, d.isoformat(), "provisional" if d in provisional else "settled", now) for d in days])
        conn.executemany(
            "INSERT INTO billing_page (source, endpoint, params, fetched_at, body) VALUES (?, ?, ?, ?, ?)",
            [(source, p.endpoint, json.dumps(p.params, default=str), p.fetched_at, p.text) for p in pages])
        conn.execute("DELETE FROM billing_page WHERE source = ? AND fetched_at < ?", (source, now - PAGES_KEPT_S))
        _set_state(conn, source, "ok", f"synced {first} … {last}", now, success=True, backfilled=backfill)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record_state(conn: sqlite3.Connection, source: str, state: str, message: str,
                 retry_at: float | None = None, now: float | None = None) -> None:
    """A failed (or starting) round: the state and message only; rows and days stay as they were."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _set_state(conn, source, state, message, time.time() if now is None else now, retry_at=retry_at)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _set_state(conn: sqlite3.Connection, source: str, state: str, message: str, now: float, *,
               success: bool = False, retry_at: float | None = None, backfilled: bool = False) -> None:
    conn.execute(
        "INSERT INTO billing_source (source, state, message, last_attempt, last_success, retry_at, backfilled)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET state = excluded.state,"
        " message = excluded.message, last_attempt = excluded.last_attempt,"
        " last_success = coalesce(excluded.last_success, last_success), retry_at = excluded.retry_at,"
        " backfilled = max(backfilled, excluded.backfilled)",
        (source, state, message, now, now if success else None, retry_at, int(backfilled)))


def forget(conn: sqlite3.Connection, source: str) -> None:
    """Disconnecting keeps the bill already synced but clears the state (it is no longer synced)."""
    conn.execute("DELETE FROM billing_source WHERE source = ?", (source,))


def states(conn: sqlite3.Connection) -> dict[str, SourceState]:
    out = {}
    for row in conn.execute("SELECT source, state, message, last_attempt, last_success, retry_at, backfilled"
                            " FROM billing_source"):
        out[row[0]] = SourceState(*row[:6], bool(row[6]))
    return out


@dataclass(frozen=True)
class Coverage:
    days: int
    first: str | None
    last: str | None
    billed_nanos: int
    provisional_days: int


def coverage(conn: sqlite3.Connection, source: str, first: date | None = None) -> Coverage:
    """Days the ledger holds for a source (from `first`), and what they billed (BYOK excluded:
    it is on the upstream provider's bill)."""
    since = first.isoformat() if first else ""
    days, lo, hi, prov = conn.execute(
        "SELECT count(*), min(day), max(day), sum(status = 'provisional') FROM billing_day"
        " WHERE source = ? AND day >= ?", (source, since)).fetchone()
    (billed,) = conn.execute(
        "SELECT coalesce(sum(amount_nanos), 0) FROM billing_row WHERE source = ? AND kind = 'cost'"
        " AND category != 'byok' AND day >= ?", (source, since)).fetchone()
    return Coverage(days, lo, hi, billed, prov or 0)


def billed_rows(conn: sqlite3.Connection, first: date, end: date,
                sources: Iterable[str] | None = None) -> list[tuple[str, BilledRow]]:
    """(source, row) for UTC days first … end (exclusive)."""
    sql = f"SELECT source, {', '.join(COLUMNS)} FROM billing_row WHERE day >= ? AND day < ?"
    args: list[object] = [first.isoformat(), end.isoformat()]
    if sources is not None:
        chosen = list(sources)
        sql += f" AND source IN ({', '.join('?' * len(chosen))})"
        args += chosen
    out = []
    for source, day, *rest in conn.execute(sql, args):
        out.append((source, BilledRow(date.fromisoformat(day), *rest)))
    return out


def day_status(conn: sqlite3.Connection, first: date, end: date) -> dict[tuple[str, date], tuple[str, float]]:
    """(source, day) → (status, as_of) for the days fetched."""
    return {(s, date.fromisoformat(d)): (st, as_of) for s, d, st, as_of in conn.execute(
        "SELECT source, day, status, as_of FROM billing_day WHERE day >= ? AND day < ?",
        (first.isoformat(), end.isoformat()))}


def claim_alert(conn: sqlite3.Connection, source: str, day: date, now: float | None = None) -> bool:
    """True the first time a drift alert is claimed for (source, day); False ever after."""
    cur = conn.execute("INSERT OR IGNORE INTO billing_alert (source, day, alerted_at) VALUES (?, ?, ?)",
                       (source, day.isoformat(), time.time() if now is None else now))
    return cur.rowcount == 1
