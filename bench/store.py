"""Store throughput and dashboard query latency, against naive baselines in the same run.

    python bench/store.py [--events 1000000] [--baseline-events 20000]

Prints: events/s through `Store.add` (validation done beforehand, pricing + insert + rollups
+ tags measured) vs the naive way (one connection, one INSERT and one COMMIT per event), and
milliseconds for each dashboard query at the chosen size, rollup path vs a plain GROUP BY over
the event table.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtray.core.events import UsageEvent, parse_event  # noqa: E402
from llmtray.core.queries import Filters, Queries  # noqa: E402
from llmtray.core.store import Store, to_us  # noqa: E402

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-3-5-haiku-latest"), ("google", "gemini-2.5-flash"), ("openrouter", "anthropic/claude-3.5-sonnet")]
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def synthetic(n: int, seed: int = 1, days: int = 90) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    span = days * 86_400
    for _ in range(n):
        provider, model = rng.choice(MODELS)
        inp = rng.randrange(100, 20_000)
        out.append(parse_event({
            "provider": provider, "model": model, "ts": (NOW - timedelta(seconds=rng.randrange(span))).isoformat(),
            "input_tokens": inp, "cache_read_tokens": rng.randrange(0, inp) if rng.random() < 0.4 else 0,
            "output_tokens": rng.randrange(10, 2000), "latency_ms": rng.uniform(200, 4000),
            "feature": rng.choice(["chat", "search", "summarize", "agent", "embed"]),
            "user": f"u{rng.randrange(50)}", "tags": {"team": rng.choice("abc")},
        }, now=NOW))
    out.sort(key=lambda e: e.ts)  # events arrive (and exports list them) roughly in time order
    return out


def bench_store(events: list[UsageEvent], path: Path) -> float:
    store = Store.open(path)
    t = time.perf_counter()
    for i in range(0, len(events), 5000):
        store.add(events[i:i + 5000], "api")
    elapsed = time.perf_counter() - t
    store.close()
    return len(events) / elapsed


def bench_naive(events: list[UsageEvent], path: Path) -> float:
    """What a seed-style tracker does: connect, insert, commit, close — per event."""
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=wal")
    setup.execute("CREATE TABLE IF NOT EXISTS ev (ts, provider, model, input_tokens, output_tokens, cost)")
    setup.close()
    t = time.perf_counter()
    for e in events:
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?)",
                     (e.ts.isoformat(), e.provider, e.model, e.input_tokens, e.output_tokens, 0.0))
        conn.commit()
        conn.close()
    return len(events) / (time.perf_counter() - t)


def timed(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def bench_queries(path: Path) -> list[tuple[str, float, float | None]]:
    store = Store.open(path)
    q = Queries(store.conn, UTC)
    conn = store.conn
    start30 = to_us(NOW - timedelta(days=30)) // 900_000_000 * 900_000_000
    f30 = Filters(start_us=start30)
    first = date(2026, 10, 28)
    naive_by = "SELECT model, sum(cost_nanos), sum(requests) FROM event WHERE ts >= ? GROUP BY model"
    naive_daily = ("SELECT date(ts / 1000000, 'unixepoch', 'localtime'), model, sum(cost_nanos) FROM event"
                   " WHERE ts >= ? GROUP BY 1, 2")
    rows = [
        ("totals (30 d)", timed(lambda: q.totals(f30)),
         timed(lambda: conn.execute("SELECT sum(cost_nanos), sum(requests) FROM event WHERE ts >= ?", (start30,)).fetchall())),
        ("daily by model (30 d)", timed(lambda: q.daily(f30, first, date(2026, 11, 26))),
         timed(lambda: conn.execute(naive_daily, (start30,)).fetchall())),
        ("by model (30 d)", timed(lambda: q.by("model", f30)), timed(lambda: conn.execute(naive_by, (start30,)).fetchall())),
        ("by feature (all)", timed(lambda: q.by("feature")), None),
        ("by tag:team (30 d)", timed(lambda: q.by("tag:team", f30)), None),
        ("token breakdown (30 d)", timed(lambda: q.token_breakdown(f30)), None),
        ("cost/request per hour (7 d)", timed(lambda: q.per_bucket(Filters(start_us=start30 + 23 * 86_400_000_000), 3_600_000_000)), None),
        ("live last hour per minute", timed(lambda: q.per_minute(to_us(NOW) - 3_600_000_000, to_us(NOW))), None),
        ("latency p50/95/99 (7 d)", timed(lambda: q.latency(Filters(start_us=to_us(NOW - timedelta(days=7)))), 3), None),
        ("unpriced models (all)", timed(lambda: q.unpriced_models()), None),
        ("recent 100 events", timed(lambda: q.recent(100)), None),
        ("filtered by tag team=a (30 d)", timed(lambda: q.totals(Filters(start_us=start30, tags=(("team", "a"),))), 3), None),
        ("month projection", timed(lambda: q.projection("month", now=NOW)), None),
    ]
    store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--baseline-events", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        events = synthetic(args.events)
        print(f"generated and validated {len(events):,} events in {time.perf_counter() - t:.1f} s")
        store_rate = bench_store(events, Path(tmp) / "store.db")
        naive_rate = bench_naive(events[: args.baseline_events], Path(tmp) / "naive.db")
        print("\n| write path | events/s |\n|---|---:|")
        print(f"| Store.add, batches of 5,000 (price + insert + rollups + tags) | {store_rate:,.0f} |")
        print(f"| naive: connect + INSERT + COMMIT per event ({args.baseline_events:,} events) | {naive_rate:,.0f} |")
        print(f"| speed-up | {store_rate / naive_rate:,.1f}× |")
        print(f"\n| query at {len(events):,} events | llmtray ms | naive GROUP BY ms |\n|---|---:|---:|")
        for name, ms, naive in bench_queries(Path(tmp) / "store.db"):
            print(f"| {name} | {ms:.1f} | {'' if naive is None else f'{naive:.1f}'} |")


if __name__ == "__main__":
    main()
