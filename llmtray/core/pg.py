"""PostgreSQL as llmtray's store (team mode, DESIGN §16), behind the sqlite3 connection protocol.

Every reader and writer in llmtray speaks SQL to a DB-API connection with SQLite's dialect:
`?` placeholders, `INSERT OR IGNORE`, `BEGIN IMMEDIATE`, `sqlite3.Error` subclasses. Rather
than fork each of them, `PgConnection` speaks that protocol over psycopg 3: it rewrites the few
dialect differences of our own SQL once per statement text (cached), and maps psycopg's
exceptions onto the sqlite3 classes every caller already catches (the original is chained).
So the store, the queries, the budgets and every importer run unchanged on both backends, and
the suites that check them run on both.

The schema is not a second hand-written copy: it is SQLite's schema at the latest migration,
translated (`schema_statements`): the same tables, indexes, views and trigger bodies, with
PostgreSQL's types, plpgsql functions around the trigger bodies, and a few compatibility
definitions (`sum(boolean)`, `boolean * integer`, a case-insensitive collation).

Concurrency: writers take one transaction-scoped advisory lock (`BEGIN IMMEDIATE` does it),
exactly as SQLite serialises writers. The store assigns event row ids itself and readers (the
guards, the settled totals) watch the table by its highest id, so ids must become visible in
order; one writer at a time guarantees that, and a batch is a single short transaction.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import peewee as pw
import psycopg
from psycopg import _queries, errors as pg_errors, postgres
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import NumericLoader

from llmtray.core.dburl import PostgresUrl
from llmtray.core.errors import ReadOnlyDatabaseError, SchemaTooNewError

WRITE_LOCK = 0x6C6C6D74  # "llmt": the advisory lock a write transaction holds
MIGRATE_LOCK = WRITE_LOCK + 1  # held while a machine creates or upgrades the schema
BASE_VERSION = 10  # SQLite's migration the PostgreSQL schema is translated from
# Each SQLite migration after BASE_VERSION gets its PostgreSQL step here, (version, statements),
# applied in order to an existing team database and after the base to a new one (a test keeps the
# two lists in step).
UPGRADES: tuple[tuple[int, tuple[str, ...]], ...] = ()
SCHEMA_VERSION = max([BASE_VERSION, *(v for v, _ in UPGRADES)])
RESERVED = ("user", "offset", "window")  # our column names PostgreSQL reserves (quoted when bare)


class _IntegralNumeric(NumericLoader):
    """`sum(bigint)` is `numeric` in PostgreSQL: an integral one loads as `int` (what SQLite
    returns, and exact), any other as `float` (SQLite's `avg`)."""

    def load(self, data: Any) -> Any:
        value: Decimal = super().load(data)
        return int(value) if value == value.to_integral_value() else float(value)


class _BoolAsInt(Dumper):
    """True/False bound as 1/0: our flag columns are integers, as in SQLite (Peewee's
    BooleanField binds a bool)."""

    oid = postgres.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _LongStatements(_queries.PostgresQuery):
    """psycopg's query conversion (`%s` → `$n`), cached for long statements too.

    psycopg caches the conversion only for statements under 4 kB with at most 50 parameters (an
    ORM's ever-different `VALUES (…), (…)` would flood its cache); above that it re-parses the
    text on every execution. Ours are the store's multi-row INSERTs — a few column sets ×
    power-of-two row counts; batches too small for COPY go that way — and re-parsing them was
    41% of `Store.add_many`'s time on PostgreSQL before COPY (bench/team.py: 13,000 → 30,000
    events/s in one process once cached). psycopg's internals: where they are missing (another
    psycopg version), connections keep psycopg's own cursor.
    """

    def convert(self, query: Any, vars: Any) -> None:
        if vars is None or not isinstance(query, str) or (len(query) <= _queries.MAX_CACHED_STATEMENT_LENGTH
                                                          and len(vars) <= _queries.MAX_CACHED_STATEMENT_PARAMS):
            return super().convert(query, vars)
        encoding = self._tx.encoding
        self.query, self._want_formats, self._order, self._parts = _long_query2pg(query.encode(encoding), encoding)
        self.dump(vars)
        return None


_CONVERT = getattr(_queries, "_query2pg_nocache", None)
_long_query2pg = lru_cache(maxsize=64)(_CONVERT) if _CONVERT else None  # 64 × ~30 kB and its parts at most


class _Cursor(psycopg.Cursor[Any]):
    _query_cls = _LongStatements


# --- the dialect ------------------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|[^'\"-]+|-")
_RESERVED = re.compile(rf"(?<![\w.\"])({'|'.join(RESERVED)})(?![\w\"(])")
_IS_NOT = re.compile(r"\bIS NOT (?!NULL\b|DISTINCT\b|TRUE\b|FALSE\b)")  # SQLite's IS NOT compares values
_BOOL_TIMES = re.compile(r"(\([\w.]+ IS (?:NOT )?NULL\)) \*")
_INTEGER = re.compile(r"\bINTEGER\b")  # int4 in PostgreSQL; ours are 64-bit (µs, nanos)
_WHERE_CONSTANT = re.compile(r"\b(WHERE|AND|OR) ([01])\b(?![.\d])")
_GLOB = re.compile(r"([\w.]+) GLOB \?")
_UPSERT_TABLE = re.compile(r"INSERT INTO (\w+)")
_CONFLICT_NO_TARGET = "ON CONFLICT DO UPDATE"
_COPY_HEAD = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\)")
_COPY_SKIP = re.compile(r" ON CONFLICT\((\w+)\) DO NOTHING")
COPY_FROM_ROWS = 16  # below this, COPY's extra round trips cost more than binding the rows
_BARE_WORD = re.compile(r"(?<![\w.\"])(\w+|\"\w+\")(?![\w\"(.])")


