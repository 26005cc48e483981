"""Opening the SQLite store: pragmas, named migrations, backups, and the Peewee models.

There is no module-global database: `open_db(path)` returns a configured Peewee database and
`models(db)` the model classes bound to it, so two data dirs can live in one process (tests,
demo). Peewee keeps one connection per thread, which is what SQLite wants: the writer thread and
every reader have their own.

The schema is created by plain SQL migrations, numbered and named, each in its own transaction,
recorded in `PRAGMA user_version`; a database from a newer llmtray is refused, and a backup is
taken before any migration touches existing data.

A team's PostgreSQL database (`dburl.PostgresUrl`) opens through the same functions; its schema
is this one translated (`core.pg`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import peewee as pw

from llmtray.core.errors import ReadOnlyDatabaseError, SchemaTooNewError
from llmtray.core import latency
from llmtray.core.dburl import Database, PostgresUrl, causes
from llmtray.core.compact import EVENT_COLUMNS, NAMED, ROW_COLUMNS, key_hash, split_id
from llmtray.core.sketch import bin_of
from llmtray.core.trust import private_file, tighten

log = logging.getLogger(__name__)

BUCKET_US = 900 * 1_000_000  # 15 minutes: every real UTC offset is a multiple, so local days are exact
HOUR_US = 4 * BUCKET_US
DAY_US = 96 * BUCKET_US  # a UTC day
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # durable against process crashes in WAL; fsync at checkpoints
    "busy_timeout": 10_000,
    "foreign_keys": 1,
    "cache_size": -32_000,
    "temp_store": "memory",
}
# `user` is left out of the rollups on purpose: end-user ids are high-cardinality (thousands), and
# with them in the key the rollup would be as large as the event table. User views read events.
ROLLUP_DIMENSIONS = ("provider", "model", "feature", "project", "env", "source", "status")


@dataclass(frozen=True)
class Migration:
    """`backup`: copy the database aside first. Off only for a migration that just adds empty
    tables: a copy of a multi-GB database is not worth making for one that can't lose data."""

    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]
    backup: bool = True
    vacuum: bool = False  # rewrites the biggest tables: give the pages it freed back to the disk


def _m1_initial(conn: sqlite3.Connection) -> None:
    _execute_script(conn, 
        """
        CREATE TABLE dataset (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            format TEXT NOT NULL,
            path TEXT,
            created INTEGER NOT NULL,
            rows_read INTEGER NOT NULL DEFAULT 0,
            imported INTEGER NOT NULL DEFAULT 0,
            duplicates INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'running'
        );
        CREATE TABLE event (
            id INTEGER PRIMARY KEY,
            event_id TEXT UNIQUE,
            ts INTEGER NOT NULL,
            received INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            operation TEXT NOT NULL DEFAULT 'chat',
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 1,
            cost_nanos INTEGER,
            cost_source TEXT NOT NULL,
            pricing_version TEXT,
            priced_model TEXT,
            service_tier TEXT,
            latency_ms REAL,
            ttft_ms REAL,
            status TEXT NOT NULL DEFAULT 'ok',
            error TEXT,
            stream INTEGER,
            feature TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL DEFAULT '',
            project TEXT NOT NULL DEFAULT '',
            env TEXT NOT NULL DEFAULT '',
            tags TEXT,
            request_id TEXT,
            source TEXT NOT NULL,
            dataset_id INTEGER REFERENCES dataset(id)
        );
        CREATE INDEX event_ts ON event(ts);
        CREATE INDEX event_dataset ON event(dataset_id) WHERE dataset_id IS NOT NULL;
        CREATE TABLE event_tag (
            event INTEGER NOT NULL REFERENCES event(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (event, key)
        ) WITHOUT ROWID;
        CREATE INDEX event_tag_kv ON event_tag(key, value);
        """
    )


ROLLUP_SUMS = (
    "events",
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "unpriced",
)


def _rollup_values(row: str) -> dict[str, str]:
    """SQL expressions of one event row's contribution to each rollup sum."""
    return {
        "events": "1",
        "requests": f"{row}.requests",
        "input_tokens": f"{row}.input_tokens",
        "output_tokens": f"{row}.output_tokens",
        "cache_read_tokens": f"{row}.cache_read_tokens",
        "cache_write_tokens": f"{row}.cache_write_tokens",
        "cache_write_1h_tokens": f"{row}.cache_write_1h_tokens",
        "reasoning_tokens": f"{row}.reasoning_tokens",
        "cost_nanos": f"coalesce({row}.cost_nanos, 0)",
        "unpriced": f"({row}.cost_nanos IS NULL) * {row}.requests",
    }


def _m2_rollups(conn: sqlite3.Connection) -> None:
    """15-minute rollups kept exact by triggers, so dashboard views read thousands of rows, not
    millions. Triggers (not application code) keep them right for inserts, dataset removal and
    repricing alike."""
    dims = ", ".join(ROLLUP_DIMENSIONS)
    sums_cols = ", ".join(f"{s} INTEGER NOT NULL DEFAULT 0" for s in ROLLUP_SUMS)
    new, old = _rollup_values("NEW"), _rollup_values("OLD")
    bucket_new, bucket_old = f"NEW.ts / {BUCKET_US}", f"OLD.ts / {BUCKET_US}"
    upsert_set = ", ".join(f"{s} = {s} + excluded.{s}" for s in ROLLUP_SUMS)
    dims_new = ", ".join(f"NEW.{d}" for d in ROLLUP_DIMENSIONS)
    tag_sums = ("events", "requests", "cost_nanos", "unpriced")
    tag_upsert = ", ".join(f"{s} = {s} + excluded.{s}" for s in tag_sums)
    e = _rollup_values("e")
    _execute_script(conn, f"""
        CREATE TABLE rollup (
            bucket INTEGER NOT NULL, {", ".join(f"{d} TEXT NOT NULL" for d in ROLLUP_DIMENSIONS)}, {sums_cols},
            PRIMARY KEY (bucket, {dims})
        ) WITHOUT ROWID;
        CREATE TABLE tag_rollup (
            bucket INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL,
            {", ".join(f"{s} INTEGER NOT NULL DEFAULT 0" for s in tag_sums)},
            PRIMARY KEY (bucket, key, value, source)
        ) WITHOUT ROWID;

        CREATE TRIGGER event_rollup_insert AFTER INSERT ON event BEGIN
            INSERT INTO rollup (bucket, {dims}, {", ".join(ROLLUP_SUMS)})
            VALUES ({bucket_new}, {dims_new}, {", ".join(new[s] for s in ROLLUP_SUMS)})
            ON CONFLICT DO UPDATE SET {upsert_set};
        END;
        CREATE TRIGGER event_rollup_delete AFTER DELETE ON event BEGIN
            {_rollup_removal()}
        END;
        -- BEFORE: the event's tags are still there to say which tag rollups to reduce.
        CREATE TRIGGER event_tag_rollup_delete BEFORE DELETE ON event BEGIN
            UPDATE tag_rollup SET {", ".join(f"{s} = {s} - {old[s]}" for s in tag_sums)}
              WHERE bucket = {bucket_old} AND source = OLD.source
                AND (key, value) IN (SELECT key, value FROM event_tag WHERE event = OLD.id);
            DELETE FROM tag_rollup WHERE bucket = {bucket_old} AND source = OLD.source AND events = 0;
            DELETE FROM event_tag WHERE event = OLD.id;
        END;
        CREATE TRIGGER event_rollup_reprice AFTER UPDATE OF cost_nanos ON event BEGIN
            {_rollup_repricing()}
        END;
        CREATE TRIGGER event_tag_rollup_insert AFTER INSERT ON event_tag BEGIN
            INSERT INTO tag_rollup (bucket, key, value, source, {", ".join(tag_sums)})
            SELECT e.ts / {BUCKET_US}, NEW.key, NEW.value, e.source, {", ".join(e[s] for s in tag_sums)}
              FROM event e WHERE e.id = NEW.event
            ON CONFLICT DO UPDATE SET {tag_upsert};
        END;
        """)
    rebuild_rollups(conn)


