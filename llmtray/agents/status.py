"""What `llmtray agents` and Settings' "Coding agents" section show, per agent: on or off, how
billed, log folders found, files tracked, calls stored, lines skipped (why, and where first), the
newest call, and for subscription usage its API-equivalent value (never part of spend)."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from llmtray.agents import ledger
from llmtray.agents.registry import AGENTS
from llmtray.agents.settings import AgentsConfig
from llmtray.core.db import BUCKET_US
from llmtray.core.periods import period_bounds_us, today


def api_equivalent(conn: sqlite3.Connection, sources: tuple[str, ...] = (), start_us: int | None = None,
                   end_us: int | None = None) -> Decimal:
    """The summed `api_equivalent_usd` tags of subscription calls (of `sources`, in [start, end)),
    exactly: what those calls would have cost at API prices. Never part of spend."""
    where, params = ["t.key = 'api_equivalent_usd'", "t.value != 'unpriced'"], []
    if sources:
        where.append(f"e.source IN ({', '.join('?' * len(sources))})")
        params += sources
    for column, op, bound in (("ts", ">=", start_us), ("ts", "<", end_us)):
        if bound is not None:
            where.append(f"e.{column} {op} ?")
            params.append(bound)
    rows = conn.execute(f"SELECT t.value FROM event_tag t JOIN event e ON e.id = t.event WHERE {' AND '.join(where)}",
                        params)
    return sum((Decimal(value) for (value,) in rows), Decimal(0))


def with_subscription_value(summary: dict[str, Any], queries: Any, now: datetime) -> dict[str, Any]:
    """The tray's summary plus `subscription_month_usd`: this month's API-equivalent value of
    calls on a flat plan, which the tray shows beside spend (never in it)."""
    start, end = period_bounds_us("month", today(queries.tz, now), queries.tz)
    return {**summary, "subscription_month_usd": format(api_equivalent(queries.conn, (), start, end), "f")}


def newest_event(conn: sqlite3.Connection, source: str) -> int | None:
    """The newest call's time (UTC µs): its 15-minute bucket from the rollup, then the events of
    that bucket only (a source with no events costs no scan of the event table)."""
    (bucket,) = conn.execute("SELECT max(bucket) FROM rollup WHERE source = ?", (source,)).fetchone()
    if bucket is None:
        return None
    return conn.execute("SELECT max(ts) FROM event WHERE ts >= ? AND source = ?",
                        (bucket * BUCKET_US, source)).fetchone()[0]


def status(conn: sqlite3.Connection, config: AgentsConfig, env: Any = os.environ,
           ledger_conn: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
    """Per agent: what `llmtray agents` shows (also Settings' agent sections); `ledger_conn`:
    where this machine's file states are, in team mode (`ledger.connect_local`)."""
    out = []
    for agent in AGENTS:
        skipped: dict[str, dict[str, Any]] = {}
        files = 0
        for path, reasons in (ledger_conn or conn).execute("SELECT path, skipped FROM agent_file WHERE source = ?",
                                                           (agent.source,)):
            files += 1
            for reason, (count, line) in (json.loads(reasons) if reasons else {}).items():
                entry = skipped.setdefault(reason, {"lines": 0, "first": f"{path}:{line}"})
                entry["lines"] += count
        newest = newest_event(conn, agent.source)
        settings = config.of(agent.source)
        out.append({
            "agent": agent.source,
            "enabled": config.active(agent.source),
            "billing": settings.billing,
            "roots": [str(r) for r in agent.roots(env)],
            "files": files,
            "events": ledger.stored_count(conn, agent.source),
            "skipped_lines": sum(s["lines"] for s in skipped.values()),
            "skipped": skipped,
            "api_equivalent_usd": format(api_equivalent(conn, (agent.source,)), "f"),
            "newest_event": None if newest is None else
            datetime.fromtimestamp(newest / 1e6, UTC).isoformat().replace("+00:00", "Z"),
        })
    return out


