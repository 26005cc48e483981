"""Everything the Bill tab shows, computed in one go on a worker thread (no Qt here): the
reconciliation of the last 31 UTC days, billed vs observed per day for the chart, the
month's billed total with its as-of time, and each source's sync state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from llmtray.billing import ledger
from llmtray.billing.errors import BillingError, NotConnected
from llmtray.billing.keys import SPECS, load_key
from llmtray.billing.reconcile import Reconciliation, reconcile
from llmtray.billing.sources import SOURCES, utc_today
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import Queries

DAYS = 31  # covers a whole month as well as the chart's range


@dataclass(frozen=True)
class DayPoint:
    day: date
    billed_nanos: int | None  # None: no settled or provisional bill for the day from any source
    observed_nanos: int
    settled: bool


@dataclass(frozen=True)
class BillView:
    result: Reconciliation
    points: list[DayPoint]
    month_billed_nanos: int
    month_observed_nanos: int
    as_of: float | None  # when the newest bill figure of the month was fetched
    states: dict[str, ledger.SourceState]
    connected: dict[str, bool]
    drift_days: int  # settled UTC days with a line beyond the tolerance


def load_view(db_path: Path, now: float | None = None) -> BillView:
    """The tab's data from the database at `db_path` (a connection of this thread's own). Which
    sources are connected comes from their last sync state, not the keyring: the tab reloads
    every minute, and a locked keyring must not prompt that often."""
    now = time.time() if now is None else now
    today = utc_today(now)
    first, end = today - timedelta(days=DAYS - 1), today + timedelta(days=1)
    conn = ledger.open_ledger(db_path)
    try:
        states = ledger.states(conn)
        keyed = {name for name, st in states.items() if st.state != "not_connected"}
        # only providers with a bill (or a key): observed spend elsewhere has nothing to meet
        billed = [s for s in SOURCES if s in keyed or ledger.coverage(conn, s).days]
        result = reconcile(conn, Queries(conn), first, end, billed)
        status = ledger.day_status(conn, first, end)
    finally:
        conn.close()
    points = []
    for i in range(DAYS):
        day = first + timedelta(days=i)
        lines = [line for line in result.lines if line.day == day]
        billed_days = [st for (s, d), (st, _) in status.items() if d == day]
        points.append(DayPoint(day, sum(line.billed_nanos for line in lines) if billed_days else None,
                               sum(line.observed_nanos for line in lines),
                               bool(billed_days) and all(st == "settled" for st in billed_days)))
    month = today.replace(day=1)
    in_month = [line for line in result.lines if line.day >= month]
    as_ofs = [as_of for (_, d), (_, as_of) in status.items() if d >= month]
    return BillView(result, points, sum(line.billed_nanos for line in in_month),
                    sum(line.observed_nanos for line in in_month), max(as_ofs) if as_ofs else None, states,
                    {s: s in keyed for s in SOURCES},
                    len({line.day for line in result.drifts()}))


def source_line(name: str, state: ledger.SourceState | None, connected: bool) -> str:
    """'openai: synced 04:30 UTC' / 'anthropic: needs an admin key …' for the tab and Settings."""
    if state is None:
        return f"{name}: {'connected, not synced yet' if connected else 'not connected'}"
    if state.state == "ok":
        return f"{name}: synced {time.strftime('%b %d %H:%M UTC', time.gmtime(state.last_success or 0))}"
    if state.state == "not_connected":
        return f"{name}: not connected ({SPECS[name].env} or Settings → Bills)"
    return f"{name}: {state.message.removeprefix(name + ': ')}"


def source_statuses(db_path: Path) -> list[dict[str, Any]]:
    """Per source: connected (a key of the right class), sync state, coverage and billed total —
    `llmtray billing status --json` and Settings → Bills. Asks the keyring: not on a GUI thread."""
    conn = ledger.open_ledger(db_path)
    try:
        states = ledger.states(conn)
        out = []
        for name in SOURCES:
            try:
                load_key(name)
                connected, key_problem = True, None
            except NotConnected:
                connected, key_problem = False, None
            except BillingError as exc:
                connected, key_problem = False, str(exc)
            st, cov = states.get(name), ledger.coverage(conn, name)
            out.append({"source": name, "connected": connected, "key_problem": key_problem,
                        "state": st.state if st else "never_synced", "message": st.message if st else None,
                        "last_sync": _iso(st.last_success) if st else None,
                        "last_attempt": _iso(st.last_attempt) if st else None,
                        "retry_at": _iso(st.retry_at) if st else None,
                        "days": cov.days, "first_day": cov.first, "last_day": cov.last,
                        "provisional_days": cov.provisional_days, "billed_usd": nanos_to_str(cov.billed_nanos)})
        return out
    finally:
        conn.close()


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if ts else None
