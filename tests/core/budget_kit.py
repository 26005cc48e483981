"""Shared pieces of the budget, alert and anomaly tests: events with exact reported costs,
stores on real SQLite files that share one (slow to build) Pricer, and a recording sink."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from llmtray.core.alerts import Alert, AlertSink
from llmtray.core.commits import Committed
from llmtray.core.db import open_db
from llmtray.core.events import UsageEvent
from llmtray.core.pricing import Pricer
from llmtray.core.store import Store, to_us


@cache
def pricer() -> Pricer:
    return Pricer()


def open_store(path: Path) -> Store:
    return Store(open_db(path), pricer())


def event(ts: datetime, usd: str | Decimal | int, **attribution: Any) -> UsageEvent:
    """A call whose provider-reported cost is `usd`, so the stored cost is exactly that."""
    attribution.setdefault("provider", "openai")
    attribution.setdefault("model", "gpt-4o-2024-08-06")
    return UsageEvent(ts=ts, cost_usd=Decimal(str(usd)), **attribution)


def add(store: Store, events: list[UsageEvent], source: str = "hook") -> Committed:
    """Store a batch and return the writer's notice for it, as the ingest writer would."""
    result = store.add(events, source)
    ts = [to_us(e.ts) for e in events]
    return Committed(result.accepted, result.duplicates, min(ts), max(ts), frozenset({source}))


def utc(text: str) -> datetime:
    """`2026-03-18 15:00` (UTC) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


class RecordingSink(AlertSink):
    """Keeps what it was sent; `wait_for(n)` blocks until n alerts arrived (no sleeps)."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self._cond = threading.Condition()

    def send(self, alert: Alert) -> None:
        with self._cond:
            self.sent.append(alert)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.sent) >= n, timeout)