def quote_reserved(sql: str) -> str:
    """`sql` with our column names that PostgreSQL reserves quoted, string literals left alone."""
    return "".join(t if t.startswith(("'", '"', "--")) else _RESERVED.sub(r'"\1"', t) for t in _TOKENS.findall(sql))


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """One of our SQLite statements in PostgreSQL's dialect, with psycopg's `%s` placeholders."""
    out = []
    for token in _TOKENS.findall(sql):
        if token.startswith("--"):
            continue
        if token.startswith("'"):
            out.append(token.replace("%", "%%"))
            continue
        if token.startswith('"'):
            out.append(token)
            continue
        token = token.replace("%", "%%")
        token = _GLOB.sub(r"llmtray_glob(\1, ?)", token)
        token = token.replace("?", "%s")
        token = _RESERVED.sub(r'"\1"', token)
        token = _IS_NOT.sub("IS DISTINCT FROM ", token)
        token = _BOOL_TIMES.sub(r"\1::int *", token)
        token = _INTEGER.sub("BIGINT", token)
        token = _WHERE_CONSTANT.sub(lambda m: f"{m[1]} {'true' if m[2] == '1' else 'false'}", token)
        token = token.replace(" WITHOUT ROWID", "").replace("COLLATE NOCASE", "COLLATE llmtray_nocase")
        out.append(token)
    text = "".join(out)
    if "INSERT OR IGNORE" in text:
        text = text.replace("INSERT OR IGNORE", "INSERT").rstrip().rstrip(";")
        head, returning, tail = text.partition(" RETURNING ")
        text = f"{head} ON CONFLICT DO NOTHING{returning}{tail}"
    table = _UPSERT_TABLE.search(text)
    if table and "DO UPDATE SET" in text:
        name = table.group(1)
        keys = _sqlite_schema()[1]
        if _CONFLICT_NO_TARGET in text and name in keys:
            text = text.replace(_CONFLICT_NO_TARGET, f"ON CONFLICT ({keys[name]}) DO UPDATE")
        # `SET n = n + excluded.n`: PostgreSQL wants the stored row's columns qualified
        head, _, sets = text.partition("DO UPDATE SET")
        columns = _sqlite_schema()[2].get(name, frozenset())

        def qualified(m: re.Match[str]) -> str:
            word = m[1]
            target = re.match(r"\s*=(?!=)", sets[m.end():]) and re.search(r"(^|,)\s*$", sets[:m.start()])
            return word if word.strip('"') not in columns or target else f"{name}.{word}"

        text = f"{head}DO UPDATE SET{_BARE_WORD.sub(qualified, sets)}"
    return text


