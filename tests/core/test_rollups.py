"""Every rollup level stays equal to a from-scratch recomputation (`rebuild_rollups`) through
what changes events: store inserts, dataset removal, repricing, and the v4 → v5 migration."""

from __future__ import annotations

import pytest

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.core import db as dbmod, latency
from llmtray.core.events import UsageEvent, parse_event
from llmtray.core.pricing import Pricer, load_overrides
from llmtray.core.store import Store

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

T0 = datetime(2026, 3, 27, 20, 7, tzinfo=UTC)
TABLES = ("rollup", "tag_rollup", *(lv.table for lv in dbmod.LEVELS if lv is not dbmod.ROLLUP), "latency_sketch")


def events(n: int, seed: int) -> list[UsageEvent]:
    rng, first_token = random.Random(seed), random.Random(-seed)
    out = []
    for _ in range(n):
        out.append(parse_event({
            "provider": "acme" if rng.random() < 0.2 else "openai",
            "model": rng.choice(["gpt-4o", "gpt-4o-mini", "big"]),
            "ts": (T0 + timedelta(seconds=rng.randrange(0, 3 * 86_400))).isoformat(),
            "input_tokens": rng.randrange(0, 9_000), "output_tokens": rng.randrange(0, 900),
            "requests": rng.choice([1, 1, 2]),
            "feature": rng.choice(["chat", "", "search"]), "user": rng.choice(["u1", "u2", "u3", ""]),
            "status": rng.choice(["ok", "ok", "error"]),
            "latency_ms": round(rng.uniform(50, 900), 1) if rng.random() < 0.8 else None,
            "ttft_ms": round(first_token.uniform(5, 90), 1) if first_token.random() < 0.5 else None,
            "tags": {k: rng.choice(["a", "b"]) for k in ("team", "exp") if rng.random() < 0.5},
        }, now=T0 + timedelta(days=30)))
    return out


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}


def rebuilt(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """The tables recomputed from the events, without keeping the recomputation."""
    conn.execute("SAVEPOINT rebuild")
    try:
        dbmod.rebuild_rollups(conn)
        return snapshot(conn)
    finally:
        conn.execute("ROLLBACK TO rebuild")
        conn.execute("RELEASE rebuild")


def assert_exact(conn: sqlite3.Connection) -> None:
    """Every level equals its rebuild; the latency sketches too, once the days a delete marked
    stale are recomputed (as the store does at the end of its transaction)."""
    latency.refresh(conn)
    current = snapshot(conn)
    assert all(current[t] for t in TABLES), "every level holds rows"
    assert current == rebuilt(conn)
    for lv in dbmod.LEVELS:  # no row kept for a key whose events are all gone
        assert conn.execute(f"SELECT count(*) FROM {lv.table} WHERE events <= 0").fetchone()[0] == 0


def test_levels_follow_inserts_dataset_removal_and_reprice(data_dir: Path):
    store = Store.open(data_dir / "llmtray.db")
    try:
        batch = events(1500, seed=1)
        for i in range(0, 1000, 250):
            store.add(batch[i:i + 250], "api")
        ds = store.create_dataset("usage.csv", "openai-usage", None)
        store.add(batch[1000:], "import:openai-usage", ds)
        assert_exact(store.conn)

        assert store.remove_dataset(ds).removed == 500
        assert_exact(store.conn)

        unpriced = store.conn.execute("SELECT count(*) FROM event WHERE cost_nanos IS NULL").fetchone()[0]
        assert unpriced > 0
        (data_dir / "pricing.toml").write_text("[[model]]\nprovider='acme'\nmodel='big'\ninput_mtok=1\noutput_mtok=2\n"
                                               "[[model]]\nprovider='acme'\nmodel='gpt-4o'\ninput_mtok=3\noutput_mtok=4\n")
        store.pricer = Pricer(load_overrides(data_dir / "pricing.toml"))
        assert store.reprice()[1] > 0
        assert store.conn.execute("SELECT sum(unpriced) FROM rollup_user_day").fetchone()[0] < unpriced
        assert_exact(store.conn)

        store.conn.execute("DELETE FROM event WHERE user = 'u2'")  # plain SQL deletes are followed too
        assert_exact(store.conn)
    finally:
        store.close()


def test_rebuild_after_a_plain_sql_copy_fills_every_level(data_dir: Path):
    """A bulk copy that bypasses the store, then rebuild_rollups: all levels hold the copy."""
    store = Store.open(data_dir / "llmtray.db")
    try:
        store.add(events(300, seed=2), "api")
        expected = snapshot(store.conn)
        store.conn.execute("CREATE TEMP TABLE saved AS SELECT * FROM event_row")
        store.conn.execute("CREATE TEMP TABLE saved_tags AS SELECT * FROM event_tag_link")
        store.conn.execute("DELETE FROM event")
        latency.refresh(store.conn)  # the sketches of the days a delete made stale
        assert not any(snapshot(store.conn).values())
        with store.db.atomic():
            store.conn.execute("INSERT INTO event_row SELECT * FROM saved")
            store.conn.execute("INSERT INTO event_tag_link SELECT * FROM saved_tags")
            dbmod.rebuild_rollups(store.conn)
        assert snapshot(store.conn) == expected
        store.add(events(50, seed=3), "hook")  # the level triggers are back after the rebuild
        assert_exact(store.conn)
    finally:
        store.close()


def test_migration_5_fills_the_new_levels_from_v4_data(tmp_path: Path):
    path = tmp_path / "v4.db"
    assert dbmod.migrate(path, upto=4) == 4
    conn = sqlite3.connect(path, isolation_level=None)
    rows = []
    for i, e in enumerate(events(400, seed=4), start=1):
        rows.append((i, e.ts.timestamp() * 1_000_000 // 1, e.provider, e.model, e.input_tokens, e.requests,
                     None if e.provider == "acme" else 10 * i, e.feature or "", e.user or "", e.status, e.latency_ms))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO event (id, ts, received, provider, model, input_tokens, requests, cost_nanos,"
                     " cost_source, feature, user, status, latency_ms, source)"
                     " VALUES (?, ?, 0, ?, ?, ?, ?, ?, 'computed', ?, ?, ?, ?, 'api')",
                     rows)
    conn.executemany("INSERT INTO event_tag (event, key, value) VALUES (?, 'team', ?)",
                     [(i, "ab"[i % 2]) for i in range(1, 401, 3)])
    dbmod.rebuild_rollups(conn)  # the v4 schema: rollup and tag_rollup only
    conn.execute("COMMIT")
    assert "rollup_hour" not in {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()

    store = Store.open(path)
    try:
        assert dbmod.schema_version(store.conn) == dbmod.MIGRATIONS[-1].version
        assert (tmp_path / "v4.db.before-v5.bak").exists()
        assert_exact(store.conn)
        assert store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM rollup_user_day").fetchone() == \
            store.conn.execute("SELECT count(*), sum(coalesce(cost_nanos, 0)) FROM event").fetchone()
        store.remove_dataset(store.create_dataset("x", "x", None))
        store.conn.execute("DELETE FROM event WHERE id % 5 = 0")
        assert_exact(store.conn)
    finally:
        store.close()
