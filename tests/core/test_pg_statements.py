"""The store's writes on a real PostgreSQL: batches by COPY (keeping exactly what the INSERT would),
small ones by multi-row INSERTs whose placeholder conversion is done once, and reads planned for
their values (bench/team.py measured each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmtray.core import dburl, pg
from llmtray.core.events import parse_event
from llmtray.core.store import Batch, Store

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


def test_a_batch_goes_in_by_copy_keeping_what_the_insert_would_keep(team_store: Store):
    """COPY can't skip a conflict: the keys already stored, and a key's second row in the batch,
    are left out first — the rows `INSERT … ON CONFLICT DO NOTHING` would have kept."""
    conn = team_store.conn
    assert team_store.add(batch(0, 100).events, "api").accepted == 100
    mixed = batch(50, 500)  # 50 stored already, 450 new
    mixed.events.extend(batch(400, 30).events)  # repeated within the batch
    result = team_store.add_many([mixed])[0]
    assert (result.accepted, result.duplicates) == (450, 80)
    got = conn.execute("SELECT count(*), count(DISTINCT event_id), sum(input_tokens) FROM event").fetchone()
    assert got == (550, 550, sum(1000 + i for i in range(550)))
    assert conn.execute("SELECT sum(events), sum(input_tokens) FROM rollup").fetchone() == (550, got[2])
    links = conn.execute("SELECT count(*) FROM event_tag_link").fetchone()[0]
    assert links == 0  # no machine name here, no tags: nothing to link


def test_a_statement_copy_cannot_honour_is_left_to_the_inserts(team_store: Store):
    conn = team_store.conn
    rows = [(i, i) for i in range(20)]
    conn.execute("BEGIN IMMEDIATE")
    try:
        assert conn.copy_rows(("INSERT INTO event_tag_link (event, tag)", "(?, ?)", " ON CONFLICT DO UPDATE SET tag = 1"),
                              rows) is None  # an upsert
        assert conn.copy_rows(("INSERT INTO event_tag_link (event, tag)", "(?, ?)", ""), rows[:15]) is None  # too few
    finally:
        conn.execute("ROLLBACK")
    assert conn.copy_rows(("INSERT INTO event_tag_link (event, tag)", "(?, ?)", ""), rows) is None  # no write lock held


def test_a_long_statement_is_converted_once_and_reused_for_the_next_batches(team_store: Store):
    """Batches too small for COPY go in multi-row INSERTs (15 rows: 8 + 4 + 2 + 1), whose
    placeholders psycopg would re-parse on every run (240 parameters is over its cache's 50)."""
    pg._long_query2pg.cache_clear()
    for k in range(4):
        assert team_store.add(batch(k * 15, 15).events, "api").accepted == 15
    info = pg._long_query2pg.cache_info()
    assert info.misses >= 1 and info.hits >= 3 * info.misses  # converted in the first batch, reused after
    conn = team_store.conn
    assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM event").fetchone() == (60, 60)
    # a duplicate batch through the cached statements stores nothing more
    again = team_store.add(batch(0, 15).events, "api")
    assert (again.accepted, again.duplicates) == (0, 15)
    assert conn.execute("SELECT count(*) FROM event").fetchone() == (60,)


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


def test_an_id_whose_hash_collides_is_kept_once_without_it(team_store: Store, monkeypatch: pytest.MonkeyPatch):
    """Two ids hashed alike (a 64-bit collision, forced) in one COPY'd batch: the first row takes
    the hash, the second is skipped by the key lookup and goes in again without one
    (`Store._insert`), as with the INSERT's ON CONFLICT."""
    from llmtray.core import compact

    real = compact.key_hash
    monkeypatch.setattr(compact, "key_hash", lambda event_id: real("e0" if event_id == "e7" else event_id))
    first = team_store.add(batch(0, 20).events, "api")
    assert (first.accepted, first.duplicates) == (20, 0)
    for k in (0, 7):
        again = team_store.add(batch(k, 1).events, "api")
        assert (again.accepted, again.duplicates) == (0, 1)
    conn = team_store.conn
    assert conn.execute("SELECT count(*), count(key_hash), count(DISTINCT event_id) FROM event_row").fetchone() == (20, 19, 20)