@lru_cache(maxsize=4096)
def _is_read(text: str) -> bool:
    """A SELECT, which runs unprepared: psycopg prepares a statement run 5 times, and PostgreSQL
    then plans it once for any parameters — a generic plan can't see how much of the table
    `ts >= ? AND ts < ?` spans, and walked 90 days of events for a tag that has none (the
    dashboard's subscription view: 5 ms → 230 ms at 1M events, bench/team.py). Planned for its
    values every time, as SQLite does. Writes stay prepared: re-planning the store's multi-row
    INSERTs on every batch cost ~15% of its throughput (measured before COPY)."""
    return text.lstrip()[:6].upper() == "SELECT"


@lru_cache(maxsize=1)
def _sqlite_schema() -> tuple[list[tuple[str, str, str]], dict[str, str], dict[str, frozenset[str]]]:
    """SQLite's schema at `BASE_VERSION` (type, name, SQL of each object), made by the
    migrations in a scratch file, and each table's primary key: an upsert without a conflict
    target (SQLite allows one; PostgreSQL does not) gets its table's."""
    from llmtray.core import db as dbmod

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schema.db"
        logging.getLogger(dbmod.__name__).disabled = True  # not "migrating /tmp/…" on every start
        try:
            dbmod.migrate(path, upto=BASE_VERSION)
        finally:
            logging.getLogger(dbmod.__name__).disabled = False
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
            keys, columns = {}, {}
            for kind, name, _ in rows:
                if kind == "table":
                    info = conn.execute(f"PRAGMA table_info({name})").fetchall()
                    pk = sorted((pk, col) for _, col, _, _, _, pk in info if pk)
                    keys[name] = _RESERVED.sub(r'"\1"', ", ".join(col for _, col in pk))
                    columns[name] = frozenset(col for _, col, *_ in info)
        finally:
            conn.close()
    return rows, keys, columns


# --- errors -------------------------------------------------------------------------------------

_READ_ONLY = (pg_errors.InsufficientPrivilege, pg_errors.ReadOnlySqlTransaction)


