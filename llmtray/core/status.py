"""One glance at spend: the body of `GET /v1/summary` and `llmtray status --json`.

Kept in one function so the API, the CLI and the tray tooltip can never disagree. Budgets add
their entries through `budget_entries` (by default every stored budget, `core.budgets`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from llmtray.core import budgets
from llmtray.core.blocks import active_entries
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import Queries

BudgetEntries = Callable[[Queries, datetime], list[dict[str, Any]]]


def summary(queries: Queries, now: datetime | None = None, budget_entries: BudgetEntries | None = None,
            week_start: int = 0) -> dict[str, Any]:
    """Today, this month, projected month end (money as decimal strings), budgets and the active
    blocks (DESIGN §15)."""
    now = now or datetime.now(UTC)
    today, _, _ = queries.spend_in_period("day", now=now, week_start=week_start)
    month, _, _ = queries.spend_in_period("month", now=now, week_start=week_start)
    entries = budget_entries or partial(budgets.budget_entries, week_start=week_start)
    return {
        "today_usd": nanos_to_str(today.cost_nanos),
        "month_usd": nanos_to_str(month.cost_nanos),
        "projected_month_usd": nanos_to_str(queries.projection("month", now=now, week_start=week_start)),
        "today_requests": today.requests,
        "unpriced_requests_month": month.unpriced,
        "budgets": entries(queries, now),
        "blocks": active_entries(queries.conn, now),
    }