TAG_SUMS = ("events", "requests", "cost_nanos", "unpriced")


def rebuild_rollups(conn: sqlite3.Connection) -> None:
    """Recompute every rollup table the schema has so far from the event table, inside the
    caller's transaction: for migrations, and for bulk copies done in plain SQL that bypass the
    store."""
    if getattr(conn, "dialect", "sqlite") == "postgresql":
        _rebuild_through_triggers(conn)
        return
    tables = _tables(conn)
    levels = [lv for lv in LEVELS if lv.table in tables]
    _drop_level_triggers(conn)
    for table in ("tag_rollup", *(lv.table for lv in levels)):
        conn.execute(f"DELETE FROM {table}")
    if "event_row" in tables:
        conn.execute(f"INSERT INTO tag_rollup (bucket, key, value, source, {', '.join(TAG_SUMS)})"
                     f" {level_selects(TAG_ROLLUP, '1', compact=True)}")
    else:
        conn.execute(f"INSERT INTO tag_rollup (bucket, key, value, source, {', '.join(TAG_SUMS)}) {tag_rollup_select('1')}")
    _fill_levels(conn, levels)
    if "event_tag_latency" in tables:  # schema 5 to 9
        conn.execute("DELETE FROM event_tag_latency")
        _fill_tag_latencies(conn)
    if "latency_sketch" in tables:
        latency.rebuild(conn)


def _rebuild_through_triggers(conn: sqlite3.Connection) -> None:
    """PostgreSQL keeps its level triggers (dropping one there needs the table's owner): emptying
    the bottom levels empties the coarse ones through them, and refilling refills them."""
    bottom = [lv for lv in (*LEVELS, TAG_ROLLUP) if lv.parent is None]
    for level in bottom:
        conn.execute(f"DELETE FROM {level.table}")
    for level in bottom:
        conn.execute(f"INSERT INTO {level.table} ({', '.join((level.time, *level.key_columns, *level.sums))})"
                     f" {level_selects(level, '1', compact=True)}")
    latency.rebuild(conn)


def _fill_tag_latencies(conn: sqlite3.Connection) -> None:
    conn.execute(f"INSERT INTO event_tag_latency (key, value, ts, event, model, latency_ms) {tag_latency_select('1')}")


# The sums a rollup row gets from events, as SELECTs over `event e` (and `event_tag t`) filtered
# by `where`: a rebuild passes "1", the store the id range of the batch it has just inserted
# (core.rollups), so both count an event the same way.

def tag_rollup_select(where: str) -> str:
    e = _rollup_values("e")
    return (f"SELECT e.ts / {BUCKET_US}, t.key, t.value, e.source, {', '.join(f'sum({e[s]})' for s in TAG_SUMS)}"
            f" FROM event_tag t JOIN event e ON e.id = t.event WHERE {where} GROUP BY 1, 2, 3, 4")


def tag_latency_select(where: str) -> str:
    return ("SELECT t.key, t.value, e.ts, e.id, e.model, e.latency_ms FROM event_tag t JOIN event e ON e.id = t.event"
            f" WHERE ({where}) AND e.status = 'ok' AND e.latency_ms IS NOT NULL")


def level_selects(level: Level, where: str, compact: bool = False) -> str:
    """For a level without a parent (the store writes those): the SELECT of its rows. `compact`
    (schema 10 on): grouped over `event_row`'s ids, each group's ids then named — naming every
    event's columns first would cost a lookup per column and row."""
    if compact:
        return _compact_select(level, where)
    source = "event_tag t JOIN event e ON e.id = t.event" if level.tagged else "event e"
    e = _rollup_values("e")
    return (f"SELECT e.ts / {level.unit_us}, {', '.join(('t.' if c in TAG_KEYS else 'e.') + c for c in level.key_columns)},"
            f" {', '.join(f'sum({e[s]})' for s in level.sums)} FROM {source} WHERE {where}"
            f" GROUP BY 1, {', '.join(level.key_columns)}")


def _compact_select(level: Level, where: str) -> str:
    inner: dict[str, str] = {}  # key column -> its id per event
    outer: dict[str, str] = {}  # key column -> its value per group
    for c in level.key_columns:
        if c in TAG_KEYS:
            inner["tag"] = "t.tag"
            outer[c] = f"(SELECT {c} FROM tag WHERE id = g.tag)"
        else:
            inner[c] = f"e.{c}"
            outer[c] = f"(SELECT text FROM name WHERE id = g.{c})"
    source = "event_row e JOIN event_tag_link t ON t.event = e.id" if level.tagged else "event_row e"
    e = _rollup_values("e")
    cols = [f"{v} AS {k}" for k, v in inner.items()]
    return (f"SELECT g.t, {', '.join(outer.values())}, {', '.join(f'g.{n}' for n in level.sums)} FROM"
            f" (SELECT e.ts / {level.unit_us} AS t, {', '.join(cols)}, {', '.join(f'sum({e[n]}) AS {n}' for n in level.sums)}"
            f" FROM {source} WHERE {where} GROUP BY {', '.join(str(i + 1) for i in range(len(cols) + 1))}) g"
            " WHERE true")  # an upsert's SELECT needs a WHERE before ON CONFLICT (SQLite's parser)




