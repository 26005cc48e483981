"""Every aggregation against a brute-force Python computation over the same random events,
in time zones with DST changes and quarter- and half-hour offsets, through every rollup level
(day, hour, quarter-hour, per tag, per user) and the event table."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llmtray.core.events import UsageEvent, parse_event
from llmtray.core.periods import midnight_us
from llmtray.core.pricing import Pricer, load_overrides
from llmtray.core.model_names import alias_of
from llmtray.core.queries import Filters, Queries, Totals
from llmtray.core.sketch import ALPHA
from llmtray.core.store import Store, to_us

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-latest"),
          ("google", "gemini-2.5-flash"), ("acme", "mystery-1")]  # the last one is unpriced


def random_events(n: int, seed: int) -> list[UsageEvent]:
    rng, first_token = random.Random(seed), random.Random(-seed)  # the second keeps the first's sequence
    out = []
    start = datetime(2026, 10, 15, tzinfo=UTC)  # spans the end of DST in Europe and the US
    for i in range(n):
        provider, model = rng.choice(MODELS)
        inp = rng.randrange(0, 50_000)
        cr = rng.randrange(0, inp + 1) if rng.random() < 0.5 else 0
        out_t = rng.randrange(0, 5_000)
        data = {
            "provider": provider, "model": model,
            "ts": (start + timedelta(seconds=rng.randrange(0, 36 * 86_400))).isoformat(),
            "input_tokens": inp, "cache_read_tokens": cr, "output_tokens": out_t,
            "reasoning_tokens": rng.randrange(0, out_t + 1) if rng.random() < 0.3 else 0,
            "requests": rng.choice([1, 1, 1, 3]),
            "feature": rng.choice(["chat", "search", "summarize", None]),
            "user": rng.choice(["u1", "u2", None]),
            "latency_ms": round(rng.uniform(50, 5000), 1) if rng.random() < 0.8 else None,
            "ttft_ms": round(first_token.lognormvariate(5, 1), 2) if first_token.random() < 0.5 else None,
            "status": "error" if rng.random() < 0.05 else "ok",
            "tags": {k: v for k, v in (("team", rng.choice(["a", "b"])), ("exp", rng.choice(["x", "y"])))
                     if rng.random() < 0.6},
        }
        if rng.random() < 0.1:
            data["cost_usd"] = f"{rng.randrange(0, 10**7) / 10**9:.9f}"
        out.append(parse_event(data, now=NOW))
    # an event just after local midnight and one just before, in each test zone, land right
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("q") / "llmtray.db"
    store = Store.open(path)
    events = random_events(4000, seed=3)
    sources = ["hook", "proxy", "api", "import:openai-usage"]
    for i in range(0, len(events), 500):
        store.add(events[i:i + 500], sources[(i // 500) % 4])
    rows = [dict(zip([d[0] for d in c.description], r)) for c in [store.conn.execute("SELECT * FROM event")] for r in c]
    tags = defaultdict(dict)
    for eid, k, v in store.conn.execute("SELECT event, key, value FROM event_tag"):
        tags[eid][k] = v
    for r in rows:
        r["tagmap"] = tags[r["id"]]
    store.close()
    return path, rows


def brute_totals(rows: list[dict]) -> Totals:
    t = Totals()
    for r in rows:
        t.add(Totals(1, r["requests"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                     r["cache_write_tokens"], r["cache_write_1h_tokens"], r["reasoning_tokens"],
                     r["cost_nanos"] or 0, r["requests"] if r["cost_nanos"] is None else 0))
    return t


def local_day(us: int, tz) -> date:
    return datetime.fromtimestamp(us / 1e6, UTC).astimezone(tz).date()


ZONES = ["America/Los_Angeles", "Europe/Berlin", "Asia/Kathmandu", "Asia/Tokyo"]


@pytest.mark.parametrize("zone", ZONES)
def test_daily_by_model_matches_brute_force(loaded, zone):
    path, rows = loaded
    tz = ZoneInfo(zone)
    q = Queries(Store.open(path).conn, tz)
    first, last = date(2026, 10, 16), date(2026, 11, 18)
    series = q.daily(Filters(), first, last, split="model", top=100)
    expected: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        d = local_day(r["ts"], tz)
        if first <= d <= last:
            expected[r["model"]][d] += r["cost_nanos"] or 0
    for model, per_day in expected.items():
        assert series.series[model] == [per_day.get(d, 0) for d in series.days], model
    assert series.totals == [sum(expected[m].get(d, 0) for m in expected) for d in series.days]


@pytest.mark.parametrize("zone", ZONES)
def test_day_boundaries_in_zone(tmp_path, zone):
    """Events one second either side of local midnight land on different local days."""
    tz = ZoneInfo(zone)
    store = Store.open(tmp_path / "llmtray.db")
    for d in (date(2026, 3, 29), date(2026, 11, 1), date(2026, 11, 2)):  # EU and US DST ends, a normal day
        midnight = datetime(d.year, d.month, d.day, tzinfo=tz)
        for delta, cost in ((-1, "1"), (1, "2")):
            store.add([parse_event({"provider": "openai", "model": "m", "cost_usd": cost,
                                    "ts": (midnight + timedelta(seconds=delta)).isoformat()}, now=NOW)], "api")
        series = Queries(store.conn, tz).daily(Filters(), d - timedelta(days=1), d)
        assert series.totals == [10**9, 2 * 10**9]
        store.conn.execute("DELETE FROM event")
    store.close()


@pytest.mark.parametrize("dimension", ["provider", "model", "feature", "user", "source", "status"])
def test_by_dimension_matches(loaded, dimension):
    path, rows = loaded
    q = Queries(Store.open(path).conn, UTC)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[dimension]].append(r)
    got = dict(q.by(dimension))
    assert {k: v for k, v in got.items()} == {k: brute_totals(v) for k, v in groups.items()}


def test_by_tag_key_matches(loaded):
    path, rows = loaded
    q = Queries(Store.open(path).conn, UTC)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["tagmap"].get("team", "")].append(r)
    assert dict(q.by("tag:team")) == {k: brute_totals(v) for k, v in groups.items()}


FILTERS = [
    Filters(provider=("openai",)),
    Filters(model=("gpt-4o", "mystery-1")),
    Filters(feature=("search",), source=("hook", "proxy")),
    Filters(tags=(("team", "a"),)),
    Filters(user=("u1",), model=("gpt-4o",)),
    Filters(tags=(("team", "a"), ("exp", "y")), provider=("anthropic",)),
    Filters(start_us=to_us(datetime(2026, 11, 1, tzinfo=UTC)), end_us=to_us(datetime(2026, 11, 8, tzinfo=UTC))),
    Filters(start_us=to_us(datetime(2026, 11, 1, 0, 7, tzinfo=UTC))),  # not on a 15-minute boundary
]


def brute_filter(rows: list[dict], f: Filters) -> list[dict]:
    out = []
    for r in rows:
        if f.start_us is not None and r["ts"] < f.start_us:
            continue
        if f.end_us is not None and r["ts"] >= f.end_us:
            continue
        if any(getattr(f, d) and r[d] not in getattr(f, d) for d in ("provider", "model", "feature", "user", "source")):
            continue
        if any(r["tagmap"].get(k) != v for k, v in f.tags):
            continue
        out.append(r)
    return out


@pytest.mark.parametrize("f", FILTERS, ids=[f"f{i}" for i in range(len(FILTERS))])
def test_filtered_totals_breakdown_and_unpriced(loaded, f):
    path, rows = loaded
    q = Queries(Store.open(path).conn, UTC)
    sel = brute_filter(rows, f)
    t = brute_totals(sel)
    assert q.totals(f) == t
    assert q.token_breakdown(f) == {
        "uncached input": t.input_tokens - t.cache_read_tokens - t.cache_write_tokens,
        "cache read": t.cache_read_tokens, "cache write": t.cache_write_tokens,
        "output": t.output_tokens - t.reasoning_tokens, "reasoning": t.reasoning_tokens,
    }
    unpriced: dict[tuple[str, str], int] = defaultdict(int)
    for r in sel:
        if r["cost_nanos"] is None:
            unpriced[(r["provider"], r["model"])] += r["requests"]
    assert {(p, m): n for p, m, n in q.unpriced_models(f)} == dict(unpriced)


def test_per_minute_and_per_bucket(loaded):
    path, rows = loaded
    q = Queries(Store.open(path).conn, UTC)
    start, end = to_us(datetime(2026, 11, 3, 10, tzinfo=UTC)), to_us(datetime(2026, 11, 3, 16, tzinfo=UTC))
    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if start <= r["ts"] < end:
            m = r["ts"] // 60_000_000 * 60_000_000
            expected[m][0] += r["cost_nanos"] or 0
            expected[m][1] += r["requests"]
    assert q.per_minute(start, end) == [(m, c, n) for m, (c, n) in sorted(expected.items())]
    hourly = dict(q.per_bucket(Filters(start_us=start, end_us=end), 3_600_000_000))
    for h, t in hourly.items():
        assert t == brute_totals([r for r in rows if h <= r["ts"] < h + 3_600_000_000])


def test_cost_per_request_excludes_unpriced(loaded):
    path, rows = loaded
    t = Queries(Store.open(path).conn, UTC).totals()
    priced = [r for r in rows if r["cost_nanos"] is not None]
    assert t.cost_per_request_nanos == sum(r["cost_nanos"] for r in priced) // sum(r["requests"] for r in priced)


def test_projection_uses_recent_pace(tmp_path):
    """$1/hour for 40 days → month-end projection = month so far + $1/h × hours left."""
    store = Store.open(tmp_path / "llmtray.db")
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    store.add([parse_event({"provider": "openai", "model": "m", "cost_usd": "1",
                            "ts": (now - timedelta(hours=h, minutes=30)).isoformat()}, now=now)
               for h in range(40 * 24)], "api")
    q = Queries(store.conn, UTC)
    month_so_far = 19 * 24 + 12  # hours since 2026-11-01 00:00 UTC, one event each
    left = 10 * 24 + 12  # hours to 2026-12-01
    # pace window: since the month began (longer than 7 days here), exactly $1/h
    assert q.projection("month", now=now) == (month_so_far + left) * 10**9
    store.close()


def test_projection_quiet_start_is_not_zero(tmp_path):
    """On the 1st at 01:00 with nothing spent yet this month, last week's pace still projects."""
    store = Store.open(tmp_path / "llmtray.db")
    now = datetime(2026, 12, 1, 1, tzinfo=UTC)
    store.add([parse_event({"provider": "openai", "model": "m", "cost_usd": "24",
                            "ts": (now - timedelta(days=d, hours=12)).isoformat()}, now=now) for d in range(7)], "api")
    assert Queries(store.conn, UTC).projection("month", now=now) > 0
    store.close()