def _as_sqlite(exc: psycopg.Error) -> sqlite3.Error:
    """The sqlite3 exception a caller written for SQLite expects for `exc`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, _READ_ONLY):
        return sqlite3.OperationalError(f"attempt to write a readonly database ({message})")
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(message)
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return sqlite3.OperationalError(message)
    if isinstance(exc, psycopg.DataError):
        return sqlite3.DataError(message) if hasattr(sqlite3, "DataError") else sqlite3.OperationalError(message)
    return sqlite3.OperationalError(message)


class _Empty:
    """The cursor of a statement that has no PostgreSQL counterpart (most PRAGMAs)."""

    rowcount = 0
    description = None

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class PgConnection:
    """A psycopg connection (autocommit, explicit transactions as in our SQLite code) that
    answers the parts of `sqlite3.Connection` llmtray uses.

    A connection the server dropped (a restart, a network cut) is replaced by a new one at the
    next statement: the statement that met the failure raised, whatever transaction it was in is
    gone, and the long-lived readers (the budget monitor, the dashboard's worker, the proxy's
    budget checks) carry on once the server is back instead of failing until restarted."""

    dialect = "postgresql"

    def __init__(self, url: PostgresUrl, *, read_only: bool = False):
        self.url, self.read_only = url, read_only
        self.raw = self._open()

    def _open(self) -> psycopg.Connection:
        try:
            raw = psycopg.connect(**self.url.conninfo())
        except psycopg.Error as exc:
            raise sqlite3.OperationalError(f"cannot connect to {self.url}: {' '.join(str(exc).split())}") from exc
        raw.autocommit = True
        if _long_query2pg is not None:
            raw.cursor_factory = _Cursor
        # Our queries are index lookups and rollup sums, planned like SQLite's: none of the long
        # scans that JIT compilation or parallel workers pay off on. Both were measured costing
        # the dashboard (EXPLAIN ANALYZE in bench/team.py, 1M events): JIT compiled a 2 ms
        # breakdown for 490 ms (a VALUES list of ranges is estimated at 100× its rows), and a
        # parallel plan swept every `plan=pro` rollup row per day range (376 ms) where the serial
        # one seeks each range in the primary key (12 ms).
        raw.execute("SELECT set_config('jit', 'off', false), set_config('max_parallel_workers_per_gather', '0', false)")
        raw.adapters.register_loader("numeric", _IntegralNumeric)
        raw.adapters.register_dumper(bool, _BoolAsInt)
        if self.read_only:
            raw.execute("SET default_transaction_read_only = on")
        return raw

    def _live(self) -> psycopg.Connection:
        if self.raw.broken or (self.raw.closed and not self._closed):
            self.raw.close()
            self.raw = self._open()
        return self.raw

    _closed = False

    # what sqlite3 code calls
    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> Any:
        try:
            special = self._special(sql)
            if special is not None:
                return special
            cur = self._live().cursor()
            text = translate(sql)
            cur.execute(text, tuple(params or ()), prepare=False if _is_read(text) else None)
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc
        return cur

    def executemany(self, sql: str, seq: Any) -> Any:
        rows = [tuple(r) for r in seq]
        try:
            cur = self._live().cursor()
            if rows:
                cur.executemany(translate(sql), rows)
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc
        return cur

    def copy_rows(self, statement: tuple[str, str, str], rows: Sequence[Sequence[Any]]) -> int | None:
        """The store's multi-row INSERT (`store._insert_rows`: head, one row's placeholders,
        tail) as one COPY; the rows inserted, or None to leave a statement to the INSERTs (too
        few rows to pay for COPY's extra round trip, or a tail COPY can't honour).

        COPY can't skip a conflict, so `ON CONFLICT(key) DO NOTHING` is done first: one lookup
        of the batch's keys, and each key's first row only — what the INSERT would keep, as
        long as no other writer adds keys meanwhile, which the write lock every store batch
        holds guarantees. A 500-event batch went in 17 INSERTs of up to 999 parameters; COPY
        streams the rows: the write lock is held 20–30% less per batch (bench/team.py)."""
        head, _, tail = statement
        target = _COPY_HEAD.fullmatch(head)
        conflict = _COPY_SKIP.fullmatch(tail)
        if len(rows) < COPY_FROM_ROWS or target is None or not (conflict or not tail) or not self.in_transaction:
            return None
        table, columns = target[1], [c.strip() for c in target[2].split(",")]
        if conflict and conflict[1] not in columns:  # the key left to its default (a collided id's rows)
            return None
        try:
            if conflict:
                key, at = conflict[1], columns.index(conflict[1])
                wanted = [r[at] for r in rows if r[at] is not None]
                seen = {k for (k,) in self.raw.execute(f"SELECT {key} FROM {table} WHERE {key} = ANY(%s)", (wanted,))}
                fresh = []
                for r in rows:
                    if r[at] is None:
                        fresh.append(r)
                    elif r[at] not in seen:
                        seen.add(r[at])
                        fresh.append(r)
                rows = fresh
            quoted = ", ".join(f'"{c}"' for c in columns)
            with self.raw.cursor().copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc
        return len(rows)

    def executescript(self, script: str) -> Any:
        try:
            return self._live().execute(script)
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc

    def commit(self) -> None:
        if self.in_transaction:
            try:
                self.raw.execute("COMMIT")
            except psycopg.Error as exc:
                raise _as_sqlite(exc) from exc

    def rollback(self) -> None:
        if self.in_transaction:  # a dropped connection has nothing left to roll back
            try:
                self.raw.execute("ROLLBACK")
            except psycopg.Error as exc:
                raise _as_sqlite(exc) from exc

    def close(self) -> None:
        self._closed = True
        self.raw.close()

    @property
    def in_transaction(self) -> bool:
        return not (self.raw.broken or self.raw.closed) and self.raw.info.transaction_status != TransactionStatus.IDLE

    # what Peewee calls (its own SQL is already PostgreSQL's)
    def cursor(self) -> psycopg.Cursor[Any]:
        return self._live().cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def _special(self, sql: str) -> Any:
        head = sql.lstrip()[:16].upper()
        if head.startswith("BEGIN"):
            self._begin(write="IMMEDIATE" in sql.upper() or "EXCLUSIVE" in sql.upper())
            return _Empty()
        if head.startswith(("SAVEPOINT", "RELEASE")):
            return self._savepoint(sql.split()[0].upper(), sql.split()[-1].strip(";"))
        if head.startswith("PRAGMA"):
            return self._pragma(sql.strip().rstrip(";")[6:].strip())
        return None

    def _begin(self, write: bool) -> None:
        raw = self._live()
        try:
            raw.execute("BEGIN")
            if write:
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc

    _outer_savepoint: str | None = None

    def _savepoint(self, verb: str, name: str) -> Any:
        """SQLite's SAVEPOINT outside a transaction begins one (a write one: it takes the lock
        once it writes, and ours always may), and RELEASE of that savepoint commits it."""
        if verb == "SAVEPOINT" and not self.in_transaction:
            self._begin(write=True)
            self._outer_savepoint = name
        elif verb == "RELEASE" and name == self._outer_savepoint:
            self._outer_savepoint = None
            self.commit()
            return _Empty()
        try:
            self._live().execute(f"{verb} {name}")
        except psycopg.Error as exc:
            raise _as_sqlite(exc) from exc
        return _Empty()

    def _pragma(self, pragma: str) -> Any:
        name = pragma.split("=")[0].split("(")[0].strip().lower()
        if name == "user_version" and "=" not in pragma:
            return self._live().execute("SELECT version FROM llmtray_schema")
        if name == "database_list":  # (seq, name, file): the server and database stand for the file
            return self._live().execute("SELECT 0, 'main', coalesce(host(inet_server_addr()), 'local') || ':' ||"
                                    " coalesce(inet_server_port(), 0) || '/' || current_database()")
        if name == "query_only":
            on = pragma.split("=", 1)[1].strip().upper() in ("ON", "1", "TRUE")
            self.read_only = on  # kept over a reconnection
            self._live().execute(f"SET default_transaction_read_only = {'on' if on else 'off'}")
        return _Empty()


class PgDatabase(pw.PostgresqlDatabase):
    """Peewee on PostgreSQL whose `connection()` is a `PgConnection`, and whose
    `atomic("IMMEDIATE")` (a write transaction, as our SQLite code asks for one) takes the
    write lock."""

    def __init__(self, url: PostgresUrl, **kwargs: Any):
        self.url = url
        params = url.conninfo()
        super().__init__(params.pop("dbname"), autoconnect=True, **params, **kwargs)

    def _connect(self) -> PgConnection:  # type: ignore[override]
        return PgConnection(self.url)

    def _initialize_connection(self, conn: Any) -> None:
        pass

    def _set_server_version(self, conn: Any) -> None:
        self.server_version = conn.raw.pgconn.server_version

    def begin(self, isolation_level: Any = None) -> None:  # noqa: D102
        with pw.__exception_wrapper__:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE" if isinstance(isolation_level, str) and
                         isolation_level.upper() in ("IMMEDIATE", "EXCLUSIVE") else "BEGIN")


def connect(url: PostgresUrl, *, read_only: bool = False) -> PgConnection:
    """A raw connection (what `sqlite3.connect` gives the code that doesn't use Peewee)."""
    return PgConnection(url, read_only=read_only)


# --- the schema -----------------------------------------------------------------------------------

_COMPAT = r"""
CREATE FUNCTION llmtray_bool_times(a boolean, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE AS 'SELECT a::int * b';
CREATE OPERATOR * (LEFTARG = boolean, RIGHTARG = bigint, FUNCTION = llmtray_bool_times);
CREATE FUNCTION llmtray_bool_add(s bigint, v boolean) RETURNS bigint
    LANGUAGE sql IMMUTABLE AS 'SELECT coalesce(s, 0) + v::int';
CREATE AGGREGATE sum(boolean) (SFUNC = llmtray_bool_add, STYPE = bigint);
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT greatest(a, b)';
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT least(a, b)';
CREATE FUNCTION max(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS 'SELECT greatest(a, b)';
CREATE FUNCTION min(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS 'SELECT least(a, b)';
CREATE FUNCTION llmtray_glob(value text, pattern text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT value ~ ('^' || replace(replace(regexp_replace(pattern, '([.+^$(){}|\\])', '\\\1', 'g'),
                                           '*', '.*'), '?', '.') || '$')
$$;
CREATE FUNCTION llmtray_concat(s text, v text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$SELECT CASE WHEN s IS NULL THEN v WHEN v IS NULL THEN s ELSE s || ',' || v END$$;
CREATE AGGREGATE group_concat(text) (SFUNC = llmtray_concat, STYPE = text);
CREATE TABLE llmtray_schema (version INTEGER NOT NULL);
"""

# SQLite's temporary triggers (an import replacing observed days installs one on its own
# connection) have no PostgreSQL twin: imported rows call the session's `pg_temp` function of
# this name if the session made one (`importers.overlap.replacing`), and nothing otherwise.
_SESSION_HOOK = """
CREATE FUNCTION llmtray_session_hook() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN
  IF to_regprocedure('pg_temp.llmtray_after_insert(event_row)') IS NOT NULL THEN
    PERFORM pg_temp.llmtray_after_insert(NEW);
  END IF;
  RETURN NULL;
END $fn$;
CREATE TRIGGER event_row_session_hook AFTER INSERT ON event_row FOR EACH ROW WHEN (NEW.dataset_id IS NOT NULL)
  EXECUTE FUNCTION llmtray_session_hook();
"""

_TYPE_WORDS = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
               (re.compile(r"\bBLOB\b"), "BYTEA"))