def _tables(conn: sqlite3.Connection) -> set[str]:
    return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _m3_budgets(conn: sqlite3.Connection) -> None:
    """Budgets, the threshold crossings already announced (unique, so an alert is raised once
    per budget, period and threshold across restarts), the alert history, and small alert state
    (snooze, quiet hours, anomaly cool-downs). Alerts name their budget as text so the history
    outlives a removed budget."""
    _execute_script(conn,
        """
        CREATE TABLE budget (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            limit_nanos INTEGER NOT NULL CHECK (limit_nanos > 0),
            period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
            provider TEXT, model TEXT, feature TEXT, user TEXT, project TEXT, env TEXT,
            tags TEXT,
            thresholds TEXT NOT NULL DEFAULT '50,80,100',
            enforce INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL
        );
        CREATE TABLE alert (
            id INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            budget TEXT,
            period TEXT,
            period_start INTEGER,
            delivered INTEGER NOT NULL DEFAULT 0,
            snoozed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX alert_ts ON alert(ts);
        CREATE TABLE crossing (
            budget INTEGER NOT NULL REFERENCES budget(id) ON DELETE CASCADE,
            period_start INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('threshold', 'pace')),
            threshold INTEGER NOT NULL,
            ts INTEGER NOT NULL,
            alert INTEGER REFERENCES alert(id) ON DELETE SET NULL,
            PRIMARY KEY (budget, period_start, kind, threshold)
        ) WITHOUT ROWID;
        CREATE TABLE alert_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        """
    )


def _m4_store_maintained_rollups(conn: sqlite3.Connection) -> None:
    """Inserts update the rollups from the store, one upsert per (bucket, dimensions) of a
    batch, instead of a trigger per row and per tag row: 500 events usually touch a dozen
    rollup rows, and the per-row triggers were half the cost of an import. Deletes and
    repricing (rare, row by row) keep their triggers."""
    conn.execute("DROP TRIGGER IF EXISTS event_rollup_insert")
    conn.execute("DROP TRIGGER IF EXISTS event_tag_rollup_insert")


@dataclass(frozen=True)
class Level:
    """One rollup table: sums per `unit_us`-wide UTC span (its `time` column counts them since
    the epoch), per `keys` and ROLLUP_DIMENSIONS. A level with a `parent` is summed from that
    finer table by triggers on it, so it follows whatever the parent follows (store inserts,
    dataset removal, repricing, rebuilds); a level without one is written by the store
    (`core.rollups`) and kept right by triggers on `event`."""

    table: str
    time: str
    unit_us: int
    keys: tuple[str, ...] = ()
    parent: Level | None = None
    dims: tuple[str, ...] = ROLLUP_DIMENSIONS
    sums: tuple[str, ...] = ROLLUP_SUMS

    @property
    def tagged(self) -> bool:
        return self.keys[:2] == TAG_KEYS

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.dims)

    @property
    def primary_key(self) -> tuple[str, ...]:
        # tag levels lead with the tag: a tag filter reads its own rows only
        if self.tagged:
            return (*TAG_KEYS, self.time, *self.keys[2:], *self.dims)
        return (self.time, *self.key_columns)


TAG_KEYS = ("key", "value")

ROLLUP = Level("rollup", "bucket", BUCKET_US)
ROLLUP_HOUR = Level("rollup_hour", "hour", HOUR_US, parent=ROLLUP)
ROLLUP_DAY = Level("rollup_day", "day", DAY_US, parent=ROLLUP_HOUR)
ROLLUP_TAG = Level("rollup_tag", "bucket", BUCKET_US, TAG_KEYS)
ROLLUP_TAG_HOUR = Level("rollup_tag_hour", "hour", HOUR_US, TAG_KEYS, ROLLUP_TAG)
ROLLUP_TAG_DAY = Level("rollup_tag_day", "day", DAY_US, TAG_KEYS, ROLLUP_TAG_HOUR)
# No 15-minute user level: with end users in the key it would hold nearly a row per event. Views
# by user read whole hours here and the odd quarter-hours at a range's edges from the events.
ROLLUP_USER_HOUR = Level("rollup_user_hour", "hour", HOUR_US, ("user",))
ROLLUP_USER_DAY = Level("rollup_user_day", "day", DAY_US, ("user",), ROLLUP_USER_HOUR)
# Per user and nothing else (the breakdown by user without other filters): ~1/10 of the rows.
ROLLUP_USER_TOTAL_HOUR = Level("rollup_user_total_hour", "hour", HOUR_US, ("user",), ROLLUP_USER_HOUR, dims=())
ROLLUP_USER_TOTAL_DAY = Level("rollup_user_total_day", "day", DAY_US, ("user",), ROLLUP_USER_TOTAL_HOUR, dims=())
# A tag filter with the breakdown by user: per tag and user only (no other dimension), which
# keeps it a fraction of the size of a per-tag-and-user copy of every key.
ROLLUP_TAG_USER_HOUR = Level("rollup_tag_user_hour", "hour", HOUR_US, (*TAG_KEYS, "user"), dims=())
ROLLUP_TAG_USER_DAY = Level("rollup_tag_user_day", "day", DAY_US, (*TAG_KEYS, "user"), ROLLUP_TAG_USER_HOUR, dims=())
# Families, coarsest level first: what a query may read instead of events.
PLAIN_LEVELS = (ROLLUP_DAY, ROLLUP_HOUR, ROLLUP)
TAG_LEVELS = (ROLLUP_TAG_DAY, ROLLUP_TAG_HOUR, ROLLUP_TAG)
USER_LEVELS = (ROLLUP_USER_DAY, ROLLUP_USER_HOUR)
USER_TOTAL_LEVELS = (ROLLUP_USER_TOTAL_DAY, ROLLUP_USER_TOTAL_HOUR)
TAG_USER_LEVELS = (ROLLUP_TAG_USER_DAY, ROLLUP_TAG_USER_HOUR)
LEVELS = (*PLAIN_LEVELS, *TAG_LEVELS, *USER_LEVELS, *USER_TOTAL_LEVELS, *TAG_USER_LEVELS)
# The first tag rollup (migration 2): per quarter-hour, tag and source only. Still read where
# tag pairs were seen; written by the store like a level (its table predates `Level`).
TAG_ROLLUP = Level("tag_rollup", "bucket", BUCKET_US, TAG_KEYS, dims=("source",), sums=TAG_SUMS)


