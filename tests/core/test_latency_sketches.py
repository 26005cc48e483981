"""The latency sketches through what changes events: a dataset removed, an agent's call replaced
by its grown copy, a plain SQL delete. A deleted event only marks its day stale; until the store
recomputes the day, readers take that day's bins from the events — the percentiles match brute
force within ALPHA at every step, and the recomputed sketches equal a rebuild."""

from __future__ import annotations

import pytest

import random
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from llmtray.core import latency
from llmtray.core.events import UsageEvent, parse_event
from llmtray.core.queries import Filters, Queries
from llmtray.core.sketch import ALPHA
from llmtray.core.store import Batch, Store, to_us

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

T0 = datetime(2026, 9, 1, 9, 30, tzinfo=UTC)
NOW = T0 + timedelta(days=30)


def calls(n: int, seed: int, prefix: str) -> list[UsageEvent]:
    rng = random.Random(seed)
    return [parse_event({
        "id": f"{prefix}-{i}", "provider": "openai", "model": rng.choice(["gpt-4o", "gpt-4o-mini", "o3"]),
        "ts": (T0 + timedelta(seconds=rng.randrange(0, 5 * 86_400))).isoformat(),
        "input_tokens": 10, "latency_ms": rng.lognormvariate(6, 1), "status": rng.choice(["ok"] * 9 + ["error"]),
        "ttft_ms": rng.lognormvariate(4, 0.5) if rng.random() < 0.5 else None,
        "feature": rng.choice(["chat", "search"]), "tags": {"team": rng.choice(["a", "b"])},
    }, now=NOW) for i in range(n)]


def check(store: Store) -> None:
    rows = [dict(zip([d[0] for d in c.description], r)) for c in [store.conn.execute("SELECT * FROM event")] for r in c]
    q = Queries(store.conn, UTC)
    for f in (Filters(), Filters(tags=(("team", "a"),)), Filters(feature=("chat",)),
              Filters(start_us=to_us(T0 + timedelta(days=1, hours=3)), end_us=to_us(T0 + timedelta(days=3)))):
        got = {s.model: s for s in q.latency(f, limit_models=10)}
        expected: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            if (r["status"] == "ok" and (f.start_us is None or r["ts"] >= f.start_us) and (f.end_us is None or r["ts"] < f.end_us)
                    and (not f.feature or r["feature"] in f.feature) and (not f.tags or f'"team":"{f.tags[0][1]}"' in r["tags"])):
                expected[r["model"]].append(r["latency_ms"])
        assert set(got) == set(expected), f
        for model, xs in expected.items():
            xs.sort()
            assert got[model].count == len(xs)
            for value, pct in zip((got[model].p50, got[model].p95, got[model].p99), (50, 95, 99)):
                exact = xs[max(0, -(-pct * len(xs) // 100) - 1)]
                assert abs(value - exact) <= ALPHA * exact + 1e-9, (f, model, pct)


def sketches(store: Store) -> list[tuple]:
    return sorted(store.conn.execute("SELECT * FROM latency_sketch"))


def test_sketches_follow_removal_replacement_and_plain_deletes(data_dir):
    store = Store.open(data_dir / "llmtray.db")
    try:
        store.add(calls(1500, 1, "hook"), "hook")
        ds = store.create_dataset("x.csv", "openai-usage", None)
        store.add(calls(800, 2, "imp"), "import:openai-usage", ds)
        check(store)
        store.remove_dataset(ds)  # the store recomputes the days at once
        assert latency.stale_days(store.conn) == set()
        check(store)

        grown = [replace(e, latency_ms=e.latency_ms * 3) for e in calls(50, 1, "hook")]
        store.add_many([Batch(grown, "hook", replace=True)])
        assert latency.stale_days(store.conn) == set()  # the old copies were taken out exactly
        check(store)
        subtracted = sketches(store)
        latency.rebuild(store.conn)
        assert sketches(store) == subtracted

        store.conn.execute("DELETE FROM event WHERE feature = 'search' AND ts < ?", (to_us(T0 + timedelta(days=2)),))
        assert latency.stale_days(store.conn)  # plain SQL: the days wait for the store
        check(store)  # ... and readers take them from the events meanwhile
        latency.refresh(store.conn)
        assert latency.stale_days(store.conn) == set()
        check(store)
        recomputed = sketches(store)
        latency.rebuild(store.conn)
        assert sketches(store) == recomputed
    finally:
        store.close()


def test_the_blob_round_trips_every_shape_of_bins():
    """Dense and sparse bins, negative ones (under a millisecond), gaps past a byte, counts that
    need one to eight bytes."""
    rng = random.Random(7)
    shapes = [Counter({b: 1 for b in range(100, 400)}), Counter({-345: 2, 900: 1}), Counter({5: 2**40}),
              Counter({0: 255, 1: 256, 2: 65536})]
    shapes += [Counter({rng.randrange(-345, 1300): rng.choice([1, 7, 300, 70_000, 2**33])
                        for _ in range(rng.randrange(1, 80))}) for _ in range(300)]
    for bins in shapes:
        keys, counts = latency.decode(latency.encode(bins))
        assert dict(zip(keys, counts)) == dict(bins)
    assert latency.encode(Counter()) is None
    dense = latency.encode(Counter({b: 3 for b in range(100, 180)}))
    assert dense is not None and len(dense) == 1 + 2 + 79 + 80  # 2 bytes a bin
