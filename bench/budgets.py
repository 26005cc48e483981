"""Budget costs on a realistic database: the per-request enforcement check and a monitor pass.

Prints, in one run, on 90 days of demo traffic (`llmtray.demo`, default 1 500 calls/day):
  (a) `exhausted_enforced_budget` per call with its cache (what the proxy pays per request)
      against the naive baseline: evaluating every enforced budget on every call;
  (b) one monitor pass (`Evaluator.check`: every budget's spend and projection, spike and
      runaway detection) — what each coalesced commit costs the monitor thread — against the
      naive pass that re-adds every period from the rollups;
  (c) the anomaly replay used by the false-positive test: checks per second.

    python bench/budgets.py [--per-day 1500] [--calls 20000]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from llmtray.config import Config
from llmtray.core.budgets import (
    Budget,
    BudgetBook,
    EnforcementCache,
    Scope,
    evaluate,
    exhausted_enforced_budget,
    load_budgets,
)
from llmtray.core.db import open_db
from llmtray.core.monitor import Evaluator
from llmtray.core.queries import Queries

from demo_db import demo_store, options  # bench/ is the script's folder

TZ = "Europe/Berlin"
BUDGETS = (
    Budget("all", 10**12, "month", enforce=True),
    Budget("chat", 5 * 10**9, "day", Scope(feature="chat-assistant"), enforce=True),
    Budget("pro plan", 50 * 10**9, "week", Scope(tags=(("plan", "pro"),)), enforce=True),
    Budget("devtools", 10**9, "day", Scope(project="devtools"), enforce=True),
    Budget("openai", 100 * 10**9, "month", Scope(provider="openai")),
)
CALL = {"provider": "anthropic", "model": "claude-sonnet-4-20250514", "feature": "chat-assistant",
        "project": "webapp", "tags": {"plan": "pro"}}


def naive_check(queries: Queries, now: datetime) -> Budget | None:
    """What a proxy would do without the cache: every enforced budget's spend, every call."""
    for b in load_budgets(queries.conn):
        if b.enforce and b.scope.matches(CALL) and evaluate(queries, b, now, project=False).spent_nanos >= b.limit_nanos:
            return b
    return None


def per_call(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def main() -> None:
    args = options()
    now = datetime.now(UTC)
    with demo_store(args.per_day, now, ZoneInfo(TZ)) as (path, store):
        print(f"{len(BUDGETS)} budgets ({sum(b.enforce for b in BUDGETS)} enforced, one scoped by tag)")
        book = BudgetBook(store.db)
        for b in BUDGETS:
            book.add(b)
        queries = Queries(store.conn, ZoneInfo(TZ))

        cached = per_call(lambda: exhausted_enforced_budget(queries, CALL, now), args.calls)
        naive_calls = max(args.calls // 100, 20)
        naive = per_call(lambda: naive_check(queries, now), naive_calls)
        cache = EnforcementCache(ttl_s=0)  # recomputed on every call: the cost of one refresh
        refresh = per_call(lambda: cache.exhausted(queries, CALL, now), naive_calls)
        print(f"(a) enforcement check per call: cached {cached * 1e6:.1f} µs | naive {naive * 1e3:.2f} ms "
              f"({naive / cached:.0f}× slower) | one cache refresh {refresh * 1e3:.2f} ms (at most every 2 s "
              "or per commit)")

        db = open_db(path)
        evaluator = Evaluator(db, Config(timezone=TZ))
        passes = 50
        t = time.perf_counter()
        for i in range(passes):
            evaluator.check(now + timedelta(seconds=i))
        per_pass = (time.perf_counter() - t) / passes
        t = time.perf_counter()
        for i in range(5):  # the naive pass: every period sum and projection window re-added
            for b in load_budgets(queries.conn):
                evaluate(queries, b, now + timedelta(seconds=i))
            evaluator.detectors.run(queries, int((now + timedelta(seconds=i)).timestamp() * 1e6))
        naive_pass = (time.perf_counter() - t) / 5
        print(f"(b) monitor pass (5 budgets + spike + runaway): {per_pass * 1e3:.1f} ms | naive {naive_pass * 1e3:.1f} ms "
              f"→ at most one per second under load: {per_pass * 100:.1f} % of one core (naive {naive_pass * 100:.0f} %)")

        t, checks, at = time.perf_counter(), 0, now - timedelta(days=7)
        while at < now:
            evaluator.detectors.run(evaluator.queries, int(at.timestamp() * 1e6))
            at += timedelta(minutes=5)
            checks += 1
        print(f"(c) anomaly replay: {checks / (time.perf_counter() - t):.0f} checks/s over 7 days of 5-minute steps")
        db.close()


if __name__ == "__main__":
    main()