# --- how a deleted or repriced event (OLD, NEW) leaves or changes the rollups: statements for
# the triggers on `event` (a table until schema 11, then a view whose INSTEAD OF triggers run
# these same statements).

_OLD_BUCKET = f"OLD.ts / {BUCKET_US}"
_OLD_DIMS = " AND ".join(f"{d} = OLD.{d}" for d in ROLLUP_DIMENSIONS)
_OLD_TAGS = "(key, value) IN (SELECT key, value FROM event_tag WHERE event = OLD.id)"
_TAG_MATCH = f"{_OLD_TAGS} AND bucket = OLD.ts / {BUCKET_US} AND {_OLD_DIMS}"
_USER_MATCH = f"hour = OLD.ts / {HOUR_US} AND user = OLD.user AND {_OLD_DIMS}"
_TAG_USER_MATCH = f"{_OLD_TAGS} AND hour = OLD.ts / {HOUR_US} AND user = OLD.user"


def _minus_old(sums: tuple[str, ...]) -> str:
    old = _rollup_values("OLD")
    return ", ".join(f"{s} = {s} - {old[s]}" for s in sums)


def _repriced() -> str:
    old, new = _rollup_values("OLD"), _rollup_values("NEW")
    return (f"cost_nanos = cost_nanos - {old['cost_nanos']} + {new['cost_nanos']},"
            f" unpriced = unpriced - {old['unpriced']} + {new['unpriced']}")


def _taken_out(table: str, match: str, sums: tuple[str, ...] = ROLLUP_SUMS) -> str:
    """OLD's sums out of `table`'s row(s) matching `match`, and a row left with no events gone."""
    return (f"UPDATE {table} SET {_minus_old(sums)} WHERE {match};\n"
            f"DELETE FROM {table} WHERE {match} AND events = 0;")


def _repriced_in(table: str, match: str) -> str:
    return f"UPDATE {table} SET {_repriced()} WHERE {match};"


def _rollup_removal() -> str:
    return _taken_out("rollup", f"bucket = {_OLD_BUCKET} AND {_OLD_DIMS}")


def _rollup_repricing() -> str:
    return "\n".join((_repriced_in("rollup", f"bucket = {_OLD_BUCKET} AND {_OLD_DIMS}"),
                      _repriced_in("tag_rollup", f"bucket = {_OLD_BUCKET} AND source = OLD.source AND {_OLD_TAGS}")))


def _tag_levels_repricing() -> str:
    return "\n".join((_repriced_in("rollup_tag", _TAG_MATCH), _repriced_in("rollup_tag_user_hour", _TAG_USER_MATCH)))


def _user_removal() -> str:
    return _taken_out("rollup_user_hour", _USER_MATCH)


def _user_repricing() -> str:
    return _repriced_in("rollup_user_hour", _USER_MATCH)


def _tag_removal() -> str:
    """A deleted event out of every rollup keyed by tag: while its tags are still there."""
    return "\n".join((
        f"UPDATE tag_rollup SET {_minus_old(TAG_SUMS)} WHERE bucket = {_OLD_BUCKET} AND source = OLD.source"
        f" AND {_OLD_TAGS};",
        f"DELETE FROM tag_rollup WHERE bucket = {_OLD_BUCKET} AND source = OLD.source AND events = 0;",
        _taken_out("rollup_tag", _TAG_MATCH),
        _taken_out("rollup_tag_user_hour", _TAG_USER_MATCH)))


def _m5_coarse_rollups(conn: sqlite3.Connection) -> None:
    """Hour and day rollups, and rollups per tag and per end user, so that a 90-day view of ten
    million events reads a few thousand rows, tag filters and by-user breakdowns included; and
    the latency view's paths to the newest calls (an index, and tagged events by time).

    Coarse or narrower levels are summed from finer ones by triggers (`Level.parent`). The tag and user
    levels at the bottom are written by the store and corrected by triggers on `event` for
    removal and repricing; the tag one must see the event's tags before they go, so the
    BEFORE DELETE trigger that removes them is replaced by one that updates both tag rollups."""
    new = [lv for lv in LEVELS if lv is not ROLLUP]
    for level in new:
        _create_level(conn, level)
    _execute_script(conn, """
        -- The latency view takes the newest N successful calls under the filters: this walks
        -- them newest first without reading rows that a provider/model/feature/source filter
        -- rejects; event_model_latency walks one model's calls (a rarely used model would
        -- otherwise mean walking everyone's); event_tag_latency those that carry a tag.
        CREATE INDEX event_latency ON event (ts, id, provider, model, feature, source, status, latency_ms)
            WHERE status = 'ok' AND latency_ms IS NOT NULL;
        CREATE INDEX event_model_latency ON event (model, ts, id, status, latency_ms)
            WHERE status = 'ok' AND latency_ms IS NOT NULL;
        CREATE TABLE event_tag_latency (
            key TEXT NOT NULL, value TEXT NOT NULL, ts INTEGER NOT NULL, event INTEGER NOT NULL,
            model TEXT NOT NULL, latency_ms REAL NOT NULL,
            PRIMARY KEY (key, value, ts, event)
        ) WITHOUT ROWID;
        """)
    _execute_script(conn, f"""
        DROP TRIGGER event_tag_rollup_delete;
        CREATE TRIGGER event_tag_rollup_delete BEFORE DELETE ON event BEGIN
            {_tag_removal()}
            DELETE FROM event_tag_latency WHERE {_OLD_TAGS} AND ts = OLD.ts AND event = OLD.id;
            DELETE FROM event_tag WHERE event = OLD.id;
        END;
        CREATE TRIGGER event_tag_levels_reprice AFTER UPDATE OF cost_nanos ON event BEGIN
            {_tag_levels_repricing()}
        END;
        CREATE TRIGGER event_user_rollup_delete AFTER DELETE ON event BEGIN
            {_user_removal()}
        END;
        CREATE TRIGGER event_user_rollup_reprice AFTER UPDATE OF cost_nanos ON event BEGIN
            {_user_repricing()}
        END;
        """)
    _fill_levels(conn, new)
    _fill_tag_latencies(conn)


