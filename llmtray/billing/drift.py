"""The drift alert: once per UTC day and source, when a settled day's bill differs from what
llmtray observed beyond the tolerance. It goes to the alert history (the Alerts tab),
then `BillingScheduler` hands it to the budget monitor's `deliver` (notifications, webhook);
`billing_alert` remembers which (source, day) pairs were told, so a re-sync never repeats one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.billing import ledger
from llmtray.billing.reconcile import Line, reconcile
from llmtray.billing.sources import utc_today
from llmtray.core.alerts import Alert, AlertLog
from llmtray.core.db import open_db
from llmtray.core.money import format_usd
from llmtray.core.queries import Queries
from llmtray.core.store import to_us

LOOKBACK_DAYS = 31


def drift_alerts(db_path: Path, source: str, now: float | None = None) -> list[Alert]:
    """Record an alert for each settled (source, day) with drift not alerted before; returns them."""
    now = time.time() if now is None else now
    today = utc_today(now)
    conn = ledger.open_ledger(db_path)
    try:
        result = reconcile(conn, Queries(conn), today - timedelta(days=LOOKBACK_DAYS), today + timedelta(days=1),
                           [source])
        by_day: dict[object, list[Line]] = {}
        for line in result.drifts():
            by_day.setdefault(line.day, []).append(line)
        fresh = [(day, lines) for day, lines in sorted(by_day.items()) if ledger.claim_alert(conn, source, day, now)]
    finally:
        conn.close()
    if not fresh:
        return []
    db = open_db(db_path)
    try:
        log = AlertLog(db)
        ts = to_us(datetime.fromtimestamp(now, UTC))
        return [log.record(_alert(source, day, lines, ts), snoozed=False) for day, lines in fresh]
    finally:
        db.close()


def _alert(source: str, day: object, lines: list[Line], ts_us: int) -> Alert:
    billed = sum(line.billed_nanos for line in lines)
    observed = sum(line.observed_nanos for line in lines)
    worst = max(lines, key=lambda line: abs(line.delta_nanos))
    return Alert(kind="bill_drift", severity="warning",
                 title=f"{source} bill for {day} differs from what llmtray saw",
                 body=f"billed {format_usd(billed)}, observed {format_usd(observed)} on {len(lines)} model(s); "
                      f"largest: {worst.model} ({format_usd(worst.delta_nanos)}, {worst.cause}). "
                      "See the Bill tab or `llmtray reconcile`.", ts_us=ts_us)
