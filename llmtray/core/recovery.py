"""A damaged database: set it aside, salvage what still reads, start fresh, and say so.

SQLite files do get damaged: a failing disk, a sync tool copying the file mid-write, a crash on
a file system that ignores fsync. An app that opens such a file and dies on the first query dies
again at every login (DESKTOP.md, activitywatch#1412). So whoever owns the database at start
(the tray app, `llmtray serve`) calls `ensure_usable` first. It probes the file cheaply; when
SQLite says it is corrupt or not a database — or a reader found damage earlier and left a
marker — the file and its WAL move aside under a dated name (kept, never deleted), a fresh
database is created, and every event, import and replaced event that can still be read is
copied over in id ranges, so a damaged page costs the rows on it, not the rest. The rollups are
then rebuilt from the salvaged events. Nothing here imports Qt.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from llmtray.core import db as dbmod
from llmtray.core.backups import list_backups
from llmtray.core.damage import damage_marker, is_corruption

log = logging.getLogger(__name__)

_WINDOW = 2048  # ids read per query while salvaging
_TABLES = (("dataset", "id"), ("event", "id"), ("replaced_event", "rowid"))  # parents first


@dataclass(frozen=True)
class Recovered:
    """What `ensure_usable` did with a damaged database."""

    moved_to: Path
    events: int  # salvaged into the fresh database
    datasets: int
    unreadable: int  # ids (or id ranges narrowed to one id) that could not be read
    backup: Path | None = None  # the newest daily copy, for whoever wants what could not be read

    def message(self) -> str:
        lost = f"; {self.unreadable:,} rows on damaged pages could not be read" if self.unreadable else ""
        backup = (f" The newest daily backup, {self.backup}, holds the data as of that day."
                  if self.backup is not None else "")
        return (f"The database was damaged. It was moved to {self.moved_to} and llmtray started a new one "
                f"with the {self.events:,} events (and {self.datasets:,} imports) that could still be read{lost}. "
                f"Budget history and snoozes start afresh.{backup}")


def ensure_usable(path: Path, announce: Callable[[], None] | None = None) -> Recovered | None:
    """Probe the database at `path` (cheap: the header, the schema and the roots of the main
    tables); repair it if SQLite calls it damaged or a marker says so, calling `announce` first
    (a repair can take minutes). None when all is well or there is no database yet. Other
    errors (permissions, a full disk) propagate unchanged."""
    if not path.exists():
        return None
    if not damage_marker(path).exists():
        try:
            _probe(path)
            return None
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            log.error("the database %s is damaged: %s", path, exc)
    if announce is not None:
        announce()
    return recover(path)


def _probe(path: Path) -> None:
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA user_version").fetchone()
        conn.execute("SELECT name FROM sqlite_master").fetchall()
        conn.execute("SELECT max(id) FROM event").fetchone()
        conn.execute("SELECT count(*) FROM dataset").fetchone()
    finally:
        conn.close()


def recover(path: Path) -> Recovered:
    """Move the database (and its WAL) aside, create a fresh one, copy over what reads."""
    started = time.monotonic()
    aside = path.with_name(f"{path.name}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{aside}{suffix}"))
    dbmod.migrate(path)
    counts, unreadable = _salvage(aside, path)
    damage_marker(path).unlink(missing_ok=True)
    backups = list_backups(path)
    recovered = Recovered(aside, counts.get("event", 0), counts.get("dataset", 0), unreadable,
                          backups[-1] if backups else None)
    log.warning("%s (%.1f s)", recovered.message(), time.monotonic() - started)
    return recovered


def _salvage(damaged: Path, fresh: Path) -> tuple[dict[str, int], int]:
    try:
        old = sqlite3.connect(damaged, timeout=10)
        old.execute("PRAGMA query_only = 1")
        old_tables = {name for (name,) in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        log.error("nothing could be read from %s: %s", damaged, exc)
        return {}, 0
    new = sqlite3.connect(fresh, isolation_level=None)  # foreign keys off: parents may be lost
    counts: dict[str, int] = {}
    unreadable = 0
    try:
        new.execute("BEGIN IMMEDIATE")
        for table, key in _TABLES:
            if table not in old_tables:
                continue
            columns = _shared_columns(old, new, table)
            counts[table], lost = _copy(old, new, table, key, columns)
            unreadable += lost
        # Tags live in the event row as JSON too: rebuild their table from there, then imports
        # whose dataset row was lost get a placeholder, so they can still be listed and removed.
        new.execute("INSERT INTO event_tag (event, key, value) SELECT e.id, j.key, j.value"
                    " FROM event e, json_each(e.tags) j WHERE e.tags IS NOT NULL AND json_valid(e.tags)")
        new.execute("INSERT INTO dataset (id, name, format, created, state)"
                    " SELECT DISTINCT dataset_id, 'salvaged import ' || dataset_id, 'unknown', ?, 'done'"
                    " FROM event WHERE dataset_id IS NOT NULL AND dataset_id NOT IN (SELECT id FROM dataset)",
                    (int(time.time()),))
        dbmod.rebuild_rollups(new)
        new.execute("COMMIT")
    except BaseException:
        new.execute("ROLLBACK")
        raise
    finally:
        new.close()
        old.close()
    return counts, unreadable


def _shared_columns(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> list[str]:
    """The new table's columns that the damaged one has too (it may be an older schema)."""
    try:
        have = {name for _, name, *_ in old.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        have = set()
    return [name for _, name, *_ in new.execute(f"PRAGMA table_info({table})") if name in have]


def _copy(old: sqlite3.Connection, new: sqlite3.Connection, table: str, key: str,
          columns: Sequence[str]) -> tuple[int, int]:
    """Copy `table` in `key` ranges; a range that fails to read is halved until the unreadable
    ids are isolated. Returns (rows copied, ids that could not be read)."""
    if not columns:
        return 0, 0
    top = _top_key(old, table, key)
    select = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} >= ? AND {key} < ?"
    insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    copied = unreadable = 0
    pending = [(lo, lo + _WINDOW) for lo in range(0, top + 1, _WINDOW)]
    while pending:
        lo, hi = pending.pop()
        try:
            rows = old.execute(select, (lo, hi)).fetchall()
        except sqlite3.DatabaseError:
            if hi - lo == 1:
                unreadable += 1
            else:
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
            continue
        copied += new.executemany(insert, rows).rowcount
    return copied, unreadable


def _top_key(old: sqlite3.Connection, table: str, key: str) -> int:
    """The largest id, or (when even that page is damaged) a bound from the file's size."""
    try:
        top = old.execute(f"SELECT max({key}) FROM {table}").fetchone()[0]
        return int(top or 0)
    except sqlite3.DatabaseError:
        try:
            pages = old.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.DatabaseError:
            return 0
        return int(pages) * 64  # more rows than a page holds of any table here
