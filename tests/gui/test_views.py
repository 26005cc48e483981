"""The dashboard's view functions (no Qt): ranges, cache savings and the keyset event pages."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from llmtray.core import periods
from llmtray.core.events import parse_event
from llmtray.core.pricing import Pricer
from llmtray.core.sketch import ALPHA
from llmtray.core.queries import PAGE_ORDERS, Filters, Queries, Totals
from llmtray.gui.views import cache_savings, resolve_range

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Kathmandu", "UTC"])
def test_ranges_are_local_calendar_days(zone):
    tz = ZoneInfo(zone)
    w = resolve_range("7d", tz, NOW)
    today = NOW.astimezone(tz).date()
    assert (w.first, w.last) == (date.fromordinal(today.toordinal() - 6), today)
    assert w.start_us == periods.midnight_us(w.first, tz)
    month = resolve_range("month", tz, NOW)
    assert month.first == today.replace(day=1)
    last = resolve_range("last_month", tz, NOW)
    assert (last.first, last.last) == (date(2026, 2, 1), date(2026, 2, 28))
    assert last.end_us == month.start_us
    with pytest.raises(ValueError, match="unknown range"):
        resolve_range("fortnight", tz, NOW)


def test_cache_savings_hand_computed():
    """claude-sonnet-4: input $3/MTok, cache read $0.30, 5-minute cache write $3.75, 1-hour write $6.
    1M read tokens save $2.70; 200k 5-minute writes cost $0.15 extra; 100k 1-hour writes $0.30 extra."""
    t = Totals(input_tokens=2_000_000, cache_read_tokens=1_000_000, cache_write_tokens=300_000,
               cache_write_1h_tokens=100_000)
    saved = cache_savings([("anthropic", "claude-sonnet-4-20250514", t)], Pricer(), NOW)
    assert saved == 2_700_000_000 - 150_000_000 - 300_000_000
    assert cache_savings([("anthropic", "claude-sonnet-4-20250514", Totals(input_tokens=10))], Pricer(), NOW) is None
    unpriced = Totals(input_tokens=100, cache_read_tokens=50)
    assert cache_savings([("vllm", "acme-support-ft-v2", unpriced)], Pricer(), NOW) == 0


def test_event_pages_continue_where_the_last_one_stopped(store):
    events = [parse_event({"provider": "openai", "model": f"m{i % 3}", "ts": 1_700_000_000 + i // 2,
                           "input_tokens": (i * 37) % 11, "cost_usd": None if i % 5 == 0 else f"0.{i % 7}",
                           "latency_ms": None if i % 4 == 0 else float(i % 9), "feature": f"f{i % 2}"},
                          now=NOW) for i in range(103)]
    store.add(events, "api")
    q = Queries(store.conn, UTC)
    for order in PAGE_ORDERS:
        for descending in (True, False):
            pages, after = [], None
            while True:
                page = q.events_page(Filters(feature=("f1",)), order, descending, after, limit=10)
                pages.extend(page)
                if len(page) < 10:
                    break
                after = (page[-1]["sort_key"], page[-1]["id"])
            everything = q.events_page(Filters(feature=("f1",)), order, descending, None, limit=1000)
            assert [r["id"] for r in pages] == [r["id"] for r in everything]
            assert len(pages) == 51
            keys = [(r["sort_key"], r["id"]) for r in pages]
            assert keys == sorted(keys, reverse=descending)
    with pytest.raises(ValueError, match="cannot sort events by"):
        q.events_page(order="tags")


def test_latency_of_every_call_and_values_seen(store):
    events = [parse_event({"provider": "openai" if i % 3 else "anthropic", "model": f"m{i % 3}",
                           "ts": 1_700_000_000 + i * 60, "latency_ms": float((i * 7919) % 1000),
                           "feature": f"f{i % 4}", "tags": {"team": f"t{i % 2}"}}, now=NOW) for i in range(300)]
    store.add(events, "api")
    q = Queries(store.conn, UTC)
    stats = q.latency()
    assert [s.model for s in stats] == ["m0", "m1", "m2"]
    for s in stats:
        xs = sorted(e.latency_ms for e in events if e.model == s.model)
        assert s.count == len(xs) == 100 and s.ttft is None
        for got, pct in zip((s.p50, s.p95, s.p99), (50, 95, 99)):
            assert got == pytest.approx(xs[-(-pct * len(xs) // 100) - 1], rel=ALPHA)

    seen = q.values_seen(("provider", "model", "feature", "source"))
    assert seen == {d: q.distinct(d) for d in ("provider", "model", "feature", "source")}
    late = Filters(start_us=(1_700_000_000 + 290 * 60) * 1_000_000)
    assert q.values_seen(("model",), late) == {"model": sorted({f"m{i % 3}" for i in range(290, 300)})}
    assert q.tag_values() == [("team", "t0"), ("team", "t1")]
    assert q.tag_values(Filters(end_us=1_699_990_000 * 1_000_000)) == []  # well before the first event
    assert q.tag_values(Filters(start_us=(1_700_000_000 + 300 * 60 + 900) * 1_000_000)) == []  # after the last
    with pytest.raises(ValueError, match="unknown dimension"):
        q.values_seen(("colour",))
