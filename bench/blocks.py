"""Blocks, guards and model aliases on a realistic database: what they add per call and per pass.

Prints, in one run, on 90 days of demo traffic (`llmtray.demo`, default 1 500 calls/day):
  (a) the proxy's block check per call (`BlockWatch.refusal`: the active blocks re-read at most
      every 0.25 s) with 0, 10 and 100 active blocks, against the naive check that asks the
      database on every call (`BlockBook.refusal`) and the ceiling of not checking at all;
  (b) one guard pass after a commit (`GuardWatch.check`, 5 guards, 100 new calls) — what each
      coalesced commit costs the monitor thread — against the naive pass that re-reads every
      call in each guard's scope;
  (c) a model filter by alias (`gpt-4o-mini`, matching its dated snapshots) against the exact
      snapshot name, on the dashboard's 30-day and 90-day totals.

    python bench/blocks.py [--per-day 1500] [--calls 20000]
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from llmtray.core.blocks import BlockBook, BlockWatch
from llmtray.core.budgets import Scope
from llmtray.core.events import UsageEvent
from llmtray.core.guards import Guard, GuardBook, GuardWatch
from llmtray.core.queries import Filters, Queries, _raw_clauses
from llmtray.core.store import to_us

from demo_db import demo_store, options  # bench/ is the script's folder

TZ = ZoneInfo("Europe/Berlin")
CALL = {"provider": "anthropic", "model": "claude-sonnet-4-20250514", "feature": "chat-assistant",
        "project": "webapp", "tags": {"plan": "pro"}}
GUARDS = (
    Guard("big call", Scope(feature="chat-assistant"), max_request_nanos=5 * 10**9),
    Guard("big agent call", Scope(feature="agent"), max_request_nanos=5 * 10**9),
    Guard("pro average", Scope(tags=(("plan", "pro"),)), max_avg_nanos=10**9, window=20),
    Guard("mini average", Scope(model="gpt-4o-mini"), max_avg_nanos=10**9, window=50),
    Guard("all average", Scope(), max_avg_nanos=10**9, window=100),
)


def per_call(fn: Callable[[], object], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def naive_guard_pass(conn: sqlite3.Connection) -> None:
    """Every call in each guard's scope read again, on every pass."""
    for g in GUARDS:
        clauses, args = _raw_clauses(g.scope.filters())
        costs = [c or 0 for (c,) in conn.execute(f"SELECT e.cost_nanos FROM event e WHERE {' AND '.join(clauses)}"
                                                 " ORDER BY e.ts DESC", args)]
        if g.max_request_nanos is not None:
            any(c > g.max_request_nanos for c in costs)
        else:
            sum(costs[: g.window])


def main() -> None:
    args = options()
    now = datetime.now(UTC)
    with demo_store(args.per_day, now, TZ) as (path, store):
        book = BlockBook(store.conn)
        ceiling = per_call(lambda: None, args.calls)
        for count in (0, 10, 100):
            while len(book.active()) < count:
                book.add(Scope(feature=f"blocked-{len(book.active())}"), "bench")
            watch = BlockWatch(lambda: sqlite3.connect(path))
            watched = per_call(lambda: watch.refusal(CALL), args.calls)  # noqa: B023 - used at once
            naive = per_call(lambda: book.refusal(CALL), max(args.calls // 20, 200))
            watch.close()
            print(f"(a) block check per call, {count:>3} active blocks: {watched * 1e6:.1f} µs | naive "
                  f"{naive * 1e6:.0f} µs ({naive / watched:.0f}× slower) | ceiling (no check) {ceiling * 1e6:.2f} µs")
        book.lift_all()

        guards = GuardBook(store.conn)
        for g in GUARDS:
            guards.add(g)
        watch_guards, passes, spent = GuardWatch(), 20, 0.0
        watch_guards.check(store.conn, now)
        for i in range(passes):
            at = now + timedelta(seconds=i)
            store.add([UsageEvent(provider="openai", model="gpt-4o-mini-2024-07-18", ts=at, feature="chat-assistant",
                                  input_tokens=1000, tags={"plan": "pro"}) for _ in range(100)], "proxy")
            t = time.perf_counter()
            assert watch_guards.check(store.conn, at) == []
            spent += time.perf_counter() - t
        naive_pass = per_call(lambda: naive_guard_pass(store.conn), 3)
        print(f"(b) guard pass (5 guards, 100 new calls): {spent / passes * 1e3:.2f} ms | naive "
              f"{naive_pass * 1e3:.1f} ms ({naive_pass / (spent / passes):.0f}× slower)")

        queries = Queries(store.conn, TZ)
        for days in (30, 90):
            start = to_us(now - timedelta(days=days)) + 7 * 60 * 1_000_000  # a ragged edge: rollups and events
            alias = Filters(start_us=start, model=("gpt-4o-mini",))
            exact = Filters(start_us=start, model=("gpt-4o-mini-2024-07-18",))
            assert queries.totals(alias).cost_nanos == queries.totals(exact).cost_nanos
            by_alias = per_call(lambda: queries.totals(alias), 20)  # noqa: B023 - used at once
            by_name = per_call(lambda: queries.totals(exact), 20)  # noqa: B023
            print(f"(c) {days}-day total filtered by model: alias {by_alias * 1e3:.2f} ms | exact snapshot name "
                  f"{by_name * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