def _m6_replaced_events(conn: sqlite3.Connection) -> None:
    """The observed events an `--overlap replace` import deleted, kept with the dataset that
    replaced them (`replaced_by`): removing that import, or one a crash cut short, puts them back,
    so replacing never leaves the only copy of an event in memory or a temporary table. The
    columns are `event`'s, in its order (a later migration adding a column to `event` adds it
    here too; a test pins that); no constraints, as these rows are copies."""
    columns = ", ".join(f"{name} {decl}" for _, name, decl, *_ in conn.execute("PRAGMA table_info(event)"))
    conn.execute(f"CREATE TABLE replaced_event (replaced_by INTEGER NOT NULL REFERENCES dataset(id) "
                 f"ON DELETE CASCADE, {columns})")
    conn.execute("CREATE INDEX replaced_event_by ON replaced_event(replaced_by)")


def _m7_blocks(conn: sqlite3.Connection) -> None:
    """Blocks (`core.blocks`): a scope whose calls the proxy and enforcing hooks refuse, until a
    time or until lifted; lifted ones stay as history (the Blocks panel counts what each refused).
    Guards: per-call and average-cost limits whose trip creates a block. Scopes are JSON
    (`Scope.as_dict`), read back through `Scope`'s validation."""
    _execute_script(conn,
        """
        CREATE TABLE block (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL CHECK (created_by IN ('user', 'guard', 'alert')),
            created INTEGER NOT NULL,
            until INTEGER,
            lifted INTEGER
        );
        CREATE INDEX block_open ON block(lifted, until);
        CREATE TABLE guard (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            scope TEXT NOT NULL,
            max_request_nanos INTEGER CHECK (max_request_nanos > 0),
            max_avg_nanos INTEGER CHECK (max_avg_nanos > 0),
            window INTEGER NOT NULL CHECK (window > 0),
            block_seconds INTEGER CHECK (block_seconds > 0),
            created INTEGER NOT NULL,
            CHECK ((max_request_nanos IS NULL) != (max_avg_nanos IS NULL))
        );
        """)


def _m8_billing(conn: sqlite3.Connection) -> None:
    """The provider's bill (DESIGN §13), a ledger of its own, never mixed into event totals:
    `billing_page` keeps every response as received with its fetch time; `billing_row` holds
    the normalised rows, one per (source, UTC day, dimensions) — a re-fetch of a day replaces
    them; `billing_day` marks each fetched day provisional or settled with its as-of time;
    `billing_source` is each source's sync state; `billing_alert` makes the drift alert once
    per day and source."""
    _execute_script(conn, """
        CREATE TABLE billing_page (id INTEGER PRIMARY KEY, source TEXT NOT NULL, endpoint TEXT NOT NULL,
            params TEXT NOT NULL, fetched_at REAL NOT NULL, body TEXT NOT NULL);
        CREATE INDEX billing_page_source ON billing_page(source, fetched_at);
        CREATE TABLE billing_row (source TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL,
            model TEXT NOT NULL, project TEXT NOT NULL, item TEXT NOT NULL, category TEXT NOT NULL,
            tier TEXT NOT NULL, context TEXT NOT NULL, amount_nanos INTEGER, requests INTEGER,
            input_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
            PRIMARY KEY (source, day, kind, model, project, item, category, tier, context)) WITHOUT ROWID;
        CREATE TABLE billing_day (source TEXT NOT NULL, day TEXT NOT NULL, status TEXT NOT NULL
            CHECK (status IN ('provisional', 'settled')), as_of REAL NOT NULL,
            PRIMARY KEY (source, day)) WITHOUT ROWID;
        CREATE TABLE billing_source (source TEXT PRIMARY KEY, state TEXT NOT NULL, message TEXT NOT NULL,
            last_attempt REAL, last_success REAL, retry_at REAL, backfilled INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE billing_alert (source TEXT NOT NULL, day TEXT NOT NULL, alerted_at REAL NOT NULL,
            PRIMARY KEY (source, day)) WITHOUT ROWID;
    """)


def _m9_agent_files(conn: sqlite3.Connection) -> None:
    """Where the coding-agent tailer stopped in each log file (`llmtray.agents`): identity
    (device, inode, a hash of the first bytes) to notice a replaced or truncated file, the byte
    offset of the first line not yet read, the agent's own running state (Codex's cumulative
    totals), and the lines skipped with why. A restart resumes from here instead of re-reading."""
    conn.execute("""
        CREATE TABLE agent_file (
            path TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            offset INTEGER NOT NULL,
            head_hash TEXT NOT NULL,
            head_len INTEGER NOT NULL,
            state TEXT,
            skipped TEXT,
            events INTEGER NOT NULL DEFAULT 0
        )""")
    conn.execute("CREATE INDEX agent_file_source ON agent_file(source)")