# Tables whose ids SQLite hands out (`INTEGER PRIMARY KEY` with no id given): an identity here.
# The store gives `event_row` and `dataset` ids itself.
_ASSIGNED_IDS = ("event_row", "dataset")
_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) (AFTER|BEFORE|INSTEAD OF) (INSERT|UPDATE|DELETE)(?: OF [\w, ]+)?"
                      r" ON (\w+)(?: FOR EACH ROW)?(?: WHEN (.+?))? BEGIN\n?(.*)END$", re.S)


def _table(name: str, sql: str) -> str:
    sql = sql.replace(") WITHOUT ROWID", ")").replace("COLLATE NOCASE", "COLLATE llmtray_nocase")
    if name == "event_row":
        sql = sql.replace(" event_id,", " event_id BYTEA,")
    identity = "BIGINT PRIMARY KEY" if name in _ASSIGNED_IDS else "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    sql = sql.replace("INTEGER PRIMARY KEY", identity, 1) if re.search(r"\bid INTEGER PRIMARY KEY", sql) else sql
    for pattern, word in _TYPE_WORDS:
        sql = pattern.sub(word, sql)
    return quote_reserved(sql)


def _trigger(sql: str) -> str:
    m = _TRIGGER.match(sql.strip())
    if m is None:
        raise ValueError(f"trigger not understood: {sql[:80]!r}")
    name, when, action, table, condition, body = m.groups()
    statements = [translate(_without_null_names(s)).replace("%%", "%") for s in _split(body)]
    result = {"INSERT": "NEW", "UPDATE": "NEW", "DELETE": "OLD"}[action] if when == "INSTEAD OF" else "NULL"
    condition_sql = f" WHEN ({translate(condition).replace('%%', '%')})" if condition else ""
    return (f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN\n"
            + "".join(f"  {s};\n" for s in statements)
            + f"  RETURN {result};\nEND $fn$;\n"
            f"CREATE TRIGGER {name} {when} {action} ON {table} FOR EACH ROW{condition_sql}"
            f" EXECUTE FUNCTION {name}_fn();")


