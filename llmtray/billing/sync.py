"""Pulling one source's bill into the ledger, and the thread that does it on `[billing] interval`.

A round: load and check the key, pick the window (a 30-day backfill the first time, then the
rolling ≈3 UTC days), fetch every page, then write the window in one transaction. Any failure
records the source's state and message and leaves the rows of earlier rounds untouched. A
rate limit's `retry_at` moves that source's next attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from llmtray.billing import ledger
from llmtray.billing.drift import drift_alerts
from llmtray.billing.errors import BillingError, NotConnected, RateLimited
from llmtray.billing.keys import check_class, load_key, save_key
from llmtray.billing.rows import BYOK, COST, merge
from llmtray.billing.sources import BACKFILL_DAYS, SOURCES, Source, Window, utc_today
from llmtray.billing.transport import Transport
from llmtray.config import Config
from llmtray.core.alerts import Alert
from llmtray.core.money import format_usd
from llmtray.core.periodic import Periodic

log = logging.getLogger(__name__)

FIRST_AFTER_S = 5.0  # after start-up, not in its rush


@dataclass(frozen=True)
class SyncResult:
    source: str
    window: Window
    rows: int
    billed_nanos: int  # what the window billed (BYOK excluded)


def transport_for(source: Source, config: Config, key: str,
                  sleep: Callable[[float], bool] | None = None) -> Transport:
    kwargs = {"sleep": sleep} if sleep is not None else {}
    return Transport(source.name, config.billing_urls.get(source.name, source.base_url), source.headers(key),
                     **kwargs)


def sync_source(db_path: Path, config: Config, name: str, *, since: date | None = None,
                now: float | None = None, sleep: Callable[[float], bool] | None = None) -> SyncResult:
    """One round for one source; raises the `BillingError` it recorded as the source's state."""
    source = SOURCES[name]
    conn = ledger.open_ledger(db_path)
    try:
        try:
            key = load_key(name)
            today = utc_today(now)
            state = ledger.states(conn).get(name)
            window = source.window(today, since, backfilled=state is not None and state.backfilled)
            with transport_for(source, config, key, sleep) as transport:
                pages, rows = source.fetch(transport, window)
        except BillingError as exc:
            retry_at = exc.retry_at if isinstance(exc, RateLimited) else None
            ledger.record_state(conn, name, exc.state, str(exc), retry_at, now)
            raise
        merged = merge(rows)
        provisional = {d for d in window.days if source.provisional(d, today)}
        ledger.write_window(conn, name, window.days, provisional, pages, merged, now,
                            backfill=len(window.days) >= min(BACKFILL_DAYS, source.max_backfill_days))
        billed = sum(r.amount_nanos or 0 for r in merged if r.kind == COST and r.category != BYOK)
        return SyncResult(name, window, len(merged), billed)
    finally:
        conn.close()


def connect(config: Config, name: str, key: str) -> None:
    """Check a key's class, then the key itself with one call, then keep it in the keyring.
    Raises the `BillingError` of the check, or the keyring's own error (the key works, but it
    could not be kept: the caller says to use the environment variable instead)."""
    source = SOURCES[name]
    key = check_class(name, key)
    with transport_for(source, config, key) as transport:
        source.check(transport, utc_today())
    save_key(name, key)


def disconnect(db_path: Path, name: str) -> None:
    """Remove the key and the sync state; the bill already synced stays in the ledger."""
    save_key(name, None)
    conn = ledger.open_ledger(db_path)
    try:
        ledger.forget(conn, name)
    finally:
        conn.close()


def connected_sources() -> list[str]:
    """The sources with a key (environment or keyring) of the right class."""
    out = []
    for name in SOURCES:
        try:
            load_key(name)
        except BillingError:
            continue
        out.append(name)
    return out


class BillingScheduler(Periodic):
    """A thread that syncs every connected source `first_after` s after start, then every
    `[billing] interval`; a source that was rate-limited waits for its `retry_at`. Failures are
    states in the ledger, logged, never raised: the bill is a nice-to-have next to recording."""

    def __init__(self, db_path: Path, config: Config, *, first_after: float = FIRST_AFTER_S):
        super().__init__("llmtray-billing", first_after)
        self._db, self._config = db_path, config
        self._alert_listeners: list[Callable[[Alert], None]] = []

    def interval(self) -> float:
        return self._config.billing_interval_s

    def add_alert_listener(self, listener: Callable[[Alert], None]) -> None:
        """Called (on this thread) with each drift alert once it is in the history: the budget
        monitor's `deliver`, so it reaches the notifications and the webhook."""
        self._alert_listeners.append(listener)

    def _sleep(self, seconds: float) -> bool:
        return not self._stopping.wait(seconds)

    def round(self, now: float | None = None) -> list[SyncResult]:
        """Sync every connected source whose rate limit is over, then raise drift alerts."""
        results = []
        try:
            conn = ledger.open_ledger(self._db)
            try:
                states = ledger.states(conn)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - a locked or damaged database: try next round
            log.error("billing sync skipped: %s", exc)
            return results
        for name in SOURCES:
            state = states.get(name)
            if state is not None and state.retry_at and state.retry_at > (now or time.time()):
                continue  # rate-limited: its Retry-After is not over yet
            try:
                results.append(sync_source(self._db, self._config, name, now=now, sleep=self._sleep))
            except NotConnected:
                continue
            except BillingError as exc:
                log.warning("billing sync: %s", exc)
                continue
            except Exception as exc:  # noqa: BLE001 - never take the app down for the bill
                log.exception("billing sync of %s failed: %s", name, exc)
                continue
            log.info("billing: %s synced %s … %s, billed %s", name, results[-1].window.first,
                     results[-1].window.days[-1], format_usd(results[-1].billed_nanos))
            try:
                for alert in drift_alerts(self._db, name, now):
                    for listener in self._alert_listeners:
                        listener(alert)
            except Exception as exc:  # noqa: BLE001
                log.exception("billing drift check of %s failed: %s", name, exc)
        return results