def _m10_compact_store(conn: sqlite3.Connection) -> None:
    """The compact store (`core.compact`, `core.latency`): strings as ids into one dictionary, tags
    as (event, tag id) pairs, the idempotency key indexed by its hash, and latency percentiles
    from sketches of every call instead of two partial indexes and a per-tag copy of each call
    (41 % of a large database). `event` and `event_tag` become views with the columns they always
    had (plus each call's latency bins), so every reader's SQL is unchanged; deleting from `event`
    or repricing it goes through INSTEAD OF triggers that run the very statements the table's
    triggers ran, then change the compact rows."""
    conn.create_function("llmtray_key", 1, key_hash, deterministic=True)
    conn.create_function("llmtray_id_prefix", 1, lambda i: split_id(i)[0], deterministic=True)
    conn.create_function("llmtray_id_stored", 1, lambda i: split_id(i)[1], deterministic=True)
    conn.create_function("llmtray_bin", 1, bin_of, deterministic=True)
    named = " UNION ".join(f"SELECT {c} FROM event WHERE {c} IS NOT NULL" for c in NAMED)
    rows = ", ".join(_ROW_VALUES.get(c, f"e.{c}") for c in ROW_COLUMNS)
    _execute_script(conn, f"""
        CREATE TABLE name (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
        CREATE TABLE tag (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (key, value));
        INSERT INTO name (text) {named}
            UNION SELECT llmtray_id_prefix(event_id) FROM event WHERE llmtray_id_prefix(event_id) IS NOT NULL;
        INSERT INTO tag (key, value) SELECT DISTINCT key, value FROM event_tag;
        {_EVENT_ROW}
        INSERT INTO event_row ({", ".join(ROW_COLUMNS)}) SELECT {rows} FROM event e ORDER BY e.id;
        CREATE TABLE event_tag_link (event INTEGER NOT NULL, tag INTEGER NOT NULL, PRIMARY KEY (event, tag)) WITHOUT ROWID;
        INSERT INTO event_tag_link (event, tag)
            SELECT t.event, g.id FROM event_tag t JOIN tag g ON g.key = t.key AND g.value = t.value ORDER BY 1, 2;
        DROP TABLE event_tag_latency;
        DROP TABLE event_tag;
        DROP TABLE event;
        CREATE UNIQUE INDEX event_row_key ON event_row (key_hash);
        -- the rare key whose hash another key had first is stored without one, and found by text
        CREATE INDEX event_row_collided ON event_row (event_id) WHERE key_hash IS NULL AND event_id IS NOT NULL;
        CREATE INDEX event_row_ts ON event_row (ts);
        CREATE INDEX event_row_dataset ON event_row (dataset_id) WHERE dataset_id IS NOT NULL;
        CREATE INDEX event_tag_link_tag ON event_tag_link (tag, event);
        CREATE TABLE latency_sketch (
            tag INTEGER NOT NULL, unit INTEGER NOT NULL, time INTEGER NOT NULL,
            model INTEGER NOT NULL, provider INTEGER NOT NULL, feature INTEGER NOT NULL, source INTEGER NOT NULL,
            lat BLOB, ttft BLOB,
            PRIMARY KEY (tag, unit, time, model, provider, feature, source)
        ) WITHOUT ROWID;
        CREATE TABLE latency_stale (day INTEGER PRIMARY KEY);
        {_EVENT_VIEWS}
        """)
    # `replaced_event` mirrors `event`'s columns (the bins too)
    _execute_script(conn, """
        ALTER TABLE replaced_event ADD COLUMN lat_bin INTEGER;
        ALTER TABLE replaced_event ADD COLUMN ttft_bin INTEGER;
        UPDATE replaced_event SET lat_bin = llmtray_bin(latency_ms), ttft_bin = llmtray_bin(ttft_ms)
            WHERE latency_ms IS NOT NULL OR ttft_ms IS NOT NULL;
        """)
    latency.rebuild(conn)


def _name_of(column: str) -> str:
    return f"(SELECT text FROM name WHERE id = r.{column})"


