"""Batched, idempotent, atomic writes of priced events, and the import datasets they belong to.

One `Store` per thread that writes (normally only the ingest writer and an import). A batch is
one `BEGIN IMMEDIATE` transaction: duplicates (an `id` already stored, or repeated in the batch)
are counted and skipped, new rows get consecutive row ids assigned by us so their tags can be
inserted with `executemany` — a per-row round trip would cost several times the throughput.
Several client batches can share one transaction (group commit) with a savepoint each, so one
bad batch never takes the others down.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from itertools import chain
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee as pw

from llmtray.core import compact, db as dbmod, latency
from llmtray.core.compact import EVENT_COLUMNS, ROW_COLUMNS
from llmtray.core.dburl import MACHINE_TAG, Database, PostgresUrl
from llmtray.core.events import ATTRIBUTION_FIELDS, UsageEvent, format_ts, parse_event
from llmtray.core.money import nanos_to_str
from llmtray.core.pricing import Priced, Pricer
from llmtray.core.rollups import add_to_rollups, remove_dataset_events
from llmtray.core.sketch import bin_of

COLUMNS = EVENT_COLUMNS  # `event`'s columns, as `_rows` builds them
_LINK_INSERT = ("INSERT INTO event_tag_link (event, tag)", "(?, ?)", "")
_MAX_ROWS_PER_STATEMENT = 128
_FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)  # stored events were validated already
# What one batch's rows can raise (SQLite errors, and values sqlite3 can't bind such as strings
# with lone surrogates): that batch fails alone, the others in the group commit still commit.
_BATCH_FAILURES = (sqlite3.Error, UnicodeError, ValueError, OverflowError)
# `event_row` columns whose value most events leave at the schema's default. A batch where every
# row has the default leaves the column out of its INSERT: binding ~15 fewer values per row was
# measured at a third of SQLite's insert time.
_DEFAULTS: dict[str, Any] = {
    "key_hash": None, "id_prefix": None, "event_id": None, "cache_read_tokens": 0, "cache_write_tokens": 0,
    "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "requests": 1, "pricing_version": None,
    "priced_model": None, "service_tier": None, "latency_ms": None, "ttft_ms": None,
    "error": None, "stream": None, "request_id": None, "dataset_id": None, "lat_bin": None, "ttft_bin": None,
}
_OPTIONAL = tuple((i, itemgetter(i), _DEFAULTS[c]) for i, c in enumerate(ROW_COLUMNS) if c in _DEFAULTS)
_ALL_COLUMNS = tuple(range(len(ROW_COLUMNS)))
_KEY_AT = ROW_COLUMNS.index("key_hash")
_LEAN_FROM_ROWS = 16  # below this, finding the omittable columns costs more than binding them
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """UTC microseconds since the epoch, exactly (no float rounding)."""
    return (ts - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@dataclass(frozen=True)
class AddResult:
    """What one batch did: rows stored and ids that were already there."""

    accepted: int
    duplicates: int
    first_ts_us: int | None = None  # oldest stored event (lets the budget monitor skip backfill)
    last_ts_us: int | None = None


@dataclass(frozen=True)
class Removal:
    """What removing a dataset did: its events deleted, and events restored in their place (the
    observed events an `--overlap replace` import had replaced; ids already back don't count)."""

    removed: int
    restored: int = 0


@dataclass(frozen=True)
class Batch:
    """Validated events from one request or import chunk, all with the same source."""

    events: Sequence[UsageEvent]
    source: str
    dataset_id: int | None = None
    # Restoring llmtray's own export keeps each event's stored cost and source instead of
    # re-pricing, so an export/import round trip is lossless.
    priced: Sequence[Priced] | None = None
    sources: Sequence[str] | None = None
    # A coding agent's log can grow a call after it was stored (Claude Code streams snapshots of
    # one message with rising counts): with `replace`, this source's own rows with the batch's
    # ids are deleted first (rollups follow through triggers), so the larger copy takes their
    # place; a row another source stored (the proxy, OTLP) is kept and the new one is a duplicate.
    replace: bool = False


class Store:
    """Writes to one database; not shared across threads (each thread opens its own `Store`)."""

    def __init__(self, database: pw.Database, pricer: Pricer | None = None, machine: str = ""):
        self.db = database
        self.pricer = pricer or Pricer()
        self.models = dbmod.models(database)
        self.names = compact.Dictionary()
        # In team mode every event says which machine recorded it (an event that already
        # names one, as `db copy` of another machine's history does, keeps its own).
        self.machine = machine

    @classmethod
    def open(cls, path: Database, pricer: Pricer | None = None) -> Store:
        return cls(dbmod.open_db(path), pricer, machine=path.machine if isinstance(path, PostgresUrl) else "")

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.connection()

    def close(self) -> None:
        self.db.close()

    # --- writes ------------------------------------------------------------------------

    def add(self, events: Sequence[UsageEvent], source: str, dataset_id: int | None = None) -> AddResult:
        """Store one batch atomically."""
        return self.add_many([Batch(events, source, dataset_id)])[0]

    def add_many(self, batches: Sequence[Batch]) -> list[AddResult | Exception]:
        """Group commit: every batch in one transaction, each under its own savepoint. A batch
        that fails (disk full, constraint) yields its exception; the others still commit."""
        rows = [self._rows(b) for b in batches]  # pricing happens outside the write lock
        conn = self.conn
        results: list[AddResult | Exception] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            next_id = _next_event_id(conn)
            if len(rows) == 1:  # alone in its transaction: the transaction is its savepoint
                try:
                    _delete_replaced(conn, batches[0])
                    result, next_id = self._insert(conn, rows[0][0], rows[0][1], next_id)
                    _note_last_event_id(conn, next_id)
                    latency.refresh(conn)  # days whose events were deleted (replaced)
                except _BATCH_FAILURES as exc:
                    conn.execute("ROLLBACK")
                    self.names.rolled_back()
                    return [exc]
                conn.execute("COMMIT")
                self.names.committed()
                return [result]
            for i, (batch_rows, batch_tags) in enumerate(rows):
                conn.execute(f"SAVEPOINT b{i}")
                try:
                    _delete_replaced(conn, batches[i])
                    result, next_id = self._insert(conn, batch_rows, batch_tags, next_id)
                    conn.execute(f"RELEASE b{i}")
                    results.append(result)
                except _BATCH_FAILURES as exc:
                    conn.execute(f"ROLLBACK TO b{i}")
                    conn.execute(f"RELEASE b{i}")
                    self.names.rolled_back()
                    next_id = _next_event_id(conn)
                    results.append(exc)
            _note_last_event_id(conn, next_id)
            latency.refresh(conn)  # days whose events were deleted (replaced)
            conn.execute("COMMIT")
            self.names.committed()
        except BaseException:
            conn.execute("ROLLBACK")
            self.names.rolled_back()
            raise
        return results

    def _rows(self, batch: Batch) -> tuple[list[list[Any]], list[dict[str, str]]]:
        received = to_us(datetime.now(UTC))
        rows: list[list[Any]] = []
        tags: list[dict[str, str]] = []
        price, priced, sources, source = self.pricer.price, batch.priced, batch.sources, batch.source
        dataset_id = batch.dataset_id
        machine = self.machine
        for i, e in enumerate(batch.events):
            p = priced[i] if priced is not None else price(e)
            rows.append([
                None, e.id, (e.ts - _EPOCH) // _ONE_US, received, e.provider, e.model, e.operation,
                e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens,
                e.cache_write_1h_tokens, e.reasoning_tokens, e.requests,
                p.cost_nanos, p.cost_source, p.pricing_version, p.priced_model,
                e.service_tier, e.latency_ms, e.ttft_ms, e.status, e.error,
                None if e.stream is None else int(e.stream),
                e.feature or "", e.user or "", e.project or "", e.env or "",
                None,  # tags: stored as links to `tag` rows (`compact.encode`)
                e.request_id, sources[i] if sources is not None else source,
                dataset_id, bin_of(e.latency_ms), bin_of(e.ttft_ms),
            ])
            tags.append({MACHINE_TAG: machine, **e.tags} if machine and MACHINE_TAG not in e.tags else e.tags)
        return rows, tags

    def _insert(
        self, conn: sqlite3.Connection, rows: list[list[Any]], tags: list[dict[str, str]], next_id: int
    ) -> tuple[AddResult, int]:
        """Insert a batch with ids from `next_id` on; an `id` already stored (or repeated in the
        batch) is skipped by the unique index of key hashes itself, so the usual batch without
        duplicates costs no extra lookups, and one with duplicates one range scan to see which
        rows went in (and a look at their keys: a hash shared by two different keys stores the
        second one without a hash)."""
        first_id = next_id
        for row in rows:
            row[0] = next_id
            next_id += 1
        encoded, links = compact.encode(conn, self.names, rows, tags)
        inserted = _insert_encoded(conn, encoded)
        fresh = rows
        if inserted < len(rows):
            stored = {i for (i,) in conn.execute("SELECT id FROM event_row WHERE id >= ? AND id < ?", (first_id, next_id))}
            skipped = [k for k, r in enumerate(encoded) if r[0] not in stored]
            known = set(compact.find(conn, [rows[k][1] for k in skipped]))
            collided = []
            for k in skipped:
                if rows[k][1] not in known:  # no stored event has this key: its hash was another's
                    known.add(rows[k][1])
                    collided.append(encoded[k][:_KEY_AT] + (None,) + encoded[k][_KEY_AT + 1:])
            if collided:
                _insert_encoded(conn, collided)
                stored.update(r[0] for r in collided)
            fresh = [r for r in rows if r[0] in stored]
            links = [link for link in links if link[0] in stored]
        if links:
            _insert_rows(conn, _LINK_INSERT, links)
        add_to_rollups(conn, first_id, next_id, bool(links))
        ts = [r[2] for r in fresh]
        result = AddResult(len(fresh), len(rows) - len(fresh), min(ts, default=None), max(ts, default=None))
        return result, next_id

    def prebuilt(self, batch: Batch) -> tuple[list[tuple[Any, ...]], list[tuple[int, int]]]:
        """The `event_row` rows and tag links this store would write for `batch` (ids from 1;
        its names are added to this database's dictionary): what the benches' ceiling inserts."""
        rows, tags = self._rows(batch)
        for k, row in enumerate(rows, start=1):
            row[0] = k
        with self.db.atomic("IMMEDIATE"):
            out = compact.encode(self.conn, self.names, rows, tags)
        self.names.committed()
        return out

    # --- datasets ------------------------------------------------------------------------

    def create_dataset(self, name: str, fmt: str, path: str | None) -> int:
        """A new import's id, never one used before (kept in `alert_state`, since the table's
        own ids restart below a removed last one): an import still running elsewhere after its
        dataset was removed must fail on the foreign key, not write into a newer import."""
        conn = self.conn
        with self.db.atomic("IMMEDIATE"):
            last = conn.execute("SELECT value FROM alert_state WHERE key = 'last_dataset_id'").fetchone()
            top = conn.execute("SELECT coalesce(max(id), 0) FROM dataset").fetchone()[0]
            dataset_id = max(top, int(last[0]) if last else 0) + 1
            conn.execute("INSERT INTO alert_state (key, value) VALUES ('last_dataset_id', ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(dataset_id),))
            self.models.Dataset.create(id=dataset_id, name=name, format=fmt, path=path, created=int(time.time()))
        return dataset_id

    def finish_dataset(self, dataset_id: int, *, rows_read: int, imported: int, duplicates: int,
                       errors: int, state: str = "done") -> None:
        self.models.Dataset.update(
            rows_read=rows_read, imported=imported, duplicates=duplicates, errors=errors, state=state
        ).where(self.models.Dataset.id == dataset_id).execute()

    def list_datasets(self) -> list[dict[str, Any]]:
        """Every dataset, oldest first, with `events`: its events stored now (an import a crash
        cut short never wrote its counts), and `replaced`: the observed events it replaced (and
        that removing it restores)."""
        replaced = dict(self.conn.execute("SELECT replaced_by, count(*) FROM replaced_event GROUP BY 1"))
        stored = dict(self.conn.execute("SELECT dataset_id, count(*) FROM event WHERE dataset_id IS NOT NULL GROUP BY 1"))
        return [d | {"replaced": replaced.get(d["id"], 0), "events": stored.get(d["id"], 0)}
                for d in self.models.Dataset.select().order_by(self.models.Dataset.id).dicts()]

    def remove_dataset(self, dataset_id: int, restore: Callable[[], Sequence[Batch]] | None = None) -> Removal:
        """Delete a dataset and its events (rollups follow through triggers).

        `restore` is called inside the same write transaction, and what it returns is stored
        there too: removing an `--overlap replace` import puts back the observed events it had
        deleted, read while no other writer (that import, still running elsewhere) can add to
        them, with no moment (or crash) where neither those events nor the imported rows exist."""
        conn = self.conn
        restored = 0
        try:
            with self.db.atomic("IMMEDIATE"):
                rows = [self._rows(b) for b in (restore() if restore is not None else ())]
                removed = remove_dataset_events(conn, dataset_id)
                self.models.Dataset.delete_by_id(dataset_id)
                if rows:
                    next_id = _next_event_id(conn)
                    for batch_rows, batch_tags in rows:
                        added, next_id = self._insert(conn, batch_rows, batch_tags, next_id)
                        restored += added.accepted
                    _note_last_event_id(conn, next_id)
                latency.refresh(conn)
        except BaseException:
            self.names.rolled_back()
            raise
        self.names.committed()
        return Removal(removed, restored)

    # --- repricing ------------------------------------------------------------------------

    def reprice(self, since_us: int | None = None, until_us: int | None = None) -> tuple[int, int]:
        """Recompute computed/unpriced costs (reported costs stay); returns (examined, changed)."""
        where, params = ["cost_source != 'reported'"], []
        if since_us is not None:
            where.append("ts >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("ts < ?")
            params.append(until_us)
        conn = self.conn
        rows = conn.execute(f"SELECT * FROM event WHERE {' AND '.join(where)}", params)
        cols = [d[0] for d in rows.description]
        updates, examined = [], 0
        for raw in rows:
            examined += 1
            stored = dict(zip(cols, raw))
            event = parse_event(event_json(stored, include_meta=False), now=_FAR_FUTURE)
            p = self.pricer.price(event)
            if (p.cost_nanos, p.cost_source, p.pricing_version, p.priced_model) != (
                stored["cost_nanos"], stored["cost_source"], stored["pricing_version"], stored["priced_model"]
            ):
                updates.append((p.cost_nanos, p.cost_source, p.pricing_version, p.priced_model, stored["id"]))
        with self.db.atomic("IMMEDIATE"):
            conn.executemany(
                "UPDATE event SET cost_nanos = ?, cost_source = ?, pricing_version = ?, priced_model = ? WHERE id = ?",
                updates,
            )
        return examined, len(updates)


def _next_event_id(conn: sqlite3.Connection) -> int:
    """The next event row id, never one used before: after the newest rows were deleted (an import
    removed, a growing agent call replaced) `max(id) + 1` would hand their ids out again, and
    whoever watches the table by its highest id (`settled.SettledTotals`, the guards) would miss
    the new rows. The highest id ever used is kept in `alert_state`, as for datasets."""
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM event").fetchone()
    last = conn.execute("SELECT value FROM alert_state WHERE key = 'last_event_id'").fetchone()
    return max(top, int(last[0]) if last else 0) + 1


def _note_last_event_id(conn: sqlite3.Connection, next_id: int) -> None:
    conn.execute("INSERT INTO alert_state (key, value) VALUES ('last_event_id', ?)"
                 " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                 " WHERE CAST(excluded.value AS INTEGER) > CAST(alert_state.value AS INTEGER)", (str(next_id - 1),))


def _delete_replaced(conn: sqlite3.Connection, batch: Batch) -> None:
    """For a `replace` batch, delete the rows of its source with its ids (see `Batch.replace`)."""
    if not batch.replace:
        return
    found = list(compact.find(conn, [e.id for e in batch.events if e.id is not None]).values())
    stale = latency.stale_days(conn)
    for start in range(0, len(found), 500):
        chunk = found[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = [i for (i,) in conn.execute(f"SELECT id FROM event WHERE source = ? AND id IN ({marks})",
                                           (batch.source, *chunk))]
        if not rows:
            continue
        # a growing agent call is replaced at every new line: take the old copy out of the
        # latency sketches exactly, rather than have its whole day recomputed each time
        latency.subtract(conn, rows)
        conn.execute(f"DELETE FROM event WHERE id IN ({', '.join('?' * len(rows))})", rows)
    conn.execute(f"DELETE FROM latency_stale WHERE day NOT IN ({', '.join(map(str, stale)) or 'NULL'})")


# --- many rows per statement ----------------------------------------------------------------


def _insert_encoded(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """INSERT `event_row` rows, leaving out (for a batch big enough to be worth the look) the
    columns every row has at their default."""
    if len(rows) < _LEAN_FROM_ROWS:
        return _insert_rows(conn, _event_insert(_ALL_COLUMNS), rows)
    omitted = _omittable(rows)
    columns = tuple(i for i in _ALL_COLUMNS if i not in omitted)
    project = itemgetter(*columns)
    return _insert_rows(conn, _event_insert(columns), [project(r) for r in rows])


def _omittable(rows: Sequence[Sequence[Any]]) -> set[int]:
    """Positions of optional columns at their default in every row (left to SQLite's DEFAULT)."""
    return {i for i, value_of, default in _OPTIONAL if set(map(value_of, rows)) == {default}}


@lru_cache(maxsize=256)
def _event_insert(columns: tuple[int, ...]) -> tuple[str, str, str]:
    names = ", ".join(ROW_COLUMNS[i] for i in columns)
    return f"INSERT INTO event_row ({names})", f"({', '.join('?' * len(columns))})", " ON CONFLICT(key_hash) DO NOTHING"


def _insert_rows(conn: sqlite3.Connection, statement: tuple[str, str, str], rows: Sequence[Sequence[Any]]) -> int:
    """INSERT `rows` with several rows per statement (`VALUES (…), (…), …`); returns rows inserted.

    `statement` is (head, one row's placeholders, tail). `executemany` steps SQLite once per row
    and re-takes the GIL after every step; when another thread is running Python meanwhile
    (request validation, the GUI) each re-take waits for it, so a 500-row batch was measured
    1.5–2× slower than the same rows in four statements. Chunk sizes are powers of two, so only a
    handful of statements are ever prepared and cached.
    """
    if not rows:
        return 0
    copied = conn.copy_rows(statement, rows) if hasattr(conn, "copy_rows") else None  # PostgreSQL: one COPY
    if copied is not None:
        return copied
    width = len(rows[0])
    limit = max(1, min(_MAX_ROWS_PER_STATEMENT, _variable_limit(conn) // width))
    start = inserted = 0
    while start < len(rows):
        count = min(limit, len(rows) - start)
        count = 1 << (count.bit_length() - 1)  # the largest power of two that fits
        params = rows[start] if count == 1 else list(chain.from_iterable(rows[start:start + count]))
        inserted += conn.execute(_multi_row_sql(statement, count), params).rowcount
        start += count
    return inserted


@lru_cache(maxsize=None)
def _multi_row_sql(statement: tuple[str, str, str], count: int) -> str:
    head, values, tail = statement
    return f"{head} VALUES {', '.join([values] * count)}{tail}"


def _variable_limit(conn: sqlite3.Connection) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+; older SQLite builds allow 999
    return getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999


# --- reading stored events back as JSON (export, reprice) -----------------------------------

_EXPORT_DEFAULTS: dict[str, Any] = {"operation": "chat", "requests": 1, "status": "ok"}
_TOKEN_COLS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cache_write_1h_tokens", "reasoning_tokens")


def event_json(row: dict[str, Any], *, include_meta: bool = True) -> dict[str, Any]:
    """A stored row as the event JSON of DESIGN §3, plus (for export) source and cost provenance.

    Reported costs are kept as `cost_usd` so that importing an export reproduces them; computed
    costs are exported under `cost_usd` too but marked `cost_source: computed`.
    """
    out: dict[str, Any] = {}
    if row["event_id"] is not None:
        out["id"] = row["event_id"]
    out["ts"] = format_ts(from_us(row["ts"]))
    out["provider"] = row["provider"]
    out["model"] = row["model"]
    for key in ("operation", "requests", "status"):
        if include_meta or row[key] != _EXPORT_DEFAULTS[key]:
            out[key] = row[key]
    for key in _TOKEN_COLS:
        if row[key] or include_meta:
            out[key] = row[key]
    for key in ("service_tier", "latency_ms", "ttft_ms", "error", "request_id"):
        if row[key] is not None:
            out[key] = row[key]
    if row["stream"] is not None:
        out["stream"] = bool(row["stream"])
    for key in ATTRIBUTION_FIELDS:
        if row[key]:
            out[key] = row[key]
    if row["tags"]:
        out["tags"] = json.loads(row["tags"])
    if row["cost_source"] == "reported" and not include_meta:
        out["cost_usd"] = nanos_to_str(row["cost_nanos"])
    if include_meta:
        out["source"] = row["source"]
        out["cost_usd"] = nanos_to_str(row["cost_nanos"])
        out["cost_source"] = row["cost_source"]
        out["pricing_version"] = row["pricing_version"]
        out["priced_model"] = row["priced_model"]
    return out


def iter_event_rows(conn: sqlite3.Connection, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every stored event in time order, streamed (constant memory for millions of rows)."""
    last_ts, last_id = -(2**62), 0
    while True:
        cur = conn.execute(
            "SELECT * FROM event WHERE (ts, id) > (?, ?) ORDER BY ts, id LIMIT ?", (last_ts, last_id, batch)
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur]
        if not rows:
            return
        yield from rows
        last_ts, last_id = rows[-1]["ts"], rows[-1]["id"]


def count_events(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM event").fetchone()[0]
