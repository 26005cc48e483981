"""The store's multi-row INSERTs on a real PostgreSQL: how many rows a statement carries, and that
a long statement's placeholder conversion is done once, not on every batch (bench/team.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from llmtray.core import dburl, pg
from llmtray.core.compact import ROW_COLUMNS
from llmtray.core.events import parse_event
from llmtray.core.store import Batch, Store, _variable_limit

T0 = datetime(2026, 1, 10, 12, tzinfo=UTC)


@pytest.fixture
def team_store(pg_server):
    url = pg_server.new_database()
    store = Store.open(dburl.parse(url))
    yield store
    store.close()
    pg_server.drop_database(url)


def batch(first: int, n: int) -> Batch:
    return Batch([parse_event({"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000 + i,
                               "output_tokens": 7, "user": f"u{i % 3}", "ts": (T0 + timedelta(seconds=i)).isoformat()},
                              now=T0 + timedelta(days=2)) for i in range(first, first + n)], "api")


def test_a_500_event_batch_goes_in_128_row_statements_and_every_row_lands(team_store: Store):
    conn = team_store.conn
    assert _variable_limit(conn) // len(ROW_COLUMNS) >= 128  # SQLite's default 999 allowed 32 rows
    results = team_store.add_many([batch(0, 500)])
    assert results[0].accepted == 500
    got = conn.execute("SELECT count(*), sum(input_tokens) FROM event").fetchone()
    assert got == (500, sum(1000 + i for i in range(500)))
    assert conn.execute("SELECT sum(events), sum(input_tokens) FROM rollup").fetchone() == got


def test_an_unknown_limit_is_refused_not_invented(team_store: Store):
    with pytest.raises(sqlite3.ProgrammingError, match="no PostgreSQL counterpart"):
        team_store.conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)


def test_a_long_statement_is_converted_once_and_reused_for_the_next_batches(team_store: Store):
    pg._long_query2pg.cache_clear()
    for k in range(4):
        assert team_store.add(batch(k * 256, 256).events, "api").accepted == 256
    info = pg._long_query2pg.cache_info()
    assert info.misses >= 1 and info.hits >= 3 * info.misses  # converted in the first batch, reused after
    conn = team_store.conn
    assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM event").fetchone() == (1024, 1024)
    # a duplicate batch through the cached statements stores nothing more
    again = team_store.add(batch(0, 256).events, "api")
    assert (again.accepted, again.duplicates) == (0, 256)
    assert conn.execute("SELECT count(*) FROM event").fetchone() == (1024,)


def test_a_statement_run_many_times_is_planned_for_its_values_never_generically(team_store: Store):
    """psycopg prepares a statement after 5 runs and PostgreSQL then switches to one plan for any
    parameters; for a time range that plan can't see the range's width (the dashboard's
    subscription view went from 5 to 230 ms at 1M events)."""
    conn = team_store.conn
    team_store.add_many([batch(0, 300)])
    sql = "SELECT count(*) FROM event_tag t JOIN event e ON e.id = t.event WHERE t.key = 'x' AND e.ts >= ? AND e.ts < ?"
    start = int(T0.timestamp() * 1e6)
    for k in range(15):
        assert conn.execute(sql, (start + k, start + 10**12)).fetchone() == (0,)
    generic, custom = conn.raw.execute("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
                                       " FROM pg_prepared_statements WHERE statement LIKE '%t.key = ''x''%'").fetchone()
    assert generic == 0


def test_every_connection_plans_serially_without_jit(team_store: Store, pg_server):
    """JIT compiled a 2 ms dashboard query for 490 ms, and a parallel plan swept a rollup table
    where the serial one seeks (bench/team.py): each of llmtray's connections turns both off —
    the store's, and a raw one (`db.connect`)."""
    raw = pg.connect(dburl.parse(pg_server.url(team_store.db.database)))
    try:
        for conn in (team_store.conn, raw):
            assert conn.execute("SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather')"
                                ).fetchone() == ("off", "0")
    finally:
        raw.close()