# How migration 11 fills each event_row column from the old table (`e`); the rest copy as they are.
_ROW_VALUES = {
    "lat_bin": "llmtray_bin(e.latency_ms)",
    "ttft_bin": "llmtray_bin(e.ttft_ms)",
    "key_hash": "llmtray_key(e.event_id)",
    "id_prefix": "(SELECT id FROM name WHERE text = llmtray_id_prefix(e.event_id))",
    "event_id": "llmtray_id_stored(e.event_id)",
    **{c: f"(SELECT id FROM name WHERE text = e.{c})" for c in NAMED},
}
_ROW_TYPES = {
    "id": "INTEGER PRIMARY KEY", "key_hash": "INTEGER", "id_prefix": "INTEGER", "event_id": "",
    "ts": "INTEGER NOT NULL", "received": "INTEGER NOT NULL",
    **dict.fromkeys(("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                     "cache_write_1h_tokens", "reasoning_tokens"), "INTEGER NOT NULL DEFAULT 0"),
    "requests": "INTEGER NOT NULL DEFAULT 1", "cost_nanos": "INTEGER", "latency_ms": "REAL", "ttft_ms": "REAL",
    "error": "TEXT", "stream": "INTEGER", "request_id": "TEXT", "dataset_id": "INTEGER REFERENCES dataset(id)",
    "lat_bin": "INTEGER", "ttft_bin": "INTEGER",
    # names: ids into `name` (the optional ones may be NULL)
    **{c: "INTEGER" if c in ("pricing_version", "priced_model", "service_tier") else "INTEGER NOT NULL" for c in NAMED},
}
_EVENT_ROW = f"""
        CREATE TABLE event_row ({", ".join(f"{c} {_ROW_TYPES[c]}".strip() for c in ROW_COLUMNS)});"""
_VIEW_VALUES = {
    "event_id": "CASE WHEN r.id_prefix IS NULL THEN r.event_id"
                " ELSE (SELECT text FROM name WHERE id = r.id_prefix) || ':' || lower(hex(r.event_id)) END",
    "tags": "(SELECT nullif(json_group_object(key, value), '{}') FROM (SELECT g.key, g.value FROM event_tag_link l"
            " JOIN tag g ON g.id = l.tag WHERE l.event = r.id ORDER BY g.key))",
    **{c: _name_of(c) for c in NAMED},
}
_REPRICED = ("cost_nanos", "cost_source", "pricing_version", "priced_model")
_EVENT_VIEWS = f"""
        CREATE VIEW event AS SELECT {", ".join(f"{_VIEW_VALUES.get(c, 'r.' + c)} AS {c}" for c in EVENT_COLUMNS)}
            FROM event_row r;
        CREATE VIEW event_tag AS SELECT l.event AS event, g.key AS key, g.value AS value
            FROM event_tag_link l JOIN tag g ON g.id = l.tag;
        CREATE TRIGGER event_delete INSTEAD OF DELETE ON event BEGIN
            {_rollup_removal()}
            {_tag_removal()}
            {_user_removal()}
            -- sketches can't be taken apart in SQL: the day is recomputed (`latency.refresh`)
            INSERT OR IGNORE INTO latency_stale (day) SELECT OLD.ts / {DAY_US}
              WHERE OLD.status = 'ok' AND (OLD.lat_bin IS NOT NULL OR OLD.ttft_bin IS NOT NULL);
            DELETE FROM event_tag_link WHERE event = OLD.id;
            DELETE FROM event_row WHERE id = OLD.id;
        END;
        CREATE TRIGGER event_reprice INSTEAD OF UPDATE OF {", ".join(_REPRICED)} ON event BEGIN
            {_rollup_repricing()}
            {_tag_levels_repricing()}
            {_user_repricing()}
            INSERT OR IGNORE INTO name (text) VALUES {", ".join(f"(NEW.{c})" for c in _REPRICED[1:])};
            UPDATE event_row SET cost_nanos = NEW.cost_nanos,
                {", ".join(f"{c} = (SELECT id FROM name WHERE text = NEW.{c})" for c in _REPRICED[1:])}
              WHERE id = OLD.id;
        END;"""


def _create_level(conn: sqlite3.Connection, level: Level) -> None:
    cols = ", ".join(
        [f"{level.time} INTEGER NOT NULL"]
        + [f"{c} TEXT NOT NULL" for c in level.key_columns]
        + [f"{s} INTEGER NOT NULL DEFAULT 0" for s in level.sums]
    )
    conn.execute(f"CREATE TABLE {level.table} ({cols}, PRIMARY KEY ({', '.join(level.primary_key)})) WITHOUT ROWID")


def _fill_levels(conn: sqlite3.Connection, levels: list[Level]) -> None:
    """Fill empty level tables (finest first, each coarse one from its parent) with their
    parent triggers dropped meanwhile, then (re)create those triggers: one GROUP BY per table
    instead of a trigger per parent row."""
    _drop_level_triggers(conn, levels)
    for level in sorted(levels, key=lambda lv: lv.unit_us):
        cols = ", ".join(level.key_columns)
        if level.parent is not None:
            p = level.parent
            select = (f"SELECT {p.time} / {level.unit_us // p.unit_us}, {cols}, {', '.join(f'sum({s})' for s in level.sums)}"
                      f" FROM {p.table} GROUP BY 1, {cols}")
            conn.execute(f"INSERT INTO {level.table} ({level.time}, {cols}, {', '.join(level.sums)}) {select}")
        else:
            select = level_selects(level, "1", compact="event_row" in _tables(conn))
            conn.execute(f"INSERT INTO {level.table} ({level.time}, {cols}, {', '.join(level.sums)}) {select}")
    for level in levels:
        if level.parent is not None:
            _execute_script(conn, _level_triggers(level))


def _drop_level_triggers(conn: sqlite3.Connection, levels: Sequence[Level] = LEVELS) -> None:
    for level in levels:
        if level.parent is not None:
            for action in ("add", "change", "remove"):
                conn.execute(f"DROP TRIGGER IF EXISTS {level.table}_{action}")


def _level_triggers(level: Level) -> str:
    """Triggers that carry every change of `level.parent` into `level` as a delta."""
    p = level.parent
    assert p is not None
    cols, sums = level.key_columns, level.sums
    time = f"{p.time} / {level.unit_us // p.unit_us}"
    match = " AND ".join([f"{level.time} = OLD.{time}", *(f"{c} = OLD.{c}" for c in cols)])
    return f"""
        CREATE TRIGGER {level.table}_add AFTER INSERT ON {p.table} BEGIN
            INSERT INTO {level.table} ({level.time}, {", ".join(cols)}, {", ".join(sums)})
            VALUES (NEW.{time}, {", ".join(f"NEW.{c}" for c in cols)}, {", ".join(f"NEW.{s}" for s in sums)})
            ON CONFLICT DO UPDATE SET {", ".join(f"{s} = {s} + excluded.{s}" for s in sums)};
        END;
        CREATE TRIGGER {level.table}_change AFTER UPDATE ON {p.table} BEGIN
            UPDATE {level.table} SET {", ".join(f"{s} = {s} + NEW.{s} - OLD.{s}" for s in sums)}
             WHERE {match};
        END;
        CREATE TRIGGER {level.table}_remove AFTER DELETE ON {p.table} BEGIN
            UPDATE {level.table} SET {", ".join(f"{s} = {s} - OLD.{s}" for s in sums)} WHERE {match};
            DELETE FROM {level.table} WHERE {match} AND {sums[0]} = 0;
        END;
        """


MIGRATIONS: list[Migration] = [
    Migration(1, "initial", _m1_initial),
    Migration(2, "rollups", _m2_rollups),
    Migration(3, "budgets", _m3_budgets),
    Migration(4, "store-maintained-rollups", _m4_store_maintained_rollups),
    Migration(5, "coarse-rollups", _m5_coarse_rollups),
    Migration(6, "replaced-events", _m6_replaced_events, backup=False),
    Migration(7, "blocks-and-guards", _m7_blocks, backup=False),
    Migration(8, "billing", _m8_billing, backup=False),
    Migration(9, "agent-files", _m9_agent_files, backup=False),
    Migration(10, "compact-store", _m10_compact_store, vacuum=True),
]


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run a multi-statement script inside the caller's transaction (`executescript` would
    commit first), splitting where SQLite itself says a statement is complete."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            conn.execute(pending)
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in migration: {pending[:80]!r}")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def pending_migrations(path: Path) -> list[Migration]:
    """The migrations `migrate` would apply to the database at `path` (none for a newer one)."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        current = schema_version(conn)
    finally:
        conn.close()
    return [m for m in MIGRATIONS if m.version > current] if current > 0 else []


def _wal(conn: sqlite3.Connection, timeout: float = 10.0) -> None:
    """`PRAGMA journal_mode=wal`, waiting like any other statement: SQLite answers this pragma
    "database is locked" at once, without its busy handler, while another connection holds a
    lock. At the app's start several threads (budget monitor, mail, ingest) open the database
    together, and the one that lost gave up for the session: no budget alerts, no mail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=wal")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def migrate(path: Database, upto: int | None = None) -> int:
    """Bring the database at `path` to the newest (or `upto`) schema; returns the version."""
    if isinstance(path, PostgresUrl):
        from llmtray.core import pg

        conn = pg.connect(path)
        try:
            return pg.migrate(conn)
        finally:
            conn.close()
    target = upto if upto is not None else MIGRATIONS[-1].version
    private_file(path)  # 0600 before SQLite makes it (its -wal and -shm copy the file's mode)
    for journal in ("-wal", "-shm"):
        tighten(path.with_name(path.name + journal))
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        _wal(conn)
        current = schema_version(conn)
        if current > MIGRATIONS[-1].version:
            raise SchemaTooNewError(
                f"{path} has schema version {current}, newer than this llmtray understands "
                f"({MIGRATIONS[-1].version}); upgrade llmtray or use another --data-dir"
            )
        pending = [m for m in MIGRATIONS if current < m.version <= target]
        if current > 0 and any(m.backup for m in pending):
            backup(conn, path.with_name(f"{path.name}.before-v{pending[0].version}.bak"))
        for m in pending:
            log.info("migrating %s to version %d (%s)", path, m.version, m.name)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if schema_version(conn) >= m.version:  # another process got there first
                    conn.execute("ROLLBACK")
                    continue
                m.apply(conn)
                conn.execute(f"PRAGMA user_version = {m.version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if any(m.vacuum for m in pending) and current > 0:
            try:
                conn.execute("VACUUM")  # atomic: a crash or a full disk leaves the migrated file as it was
            except sqlite3.OperationalError as exc:
                log.warning("the migrated database keeps its old size on disk (VACUUM failed: %s)", exc)
        return schema_version(conn)
    finally:
        conn.close()


def remove_database_files(path: Path) -> None:
    """Delete a database file and any journal beside it (a stale -wal next to a new file of the
    same name would be applied to it)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def backup(conn: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy through SQLite's backup API (safe while others read and write)."""
    target = sqlite3.connect(dest)
    try:
        conn.backup(target)
    finally:
        target.close()


def open_db(path: Database, *, migrate_schema: bool = True) -> pw.Database:
    """A Peewee database on `path`, migrated, with one connection per thread."""
    if isinstance(path, PostgresUrl):
        from llmtray.core import pg

        return pg.open_db(path, migrate_schema=migrate_schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    if migrate_schema:
        migrate(path)
    db = pw.SqliteDatabase(str(path), pragmas=PRAGMAS, timeout=10, autoconnect=True)
    db.connect(reuse_if_open=True)
    return db


# SQLite's words for "this file or its folder can't be written" (a WAL database needs its folder
# writable for the -wal and -shm files, even to read, unless it is opened immutable)
_READ_ONLY_MESSAGES = ("readonly database", "unable to open database file", "read-only file system")


def cannot_write(exc: BaseException) -> bool:
    """Whether `exc` says the database or its folder is not writable (not damage, not a bug):
    a read-only file or folder, or on a team's PostgreSQL a role without write grants."""
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno == 30):  # EROFS
        return True
    for seen in causes(exc):
        if type(seen).__name__ in ("InsufficientPrivilege", "ReadOnlySqlTransaction"):  # psycopg's
            return True
        if (isinstance(seen, (sqlite3.OperationalError, pw.OperationalError))
                and any(m in str(seen).lower() for m in _READ_ONLY_MESSAGES)):
            return True
    return False


def write_refused(path: Database, exc: BaseException) -> ReadOnlyDatabaseError:
    """What a writer says when `cannot_write(exc)`: which database, why, and what to do."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(path, PostgresUrl):
        return ReadOnlyDatabaseError(f"the team database {path} refused a write ({reason}): this role is read-only; "
                                     "ask the database's owner for write grants, or use a writer's account")
    return ReadOnlyDatabaseError(f"cannot write to {path} ({reason}): the data folder {path.parent} or the database "
                                 "is read-only; make both writable, or use another --data-dir")


def connect(path: Database, *, timeout: float = 10.0, read_only: bool = False,
            autocommit: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
    """A raw DB-API connection for code that doesn't use Peewee: `sqlite3.connect` on a file
    (`autocommit`: isolation_level None, explicit BEGINs), or the same protocol on the team
    database (always explicit transactions there, as our SQLite code writes them)."""
    if isinstance(path, PostgresUrl):
        from llmtray.core import pg

        return pg.connect(path, read_only=read_only)  # type: ignore[return-value]
    target = f"file:{path}?mode=ro" if read_only else str(path)
    kwargs: dict[str, Any] = {"isolation_level": None} if autocommit else {}
    return sqlite3.connect(target, uri=read_only, timeout=timeout, check_same_thread=check_same_thread, **kwargs)


def open_read_only(path: Database) -> pw.Database:
    """The database at `path` for reading only, when it can't be written: no migration, no
    journal-mode switch. Tried as a plain read-only open first, then `immutable` (a WAL database
    whose folder can't hold the -shm file; nobody can write it there either). Raises
    `ReadOnlyDatabaseError` with one clear sentence when it needs a migration first."""
    if isinstance(path, PostgresUrl):  # a viewer's read-only role: every write is refused by the server
        from llmtray.core import pg

        db = pg.open_db(path, migrate_schema=False)
        db.connection().execute("PRAGMA query_only = ON")  # this thread's connection, reconnected or not
        return db
    if not path.exists():
        raise ReadOnlyDatabaseError(f"there is no database at {path} yet, and its folder is read-only")
    last: Exception | None = None
    for params in ("mode=ro", "mode=ro&immutable=1"):
        db = pw.SqliteDatabase(f"file:{path}?{params}", uri=True, timeout=10, autoconnect=True,
                               pragmas={k: v for k, v in PRAGMAS.items() if k not in ("journal_mode", "synchronous")})
        try:
            db.connect(reuse_if_open=True)
            version = schema_version(db.connection())
            db.connection().execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (sqlite3.Error, pw.PeeweeException) as exc:
            last = exc
            db.close()
            continue
        latest = MIGRATIONS[-1].version
        if version != latest:
            db.close()
            if version > latest:
                raise SchemaTooNewError(f"{path} has schema version {version}, newer than this llmtray understands "
                                        f"({latest}); upgrade llmtray or use another --data-dir")
            raise ReadOnlyDatabaseError(
                f"{path} is read-only and was written by an older llmtray: it needs an upgrade (schema {version} "
                f"→ {latest}) that can't be written; make the data folder writable and run any llmtray command once")
        return db
    raise ReadOnlyDatabaseError(f"cannot read {path} ({last})")


def models(db: pw.Database) -> SimpleNamespace:
    """Peewee models bound to `db` (one set per database, no globals)."""

    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Dataset(Base):
        name = pw.TextField()
        format = pw.TextField()
        path = pw.TextField(null=True)
        created = pw.IntegerField()
        rows_read = pw.IntegerField(default=0)
        imported = pw.IntegerField(default=0)
        duplicates = pw.IntegerField(default=0)
        errors = pw.IntegerField(default=0)
        state = pw.TextField(default="running")

    return SimpleNamespace(Dataset=Dataset)
