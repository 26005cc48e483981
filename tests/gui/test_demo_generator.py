"""The demo traffic generator: deterministic, valid, and shaped like a real team's usage."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from llmtray import demo
from llmtray.core.events import parse_event
from llmtray.core.pricing import Pricer
from llmtray.core.queries import Filters, Queries

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


def test_same_arguments_same_events():
    a = list(demo.generate(days=5, seed=3, per_day=200, now=NOW, tz=UTC))
    b = list(demo.generate(days=5, seed=3, per_day=200, now=NOW, tz=UTC))
    c = list(demo.generate(days=5, seed=4, per_day=200, now=NOW, tz=UTC))
    assert a == b
    assert a != c


def test_every_event_is_valid_and_not_after_now():
    events = list(demo.generate(days=10, seed=1, per_day=300, now=NOW, tz=UTC))
    for e in events:
        assert parse_event(e.to_json(), now=NOW) == e  # survives the real validator unchanged
        assert e.ts <= NOW


def test_volume_providers_caching_reasoning_and_an_unpriced_model():
    events = list(demo.generate(days=28, seed=1, per_day=500, now=NOW, tz=UTC))
    days = 27 + (NOW.hour * 60 + NOW.minute) / 1440
    assert 0.8 * 500 * days < len(events) < 1.25 * 500 * days
    assert {e.provider for e in events} >= {"openai", "anthropic", "google", "openrouter", "vllm"}
    assert any(e.cache_read_tokens for e in events if e.provider == "anthropic")
    assert any(e.cache_write_tokens for e in events if e.provider == "anthropic")
    assert any(e.reasoning_tokens for e in events if e.model.startswith("o3"))
    assert any(e.ttft_ms is not None and e.ttft_ms <= e.latency_ms for e in events)
    assert any(e.tags for e in events) and any(e.user for e in events)
    pricer = Pricer()
    unpriced = {e.model for e in events if pricer.price(e).cost_source == "unpriced"}
    assert unpriced == {"acme-support-ft-v2"}


def test_weekly_rhythm_runaway_day_and_error_bursts():
    events = list(demo.generate(days=60, seed=1, per_day=400, now=NOW, tz=UTC))
    per_day: dict = defaultdict(int)
    agent_per_day: dict = defaultdict(int)
    for e in events:
        per_day[e.ts.date()] += 1
        agent_per_day[e.ts.date()] += e.feature == "agent"
    weekdays = [n for d, n in per_day.items() if d.weekday() < 5 and d != NOW.date()]
    weekends = [n for d, n in per_day.items() if d.weekday() >= 5]
    assert statistics.median(weekends) < 0.6 * statistics.median(weekdays)
    runaway = NOW.date() - timedelta(days=demo.RUNAWAY_DAYS_AGO)
    assert agent_per_day[runaway] > 4 * statistics.median(agent_per_day.values())
    errors_by_day: dict = defaultdict(int)
    for e in events:
        errors_by_day[e.ts.date()] += e.status == "error"
    burst_days = {NOW.date() - timedelta(days=d) for d, *_ in demo.ERROR_BURSTS}
    assert all(errors_by_day[d] >= 5 for d in burst_days), {d: errors_by_day[d] for d in burst_days}
    assert sum(n for d, n in errors_by_day.items() if d not in burst_days) == 0


def test_office_hours_in_the_given_zone():
    events = list(demo.generate(days=14, seed=2, per_day=400, now=NOW, tz=UTC))
    office = [e for e in events if e.feature == "chat-assistant" and e.ts.weekday() < 5]
    daytime = sum(8 <= e.ts.hour < 19 for e in office)
    assert daytime > 0.7 * len(office)


def test_live_events_are_fresh_and_few():
    rng = random.Random(5)
    batches = [demo.live_events(rng, NOW) for _ in range(200)]
    assert max(len(b) for b in batches) <= 4
    assert sum(len(b) for b in batches) > 200
    for batch in batches:
        for e in batch:
            assert NOW - timedelta(seconds=3) <= e.ts <= NOW
            parse_event(e.to_json(), now=NOW)


def test_fill_stores_everything_with_each_feature_source(store):
    stored = demo.fill(store, days=3, seed=1, per_day=300, now=NOW, tz=UTC, chunk=250)
    assert stored == len(list(demo.generate(days=3, seed=1, per_day=300, now=NOW, tz=UTC)))
    q = Queries(store.conn, UTC)
    assert q.totals(Filters()).events == stored
    by_source = {s: t.events for s, t in q.by("source")}
    assert set(by_source) == set(demo.SOURCES)
    assert by_source["import:openrouter"] == q.totals(Filters(feature=("eval-batch",))).events


def test_the_demo_has_its_budgets_before_its_first_events(tmp_path):
    """The KPI strip read "no budget" while the demo history loaded (issue #17): the budgets are
    there when the first chunk of history is announced."""
    import sqlite3

    from llmtray.gui.demo_feed import DemoFeed

    db = tmp_path / "demo" / "llmtray.db"
    db.parent.mkdir()
    seen: list[tuple[int, int]] = []

    def announced(_committed) -> None:  # noqa: ANN001 - on the feed's thread, after a commit
        conn = sqlite3.connect(db)
        try:
            seen.append(tuple(conn.execute("SELECT (SELECT count(*) FROM budget), (SELECT count(*) FROM event)")
                              .fetchone()))
        finally:
            conn.close()

    feed = DemoFeed(db, announced, tz=UTC, live=False, days=2, per_day=50)
    feed.start()
    assert feed.history_loaded.wait(60)
    feed.stop()
    assert seen and seen[0][1] > 0
    assert seen[0][0] == len(demo.DEMO_BUDGETS)
