"""What the budget and block benches share: their options and 90 days of demo traffic in a
temporary database (`llmtray.demo`), so their figures are measured on the same data."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, tzinfo
from pathlib import Path

from llmtray import demo
from llmtray.core.store import Store


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-day", type=int, default=1500, help="demo calls per day (90 days)")
    ap.add_argument("--calls", type=int, default=20_000, help="calls timed per per-call figure")
    return ap.parse_args()


@contextmanager
def demo_store(per_day: int, now: datetime, tz: tzinfo) -> Iterator[tuple[Path, Store]]:
    """A store filled with 90 days of demo traffic up to `now` (the count is printed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmtray.db"
        store = Store.open(path)
        t = time.perf_counter()
        n = demo.fill(store, days=90, per_day=per_day, now=now, tz=tz)
        print(f"{n} demo events in {time.perf_counter() - t:.1f} s")
        try:
            yield path, store
        finally:
            store.close()