_NAME_VALUES = re.compile(r"INSERT OR IGNORE INTO name \(text\) VALUES (.+)$", re.S)


def _without_null_names(statement: str) -> str:
    """SQLite's `INSERT OR IGNORE` also skips a row breaking NOT NULL (the repricing trigger adds
    a NULL pricing version to the dictionary that way); PostgreSQL's ON CONFLICT does not."""
    m = _NAME_VALUES.match(statement.strip())
    if m is None:
        return statement
    return f"INSERT OR IGNORE INTO name (text) SELECT v.t FROM (VALUES {m.group(1)}) AS v(t) WHERE v.t IS NOT NULL"


def _split(body: str) -> list[str]:
    statements, pending = [], ""
    for line in body.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().rstrip(";"))
            pending = ""
    return statements


def _view(name: str, sql: str) -> str:
    from llmtray.core import db as dbmod

    if name == "event":
        sql = sql.replace(dbmod._VIEW_VALUES["tags"],
                          "(SELECT json_object_agg(g.key, g.value ORDER BY g.key)::text FROM event_tag_link l"
                          " JOIN tag g ON g.id = l.tag WHERE l.event = r.id)")
        sql = sql.replace("THEN r.event_id ELSE", "THEN convert_from(r.event_id, 'UTF8') ELSE")
        sql = sql.replace("lower(hex(r.event_id))", "encode(r.event_id, 'hex')")
    return translate(sql).replace("%%", "%")