def test_distinct_values_for_pickers(loaded):
    path, rows = loaded
    q = Queries(Store.open(path).conn, UTC)
    assert q.distinct("feature") == sorted({r["feature"] for r in rows if r["feature"]})
    assert q.distinct("user") == ["u1", "u2"]
    assert q.tag_keys() == ["exp", "team"]
    assert midnight_us(date(2026, 1, 1), UTC) == to_us(datetime(2026, 1, 1, tzinfo=UTC))


# --- every path through the rollup levels (day, hour, quarter-hour, events) ------------------

HALF_HOUR_ZONES = ["Asia/Kolkata", "Australia/Adelaide"]  # +5:30; +9:30/+10:30 with DST
PATH_FILTERS = [
    Filters(),
    Filters(provider=("openai",)),
    Filters(tags=(("team", "a"),)),
    Filters(tags=(("team", "b"),), model=("gpt-4o", "mystery-1")),
    Filters(user=("u1",)),
    Filters(tags=(("team", "a"), ("exp", "y"))),
    Filters(user=("u2",), tags=(("exp", "x"),)),
    Filters(model=("gpt-4o", "mystery-1")),
    Filters(model=("gpt-4o",), provider=("openai",), source=("hook", "proxy")),
]


def rows_from(conn) -> list[dict]:
    cur = conn.execute("SELECT * FROM event")
    rows = [dict(zip([d[0] for d in cur.description], r)) for r in cur]
    tags = defaultdict(dict)
    for eid, k, v in conn.execute("SELECT event, key, value FROM event_tag"):
        tags[eid][k] = v
    for r in rows:
        r["tagmap"] = tags[r["id"]]
    return rows


