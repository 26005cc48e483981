"""Shared fixtures for importer tests: a real store in a temp data dir and helpers that read
results back with plain SQL (independent of the importer code under test)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtray.core import db as dbmod, latency
from llmtray.core.events import parse_event
from llmtray.core.store import Store
from llmtray.importers.engine import Importer
from llmtray.importers.mapping import MappingStore

ROLLUP_TABLES = ("rollup", "tag_rollup", *(lv.table for lv in dbmod.LEVELS if lv is not dbmod.ROLLUP), "latency_sketch")
DATA = Path(__file__).resolve().parent.parent / "data" / "import"
MALFORMED = DATA / "malformed"
SUMS = ("count(*)", "sum(requests)", "sum(input_tokens)", "sum(output_tokens)", "sum(cache_read_tokens)",
        "sum(cache_write_tokens)", "sum(cache_write_1h_tokens)", "sum(reasoning_tokens)", "sum(cost_nanos)")


@pytest.fixture
def importer(store: Store, data_dir: Path) -> Iterator[Importer]:
    yield Importer(store, MappingStore(data_dir))


def totals(store: Store, where: str = "1", params: tuple = ()) -> dict[str, int]:
    """Event count and sums of the stored rows, straight from SQL."""
    row = store.conn.execute(f"SELECT {', '.join(SUMS)} FROM event WHERE {where}", params).fetchone()
    names = ("events", "requests", "input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning", "cost_nanos")
    return {n: int(v or 0) for n, v in zip(names, row)}


def rows(store: Store, where: str = "1", params: tuple = ()) -> list[dict]:
    cur = store.conn.execute(f"SELECT * FROM event WHERE {where} ORDER BY ts, id", params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur]


def assert_rollups_exact(conn: sqlite3.Connection) -> None:
    """Every rollup table equals its recomputation from the events (`rebuild_rollups`, rolled
    back afterwards), and no level keeps a row whose events are gone; the latency sketches once
    the days a delete marked stale are recomputed (as the store does at the end of its writes)."""
    latency.refresh(conn)

    def snapshot() -> dict[str, list[tuple]]:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in ROLLUP_TABLES}

    current = snapshot()
    conn.execute("SAVEPOINT rebuild")
    try:
        dbmod.rebuild_rollups(conn)
        assert current == snapshot()
    finally:
        conn.execute("ROLLBACK TO rebuild")
        conn.execute("RELEASE rebuild")
    for level in dbmod.LEVELS:
        assert conn.execute(f"SELECT count(*) FROM {level.table} WHERE events <= 0").fetchone()[0] == 0


def observe_openrouter(store: Store) -> list[dict]:
    """Observed events on the generated files' first day (2026-04-01, openrouter), with tags, a
    reported cost and one without an id — what `--overlap replace` deletes — and one on a day
    the files don't cover."""
    def ev(ts: str, n: int, **extra) -> object:
        return parse_event({"ts": ts, "provider": "openrouter", "model": "openai/gpt-4o-mini", "input_tokens": n,
                            "output_tokens": 1, **extra})
    store.add([ev("2026-04-01T10:00:00Z", 100, id="obs-1", tags={"team": "a"}, feature="chat"),
               ev("2026-04-01T11:00:00Z", 200, cost_usd="0.25", user="u1"), ev("2026-04-05T10:00:00Z", 300)], "hook")
    store.add([ev("2026-04-01T00:00:00Z", 500, id="obs-4", latency_ms=12.5)], "proxy")
    return rows(store)


def comparable(stored: list[dict]) -> list[dict]:
    """A stored row without what storing again renews: its row number and receive time."""
    return [{k: v for k, v in r.items() if k not in ("id", "received")} for r in stored]
