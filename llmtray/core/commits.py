"""What the writer tells its listeners after each commit (budget monitor, GUI bridge, tray)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Committed:
    """One durable commit: how many events landed and the time span they cover.

    `first_ts_us`/`last_ts_us` (UTC µs) let the budget monitor tell live traffic from backfill
    (imports, spool redelivery) without reading the rows back.
    """

    accepted: int
    duplicates: int
    first_ts_us: int | None
    last_ts_us: int | None
    sources: frozenset[str] = frozenset()
