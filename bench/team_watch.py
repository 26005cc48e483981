"""The team-mode dashboard's change poll (`gui.team_watch.CHANGE_MARK`) on a real PostgreSQL.

Every app on a team database runs it every 2 s, so it must cost the server next to nothing at
any size. Beside it, in the same run and on the same database:
  - `max(id) + count(*)`: the obvious mark (it misses reprices, and counts every row);
  - the ceiling: `count(*)` and `sum(cost_nanos)` over every event (catches all, reads all).
Printed: the median over `--repeat` polls, the server's share of one core at one poll per 2 s
per app, and how many apps one core could serve.

    python bench/team_watch.py [--events 1000000] [--machines 3] [--repeat 30] [--url postgresql://…]

Without --url a throwaway PostgreSQL is started (tests/postgres.py: Debian's postgresql
binaries) and filled with demo traffic from `--machines` machines, 90 days; with --url the
database given is filled only if it has fewer events than asked.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmtray import demo  # noqa: E402
from llmtray.core import dburl  # noqa: E402
from llmtray.core.db import connect  # noqa: E402
from llmtray.core.store import Store  # noqa: E402
from llmtray.gui.team_watch import CHANGE_MARK, POLL_MS  # noqa: E402

MARKS = {
    "change mark (used)": CHANGE_MARK,
    "max(id) + count(*)": "SELECT (SELECT coalesce(max(id), 0) FROM event_row), (SELECT count(*) FROM event_row)",
    "ceiling: count + sum(cost)": "SELECT count(*), coalesce(sum(cost_nanos), 0) FROM event_row",
}
DAYS = 90


def fill(url: str, events: int, machines: int) -> int:
    conn = connect(dburl.parse(url))
    try:
        have = conn.execute("SELECT count(*) FROM event_row").fetchone()[0]
    finally:
        conn.close()
    if have >= events:
        return have
    started = time.perf_counter()
    now = datetime.now(UTC)
    per_machine = (events - have) // machines
    for i in range(machines):
        store = Store.open(replace(dburl.parse(url), machine=f"machine-{i + 1}"))
        try:
            demo.fill(store, days=DAYS, per_day=max(per_machine // DAYS, 1), seed=100 + i, now=now)
        finally:
            store.close()
    conn = connect(dburl.parse(url))
    try:
        conn.execute("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load: a fair steady state
        have = conn.execute("SELECT count(*) FROM event_row").fetchone()[0]
    finally:
        conn.close()
    print(f"filled {have:,} events from {machines} machines in {time.perf_counter() - started:.0f} s")
    return have


def timed(url: str, sql: str, repeat: int) -> float:
    """Median seconds of one poll on a warm connection (as the watch keeps one)."""
    conn = connect(dburl.parse(url), read_only=True)
    try:
        conn.execute(sql).fetchone()  # warm: plan and pages
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            conn.execute(sql).fetchone()
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--machines", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--url", help="a PostgreSQL database to use (default: a throwaway server)")
    args = ap.parse_args()
    server = None
    url = args.url
    if url is None:
        from tests import postgres

        server = postgres.start()
        if isinstance(server, str):
            print(f"no PostgreSQL: {server}", file=sys.stderr)
            return 2
        url = server.new_database()
    try:
        events = fill(url, args.events, args.machines)
        print(f"\n{events:,} events; one poll per {POLL_MS / 1000:g} s per app\n")
        print(f"{'mark':<28} {'median ms':>10} {'core % per app':>15} {'apps per core':>14}")
        for name, sql in MARKS.items():
            seconds = timed(url, sql, args.repeat)
            share = seconds / (POLL_MS / 1000)
            print(f"{name:<28} {seconds * 1000:>10.2f} {share * 100:>14.3f}% {1 / share:>14,.0f}")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
