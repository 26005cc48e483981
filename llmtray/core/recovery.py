"""A damaged database: set it aside, salvage what still reads, start fresh, and say so.

SQLite files do get damaged: a failing disk, a sync tool copying the file mid-write, a crash on
a file system that ignores fsync. An app that opens such a file and dies on the first query dies
again at every login (DESKTOP.md, activitywatch#1412). So whoever owns the database at start
(the tray app, `llmtray serve`) calls `ensure_usable` first. It probes the file cheaply; when
SQLite says it is corrupt or not a database — or a reader found damage earlier and left a
marker — every event, import, replaced event, budget and alert that can still be read is copied
into a fresh database (the big tables in id ranges, so a damaged page costs the rows on it, not
the rest) and the rollups are rebuilt from the salvaged events. Only then does the damaged file
(and its WAL) move aside under a dated name, kept, and the fresh one take its place, so a start
killed midway leaves the damaged file and the marker for the next start to try again. The daily
backups from before the damage are set aside too, out of the rotation. Nothing here imports Qt.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from llmtray.core import compact, db as dbmod
from llmtray.core.backups import set_aside_backups
from llmtray.core.damage import damage_marker, is_corruption
from llmtray.core.sketch import bin_of

log = logging.getLogger(__name__)

_WINDOW = 2048  # ids read per query while salvaging
# What a damaged database still holds of value; the rest (rollups, tag tables, tag latencies) is
# rebuilt from the events. Small tables are copied whole or not at all, big ones in id ranges.
_WHOLE = {"dataset": "imports", "budget": "budgets", "alert": "alert history",
          "crossing": "announced threshold crossings", "alert_state": "snoozes and quiet hours",
          "billing_row": "synced bills", "billing_day": "synced bill days", "billing_source": "bill sync states",
          "billing_alert": "told bill drifts"}
_RANGED = (("event", "id"), ("replaced_event", "rowid"), ("billing_page", "id"))


@dataclass(frozen=True)
class Recovered:
    """What `ensure_usable` did with a damaged database."""

    moved_to: Path
    events: int  # salvaged into the fresh database
    datasets: int
    unreadable: int | None  # event ids that could not be read (None: unknown, the table's end was unreadable)
    backup: Path | None = None  # the newest daily copy from before, set aside from the rotation
    lost: tuple[str, ...] = ()  # what of the small tables could not be read ("budgets", …)

    def message(self) -> str:
        if self.unreadable is None:
            unreadable = "; some rows on damaged pages could not be read"
        else:
            unreadable = f"; {self.unreadable:,} rows on damaged pages could not be read" if self.unreadable else ""
        lost = f" Could not be read: {', '.join(self.lost)}." if self.lost else ""
        backup = (f" The newest daily backup from before, {self.backup}, holds the data as of that day."
                  if self.backup is not None else "")
        return (f"The database was damaged. It was moved to {self.moved_to} and llmtray started a new one "
                f"with the {self.events:,} events (and {self.datasets:,} imports) that could still be read"
                f"{unreadable}.{lost}{backup}")


def ensure_usable(path: Path, announce: Callable[[], None] | None = None) -> Recovered | None:
    """Probe the database at `path` (cheap: the header, the schema and the roots of the main
    tables); repair it if SQLite calls it damaged or a marker says so, calling `announce` first
    (a repair can take minutes). None when all is well or there is no database yet. Other
    errors (permissions, a full disk) propagate unchanged."""
    if _swap_plan(path).exists():
        if announce is not None:
            announce()
        return _finish_swap(path)  # a repair that a killed start left half done
    if not path.exists():
        damage_marker(path).unlink(missing_ok=True)  # about a file that is gone: not about the next one
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
    """Salvage what reads into a fresh database, then swap it in and keep the damaged file."""
    started = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    fresh = _salvage_path(path)
    dbmod.remove_database_files(fresh)  # a salvage a previous start did not finish
    dbmod.migrate(fresh)
    counts, unreadable, lost = _salvage(path, fresh)
    aside = _free_name(path.with_name(f"{path.name}.damaged-{stamp}"))
    report = {"moved_to": str(aside), "events": counts.get("event", 0), "datasets": counts.get("dataset", 0),
              "unreadable": unreadable, "lost": lost, "stamp": stamp}
    # From here on every step can be repeated: the plan is on disk, and a start killed midway
    # finishes the swap (`_finish_swap`) instead of finding no database, or repairing a good one.
    tmp = _swap_plan(path).with_name(_swap_plan(path).name + ".tmp")
    tmp.write_text(json.dumps(report), encoding="utf-8")
    os.replace(tmp, _swap_plan(path))
    recovered = _finish_swap(path)
    log.warning("%s (%.1f s)", recovered.message(), time.monotonic() - started)
    return recovered


def _salvage_path(path: Path) -> Path:
    return path.with_name(path.name + ".salvage")


def _swap_plan(path: Path) -> Path:
    return path.with_name(path.name + ".swap")


def _finish_swap(path: Path) -> Recovered:
    """Move the damaged file (and its journals) aside and the salvaged one into place, doing only
    the steps still to do; then forget the marker and the plan."""
    report = json.loads(_swap_plan(path).read_text(encoding="utf-8"))
    aside, fresh = Path(report["moved_to"]), _salvage_path(path)
    if fresh.exists():  # not swapped yet: the damaged file (what is left of it) goes aside first
        for suffix in ("-wal", "-shm"):  # never left beside the new file: SQLite would apply them to it
            journal = Path(f"{path}{suffix}")
            if journal.exists():
                journal.replace(Path(f"{aside}{suffix}"))
        if path.exists():
            path.replace(aside)
        os.replace(fresh, path)
    damage_marker(path).unlink(missing_ok=True)
    try:
        backup = set_aside_backups(path, report["stamp"])
    except OSError as exc:  # the repair is done; the report must still reach the user
        log.error("could not set the daily backups aside: %s", exc)
        backup = None
    _swap_plan(path).unlink()
    return Recovered(aside, report["events"], report["datasets"], report["unreadable"], backup, tuple(report["lost"]))


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while any(Path(f"{candidate}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _salvage(damaged: Path, fresh: Path) -> tuple[dict[str, int], int | None, list[str]]:
    """Copy what reads from `damaged` into `fresh` (migrated, empty) and rebuild the derived
    tables there; leaves `fresh` a single file (journal mode DELETE) ready to be moved."""
    counts: dict[str, int] = {}
    unreadable: int | None = 0
    lost: list[str] = []
    try:
        # read-only: closing a read-write connection would checkpoint the WAL into the damaged
        # file and delete it, and the file kept aside must be what was there
        old = sqlite3.connect(damaged.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
        old_tables = {name for (name,) in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        log.error("nothing could be read from %s: %s", damaged, exc)
        old, old_tables, lost = None, set(), list(_WHOLE.values())
    new = sqlite3.connect(fresh, isolation_level=None)  # foreign keys off: parents may be lost
    try:
        new.execute("BEGIN IMMEDIATE")
        if old is not None:
            for table, what in _WHOLE.items():
                if table in old_tables and not _copy_whole(old, new, table):
                    lost.append(what)
            for table, key in _RANGED:
                if table in old_tables or (table == "event" and "event_row" in old_tables):
                    columns = _shared_columns(old, new, table)
                    write = _event_writer(new, columns) if table == "event" else _row_writer(new, table, columns)
                    counts[table], missing = _copy(old, table, key, columns, write)
                    if table == "event":
                        unreadable = missing
        counts["dataset"] = new.execute("SELECT count(*) FROM dataset").fetchone()[0]
        # Imports whose dataset row was lost get a placeholder, so they can still be listed and
        # removed (and no later import reuses their id and inherits their replaced events).
        new.execute("INSERT INTO dataset (id, name, format, created, state)"
                    " SELECT owner, 'salvaged import ' || owner, 'unknown', ?, 'done' FROM"
                    " (SELECT dataset_id AS owner FROM event UNION SELECT replaced_by FROM replaced_event)"
                    " WHERE owner IS NOT NULL AND owner NOT IN (SELECT id FROM dataset)", (int(time.time()),))
        dbmod.rebuild_rollups(new)
        new.execute("COMMIT")
        new.execute("PRAGMA journal_mode = DELETE")  # one self-contained file to move into place
    except BaseException:
        if new.in_transaction:
            new.execute("ROLLBACK")
        raise
    finally:
        new.close()
        if old is not None:
            old.close()
    return counts, unreadable, lost


def _copy_whole(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> bool:
    columns = _shared_columns(old, new, table)
    try:
        rows = old.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    except sqlite3.DatabaseError:
        return False
    new.executemany(_insert_sql(table, columns), rows)
    return True


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _shared_columns(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> list[str]:
    """The new table's columns that the damaged one has too (it may be an older schema)."""
    try:
        have = {name for _, name, *_ in old.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        have = set()
    return [name for _, name, *_ in new.execute(f"PRAGMA table_info({table})") if name in have]


def _row_writer(new: sqlite3.Connection, table: str, columns: Sequence[str]) -> Callable[[list[tuple]], int]:
    insert = _insert_sql(table, columns)
    return lambda rows: new.executemany(insert, rows).rowcount


def _event_writer(new: sqlite3.Connection, columns: Sequence[str]) -> Callable[[list[tuple]], int]:
    """Salvaged `event` rows (of any schema: columns it lacks take their defaults, latency bins
    are computed) written as the store writes them (`compact.encode`); the tags come from the
    row's own JSON."""
    names = compact.Dictionary()
    at = {c: i for i, c in enumerate(columns)}
    defaults = {"operation": "chat", "status": "ok", "requests": 1, "feature": "", "user": "", "project": "",
                "env": "", **dict.fromkeys(("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                            "cache_write_1h_tokens", "reasoning_tokens"), 0)}

    def write(rows: list[tuple]) -> int:
        full = [[row[at[c]] if c in at else defaults.get(c) for c in compact.EVENT_COLUMNS] for row in rows]
        for row in full:
            for bin_col, ms_col in (("lat_bin", "latency_ms"), ("ttft_bin", "ttft_ms")):
                if bin_col not in at:
                    row[compact.EVENT_COLUMNS.index(bin_col)] = bin_of(row[compact.EVENT_COLUMNS.index(ms_col)])
        encoded, links = compact.encode(new, names, full, [_tags(r[_TAGS_AT]) for r in full])
        stored = new.executemany(f"INSERT OR IGNORE INTO event_row ({', '.join(compact.ROW_COLUMNS)})"
                                 f" VALUES ({', '.join('?' * len(compact.ROW_COLUMNS))})", encoded).rowcount
        new.executemany("INSERT OR IGNORE INTO event_tag_link (event, tag) SELECT ?, ? WHERE EXISTS"
                        " (SELECT 1 FROM event_row WHERE id = ?1)", links)
        names.committed()  # one transaction for the whole salvage: its ids stay valid till the end
        return stored

    return write


_TAGS_AT = compact.EVENT_COLUMNS.index("tags")


def _tags(text: str | None) -> dict[str, str] | None:
    """A salvaged row's tags, if they still read as a JSON object of strings."""
    try:
        tags = json.loads(text) if text else None
    except ValueError:
        return None
    return {k: v for k, v in tags.items() if isinstance(v, str)} if isinstance(tags, dict) else None


def _copy(old: sqlite3.Connection, table: str, key: str, columns: Sequence[str],
          write: Callable[[list[tuple]], int]) -> tuple[int, int | None]:
    """Copy `table` in `key` ranges; a range that fails to read is halved until the unreadable
    ids are isolated. Returns (rows copied, ids that could not be read — None when the table's
    last id was unreadable too, so the ids probed up to a bound from the file size)."""
    if not columns:
        return 0, 0
    top, exact = _top_key(old, table, key)
    select = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} >= ? AND {key} < ?"
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
        copied += write(rows)
    return copied, unreadable if exact else None


def _top_key(old: sqlite3.Connection, table: str, key: str) -> tuple[int, bool]:
    """The largest id (exact), or when even that page is damaged a bound from the file's size."""
    try:
        top = old.execute(f"SELECT max({key}) FROM {table}").fetchone()[0]
        return int(top or 0), True
    except sqlite3.DatabaseError:
        try:
            pages = old.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.DatabaseError:
            return 0, False
        return int(pages) * 64, False  # more rows than a page holds of any table here