def brute_by(rows: list[dict], dimension: str) -> dict[str, Totals]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["tagmap"].get(dimension[4:], "") if dimension.startswith("tag:") else r[dimension]].append(r)
    return {k: brute_totals(v) for k, v in groups.items()}


def check_every_path(q: Queries, rows: list[dict], tz) -> None:
    """Ranges from local midnight to local midnight (not whole UTC hours in a half-hour zone),
    ragged ranges, open ranges; every filter; totals, breakdowns, daily, pickers, time series."""
    first, last = date(2026, 10, 17), date(2026, 11, 16)
    ranges = [
        (midnight_us(first, tz), midnight_us(last + timedelta(days=1), tz)),
        (midnight_us(first, tz) + 7 * 60_000_000 + 3, midnight_us(last, tz) - 11 * 60_000_000),
        (midnight_us(first, tz), None),
        (None, None),
    ]
    for f0 in PATH_FILTERS:
        for start, end in ranges:
            f = f0.between(start, end)
            sel = brute_filter(rows, f)
            assert q.totals(f) == brute_totals(sel), f
            for dim in ("model", "user", "feature", "tag:team", "tag:exp"):
                assert dict(q.by(dim, f)) == brute_by(sel, dim), (dim, f)
            assert q.values_seen(("provider", "model", "user"), f) == {
                d: sorted({r[d] for r in sel if r[d]}) for d in ("provider", "model", "user")}, f
        series = q.daily(f0, first, last, split="model", top=100)
        expected: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
        requests: dict[date, int] = defaultdict(int)
        for r in brute_filter(rows, f0):
            d = local_day(r["ts"], tz)
            if first <= d <= last:
                expected[r["model"]][d] += r["cost_nanos"] or 0
                requests[d] += r["requests"]
        assert {m: s for m, s in series.series.items()} == {
            m: [per_day.get(d, 0) for d in series.days] for m, per_day in expected.items()}, f0
        assert series.requests == [requests.get(d, 0) for d in series.days], f0
        span = Filters(start_us=ranges[1][0] - ranges[1][0] % 900_000_000, end_us=ranges[0][1] - ranges[0][1] % 900_000_000)
        span = replace(span, provider=f0.provider, model=f0.model, user=f0.user, tags=f0.tags)
        for width in (900_000_000, 3_600_000_000, 86_400_000_000):
            expected_buckets: dict[int, list[dict]] = defaultdict(list)
            for r in brute_filter(rows, span):
                expected_buckets[r["ts"] // width * width].append(r)
            assert dict(q.per_bucket(span, width)) == {b: brute_totals(v) for b, v in expected_buckets.items()}


@pytest.mark.parametrize("zone", ["UTC", *ZONES, *HALF_HOUR_ZONES])
def test_every_rollup_path_matches_brute_force(loaded, zone):
    path, rows = loaded
    store = Store.open(path)
    try:
        check_every_path(Queries(store.conn, ZoneInfo(zone)), rows, ZoneInfo(zone))
    finally:
        store.close()


def test_paths_stay_exact_after_dataset_removal_and_reprice(tmp_path):
    """Removing an import and repricing change every level; the answers still equal the events'."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = Store.open(data_dir / "llmtray.db")
    try:
        events = random_events(1500, seed=11)
        store.add(events[:1000], "hook")
        ds = store.create_dataset("usage.csv", "openai-usage", None)
        store.add(events[1000:], "import:openai-usage", ds)
        tz = ZoneInfo("Asia/Kolkata")
        q = Queries(store.conn, tz)
        check_every_path(q, rows_from(store.conn), tz)
        assert store.remove_dataset(ds).removed == 500
        check_every_path(q, rows_from(store.conn), tz)
        (data_dir / "pricing.toml").write_text(
            "[[model]]\nprovider='acme'\nmodel='mystery-1'\ninput_mtok=1\noutput_mtok=2\n")
        store.pricer = Pricer(load_overrides(data_dir / "pricing.toml"))
        assert store.reprice()[1] > 0
        rows = rows_from(store.conn)
        assert not [r for r in rows if r["cost_nanos"] is None and r["model"] == "mystery-1"]
        check_every_path(q, rows, tz)
    finally:
        store.close()


def test_user_and_tag_pickers(loaded):
    path, rows = loaded
    store = Store.open(path)
    try:
        q = Queries(store.conn, UTC)
        assert q.tag_values() == sorted({kv for r in rows for kv in r["tagmap"].items()})
        q15 = 900_000_000
        for start, end in ((to_us(datetime(2026, 11, 1, 0, 7, tzinfo=UTC)), to_us(datetime(2026, 11, 3, 5, 50, tzinfo=UTC))),
                           (to_us(datetime(2026, 11, 2, 10, 1, tzinfo=UTC)), to_us(datetime(2026, 11, 2, 10, 20, tzinfo=UTC)))):
            lo, hi = start - start % q15, -(-end // q15) * q15  # whole buckets either side
            assert q.tag_values(Filters(start_us=start, end_us=end)) == sorted(
                {kv for r in rows if lo <= r["ts"] < hi for kv in r["tagmap"].items()})
        assert q.distinct("user") == sorted({r["user"] for r in rows if r["user"]})
    finally:
        store.close()


@pytest.mark.parametrize("f", PATH_FILTERS, ids=[f"f{i}" for i in range(len(PATH_FILTERS))])
def test_latency_percentiles_match_brute_force_within_alpha(loaded, f):
    """p50/p95/p99 of latency and time to first token per model, from the rollups' bins (whole
    days and hours) and the events' (ragged edges, filters no latency level keys), against exact
    nearest-rank percentiles of every successful call: the same count, each value within
    `sketch.ALPHA` — through every path, in a range with quarter-hour edges and an open one."""
    path, rows = loaded
    store = Store.open(path)
    try:
        q = Queries(store.conn, UTC)
        ranges = ((None, None), (to_us(datetime(2026, 11, 1, 0, 7, tzinfo=UTC)), to_us(datetime(2026, 11, 9, 5, 45, tzinfo=UTC))),
                  (to_us(datetime(2026, 10, 20, 18, 15, tzinfo=UTC)), None))
        for start, end in ranges:
            ranged = f.between(start, end)
            calls = [r for r in brute_filter(rows, ranged) if r["status"] == "ok"]
            got = {s.model: s for s in q.latency(ranged, limit_models=100)}
            expected_models = {alias_of(r["model"]) for r in calls if r["latency_ms"] is not None}
            assert set(got) == expected_models, ranged
            for model, stats in got.items():
                mine = [r for r in calls if alias_of(r["model"]) == model]
                xs = sorted(r["latency_ms"] for r in mine if r["latency_ms"] is not None)
                assert stats.count == len(xs)
                assert_within_alpha((stats.p50, stats.p95, stats.p99), xs)
                ttft = sorted(r["ttft_ms"] for r in mine if r["ttft_ms"] is not None)
                if ttft:
                    assert stats.ttft is not None
                    assert_within_alpha(stats.ttft, ttft)
                else:
                    assert stats.ttft is None
    finally:
        store.close()


def assert_within_alpha(got: tuple[float, ...], sorted_values: list[float]) -> None:
    n = len(sorted_values)
    exact = [sorted_values[max(0, -(-p * n // 100) - 1)] for p in (50, 95, 99)]
    for g, x in zip(got, exact):
        assert abs(g - x) <= ALPHA * x + 1e-9, (got, exact)