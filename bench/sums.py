"""The cost of overflow-proof sums (`Queries._summed`): plain `sum()` first; only when SQLite
raises "integer overflow" (totals past 2^63) is every aggregate taken again as its high and low
32 bits and joined in Python.

Worst case measured here: the ten SUMS over N raw rows (real views read mostly rollups, a few
hundred rows, and raw rows only at a range's ragged edges). The baseline is plain `sum()` on the
same rows in the same run: the common path must cost exactly that; the overflow path (a failed
plain pass, then the split one) is what a database holding such totals pays.

    python bench/sums.py [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtray.core.queries import _PLAIN_SUMS, SUMS, Queries  # noqa: E402

SQL = "SELECT {sums} FROM t"


def build(rows: int, cost_nanos: int) -> Queries:
    """`rows` events' sums in a table shaped like a rollup; each costs about `cost_nanos`."""
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE t ({', '.join(f'{s} INTEGER' for s in SUMS)})")
    rng = random.Random(7)
    conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(SUMS))})",
                     ((1, 1, rng.randrange(10**5), rng.randrange(10**4), 0, 0, 0, 0, cost_nanos - rng.randrange(9), 0)
                      for _ in range(rows)))
    return Queries(conn, None)


def best(fn, repeat: int) -> tuple[float, tuple]:
    times, row = [], ()
    for _ in range(repeat):
        t0 = time.perf_counter()
        row = fn()
        times.append(time.perf_counter() - t0)
    return min(times), row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.rows:,} rows, 10 sums, best of {args.repeat}")
    normal = build(args.rows, 10**7)  # $0.01 a call
    base_s, base = best(lambda: normal.conn.execute(SQL.replace("{sums}", _PLAIN_SUMS)).fetchone(), args.repeat)
    ours_s, ours = best(lambda: normal._summed(SQL, [], 0)[0], args.repeat)
    assert tuple(base) == tuple(ours)
    print(f"  plain sum(), baseline:            {base_s * 1000:8.1f} ms")
    print(f"  _summed, common path:             {ours_s * 1000:8.1f} ms  ({ours_s / base_s:.2f}×)")
    huge = build(args.rows, 10**16)  # $10M a call (the cap): past 2^63 from 923 rows on
    try:
        huge.conn.execute(SQL.replace("{sums}", _PLAIN_SUMS)).fetchone()
        raise AssertionError("expected the baseline to overflow")
    except sqlite3.OperationalError as exc:
        print(f"  plain sum() on $10M calls:        {exc}")
    wide_s, wide = best(lambda: huge._summed(SQL, [], 0)[0], args.repeat)
    assert wide[8] > 2**63
    print(f"  _summed past 2^63 (fallback):     {wide_s * 1000:8.1f} ms  ({wide_s / base_s:.2f}× the baseline), "
          f"cost sum {wide[8]:,} nanos")


if __name__ == "__main__":
    main()
