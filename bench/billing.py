"""The provider's bill: what a sync round and a reconciliation cost, beside their floors.

Prints, in one run:
  (a) `reconcile` of 31 UTC days × provider × model × project on demo traffic (default 90 days
      of 1 500 calls/day), observed sums from the rollups — against the naive way: the same
      groups summed straight from the event table (what reconciling costs without rollups);
  (b) a 180-day OpenAI costs backfill from the loopback stub (one page, 200 line items a day):
      fetch + exact Decimal parse + normalise + one-transaction write — against the floor:
      the same GETs and a plain `json.loads` of the same bytes (HTTP and JSON alone).

    python bench/billing.py [--per-day 1500] [--items 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtray import demo  # noqa: E402
from llmtray.billing import ledger  # noqa: E402
from llmtray.billing.reconcile import reconcile  # noqa: E402
from llmtray.billing.rows import COST, BilledRow  # noqa: E402
from llmtray.billing.sources import utc_today  # noqa: E402
from llmtray.billing.sync import sync_source  # noqa: E402
from llmtray.config import Config  # noqa: E402
from llmtray.core.queries import Filters, Queries  # noqa: E402
from llmtray.core.store import Store  # noqa: E402
from tests.billing.stub import OPENAI_KEY, BillingStub, openai_cost  # noqa: E402

NAIVE_SQL = ("SELECT e.ts / 86400000000 AS day, provider, model, status, project, sum(requests), sum(input_tokens),"
             " sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(coalesce(cost_nanos, 0))"
             " FROM event e WHERE e.ts >= ? AND e.ts < ? AND provider IN ('openai', 'anthropic', 'openrouter')"
             " GROUP BY 1, 2, 3, 4, 5")


def bill_every_model_day(db: Path, queries: Queries, first, end) -> int:  # noqa: ANN001
    """A bill that matches what was observed, row for row, as a sync would write it."""
    rows = [BilledRow(day, COST, model=model, item=f"{model}, input", amount_nanos=t.cost_nanos)
            for day, (provider, model), t in queries.per_utc_day(Filters(provider=("openai",)), ("provider", "model"))
            if first <= day < end]
    conn = ledger.open_ledger(db)
    try:
        ledger.write_window(conn, "openai", [first + timedelta(days=i) for i in range((end - first).days)], set(), [],
                            rows)
    finally:
        conn.close()
    return len(rows)


def timed(fn, repeat: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-day", type=int, default=1500)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "llmtray.db"
        store = Store.open(db)
        n = demo.fill(store, days=90, per_day=args.per_day, now=datetime.now(UTC))
        queries = Queries(store.conn)
        today = utc_today()
        first, end = today - timedelta(days=30), today + timedelta(days=1)
        billed = bill_every_model_day(db, queries, first, end)
        conn = ledger.open_ledger(db)
        lines = len(reconcile(conn, queries, first, end).lines)
        ours = timed(lambda: reconcile(conn, queries, first, end), 10)
        span = (int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1e6),
                int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() * 1e6))
        naive = timed(lambda: store.conn.execute(NAIVE_SQL, span).fetchall(), 3)
        conn.close()
        print(f"(a) reconcile 31 UTC days ({n} demo events, {billed} billed rows, {lines} lines): "
              f"{ours * 1e3:.1f} ms | naive event-table scan alone {naive * 1e3:.1f} ms "
              f"({naive / ours:.1f}× ours)")
        store.close()

        with BillingStub() as stub:
            days = [today - timedelta(days=i) for i in range(180)]
            for day in days:
                stub.data.openai_costs[day] = [
                    openai_cost(f"0.{i:04d}12345678901234567890123456789012345", f"gpt-{i}-2024-08-06, input")
                    for i in range(args.items)]
            os.environ["LLMTRAY_OPENAI_ADMIN_KEY"] = OPENAI_KEY
            config = Config(billing_urls={"openai": stub.url})
            sync_db = Path(tmp) / "sync.db"
            since = today - timedelta(days=179)
            t = time.perf_counter()
            result = sync_source(sync_db, config, "openai", since=since)
            ours = time.perf_counter() - t
            paths = [(p, q) for p, q, _ in stub.requests]
            with httpx.Client(timeout=60) as client:
                t = time.perf_counter()
                for path, query in paths:
                    json.loads(client.get(stub.url + path, params=[(k, v) for k, vs in query.items() for v in vs],
                                          headers={"Authorization": f"Bearer {OPENAI_KEY}"}).text)
                floor = time.perf_counter() - t
        rows = result.rows
        print(f"(b) 180-day costs backfill, {rows} rows from {len(paths)} pages: {ours:.2f} s "
              f"({rows / ours:,.0f} rows/s, exact) | floor: same GETs + json.loads {floor:.2f} s "
              f"({rows / floor:,.0f} rows/s)")


if __name__ == "__main__":
    main()