@lru_cache(maxsize=1)
def schema_statements() -> tuple[str, ...]:
    """The PostgreSQL schema: SQLite's at `BASE_VERSION`, built by the migrations in a scratch
    file and translated, tables first, then indexes, views and triggers."""
    rows = _sqlite_schema()[0]
    order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
    out = ["CREATE COLLATION llmtray_nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
           _COMPAT]
    for kind, name, sql in sorted(rows, key=lambda r: order[r[0]]):
        if kind == "table":
            out.append(_table(name, sql))
        elif kind == "index":
            out.append(quote_reserved(sql))
        elif kind == "view":
            out.append(_view(name, sql))
        else:
            out.append(_trigger(sql))
    out.append(_SESSION_HOOK)
    out.append(f"INSERT INTO llmtray_schema (version) VALUES ({BASE_VERSION})")
    return tuple(out)


def schema_version(conn: PgConnection) -> int:
    """0 for a database llmtray hasn't set up yet."""
    row = conn.raw.execute("SELECT to_regclass('llmtray_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    return int(conn.raw.execute("SELECT version FROM llmtray_schema").fetchone()[0])


def migrate(conn: PgConnection) -> int:
    """Create the schema in an empty database and bring an older one up to date (one
    transaction: PostgreSQL's DDL is transactional, so a crash leaves nothing half made), under a
    lock so that two machines starting at once don't both try; refuse a schema newer than this
    llmtray."""
    raw = conn.raw
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return version
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(f"the team database has schema version {version}, newer than this llmtray "
                                f"understands ({SCHEMA_VERSION}); upgrade llmtray")
    statements = schema_statements()
    try:
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            if schema_version(conn) == 0:
                for statement in statements:
                    raw.execute(statement)
            current = schema_version(conn)
            for target, steps in UPGRADES:
                if target > current:
                    for statement in steps:
                        raw.execute(statement)
                    raw.execute("UPDATE llmtray_schema SET version = %s", (target,))
    except (pg_errors.InsufficientPrivilege, pg_errors.ReadOnlySqlTransaction) as exc:
        raise ReadOnlyDatabaseError(f"the team database has no llmtray schema yet, and this role can't create it "
                                    f"({str(exc).strip()}); run any llmtray command once as its owner") from None
    return SCHEMA_VERSION


def open_db(url: PostgresUrl, *, migrate_schema: bool = True) -> PgDatabase:
    db = PgDatabase(url)
    db.connect(reuse_if_open=True)
    conn = db.connection()
    if migrate_schema:
        migrate(conn)
    elif schema_version(conn) != SCHEMA_VERSION:
        raise ReadOnlyDatabaseError(f"the team database {url} has no llmtray schema (version "
                                    f"{schema_version(conn)}, expected {SCHEMA_VERSION})")
    return db
