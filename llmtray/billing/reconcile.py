"""Observed vs billed per UTC day × provider × model (× project where both sides know it), each
gap given its most likely cause.

Quantities are compared first (requests, input with its cache parts, output), then dollars. A
settled day matches when |Δ| ≤ max($0.01, 2 % of billed). A gap beyond that gets the first cause
of this fixed list whose test holds (BILLING.md §7.7), so the same data always gets the same
label and the label says what was checked:

1. provisional day — the provider's data for the day is not settled yet;
2. boundary shift — the next or previous day has the opposite gap, the two net out, and so do
   their input tokens (calls moved across UTC midnight);
3. untracked keys or projects — the bill counts more requests (or, without request counts,
   more of every kind of token) than llmtray saw, and llmtray saw no failed calls;
4. tool or storage lines — the gap is the billed tool/storage lines (web search, code execution);
5. tier or batch — the bill has batch/flex/priority rows for the model;
6. long context — the bill has long-context (200k–1M) rows for the model;
7. cache category — input totals agree but the cache read/write split does not;
8. failed calls — llmtray saw failed calls (billed without usage reaching llmtray);
9. price data — every quantity agrees, so the dollars differ by price;
10. unexplained.

Billed and observed are never added together: the totals give each side on its own, and a
"best" figure that takes the bill for settled days and the observation for the others, with the
last billed day per source shown as the seam.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import Any

from llmtray.billing import ledger
from llmtray.billing.rows import BYOK, COST, TOOL, BilledRow
from llmtray.billing.sources import SOURCES
from llmtray.core.money import nanos_to_str
from llmtray.core.periods import midnight_us  # with UTC: bills are bucketed by UTC day
from llmtray.core.queries import Filters, Queries, Totals

MIN_TOLERANCE_NANOS = 10_000_000  # $0.01
TOLERANCE_PCT = Decimal(2)
LONG_INPUT = 200_000  # input tokens per request beyond which long-context rates apply
STATUSES = ("match", "drift", "provisional", "billed_only", "observed_only")
CAUSES = ("provisional day", "boundary shift", "untracked keys or projects", "tool or storage lines",
          "tier or batch", "long context", "cache category", "failed calls", "price data", "unexplained")
TOOLS_MODEL = "(tools and storage)"
_TOKEN_KINDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def canonical(model: str) -> str:
    """The model a request names and the snapshot a bill names, as one key:
    'gpt-4o-mini-2024-07-18' and 'gpt-4o-mini' meet, as do 'claude-opus-4-20250514' and
    'claude-opus-4'."""
    return _SNAPSHOT.sub("", model.strip().lower())


def within(billed: int, observed: int) -> bool:
    tolerance = max(MIN_TOLERANCE_NANOS, abs(billed) * TOLERANCE_PCT / 100)
    return abs(billed - observed) <= tolerance


def _close(a: int, b: int) -> bool:
    """Token counts agree within 2 % (rounding, not a different kind of traffic)."""
    return abs(a - b) <= max(a, b) * TOLERANCE_PCT / 100


@dataclass
class BilledSide:
    nanos: int = 0
    tool_nanos: int = 0
    byok_nanos: int = 0
    has_cost: bool = False
    has_usage: bool = False
    requests: int | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    tiers: set[str] = field(default_factory=set)
    long_context: bool = False
    derived: bool = False  # per-model dollars parsed from line items (OpenAI)
    models: set[str] = field(default_factory=set)

    def add(self, row: BilledRow, derived: bool) -> None:
        self.models.add(row.model)
        if row.tier:
            self.tiers.add(row.tier)
        self.long_context |= row.context == "200k-1M"
        if row.kind == COST:
            if row.category == BYOK:
                self.byok_nanos += row.amount_nanos or 0
                return
            self.has_cost = True
            self.derived |= derived
            self.nanos += row.amount_nanos or 0
            if row.category == TOOL:
                self.tool_nanos += row.amount_nanos or 0
        if row.requests is not None or row.input_tokens or row.output_tokens:
            self.has_usage = True
            if row.requests is not None:
                self.requests = (self.requests or 0) + row.requests
            self.input_tokens += row.input_tokens
            self.cache_read_tokens += row.cache_read_tokens
            self.cache_write_tokens += row.cache_write_tokens
            self.output_tokens += row.output_tokens


@dataclass
class Line:
    day: date
    source: str
    provider: str
    model: str
    project: str  # '' unless both the bill and the events know this project
    observed: Totals | None
    billed: BilledSide | None
    failed: int  # observed requests with status other than ok
    day_status: str | None  # provisional / settled / None (no bill synced for the day)
    as_of: float | None
    status: str = ""
    cause: str = ""

    @property
    def observed_nanos(self) -> int:
        return self.observed.cost_nanos if self.observed else 0

    @property
    def billed_nanos(self) -> int:
        return self.billed.nanos if self.billed else 0

    @property
    def delta_nanos(self) -> int:
        return self.billed_nanos - self.observed_nanos

    def as_json(self) -> dict[str, Any]:
        billed = self.billed_nanos if self.billed and self.billed.has_cost else None
        pct = None
        if billed:
            pct = format((Decimal(self.delta_nanos) * 100 / billed).quantize(Decimal("0.1")), "f")
        return {"day": self.day.isoformat(), "provider": self.provider, "model": self.model,
                "project": self.project or None, "source": self.source,
                "observed_usd": nanos_to_str(self.observed_nanos if self.observed else None) or "0",
                "billed_usd": nanos_to_str(billed) if billed is not None else None,
                "delta_usd": nanos_to_str(self.delta_nanos) if billed is not None else None,
                "delta_pct": pct, "status": self.status, "cause": self.cause or None,
                "derived": bool(self.billed and self.billed.derived),
                "observed_requests": self.observed.requests if self.observed else 0,
                "billed_requests": self.billed.requests if self.billed else None,
                "failed_requests": self.failed, "quantities": self.quantities(), "notes": self.notes()}

    def quantities(self) -> dict[str, dict[str, int] | None]:
        """Tokens by kind on each side (the bill's only where its source reports usage)."""
        seen = self.observed or Totals()
        billed = self.billed if self.billed and self.billed.has_usage else None
        return {"observed": {k: getattr(seen, k) for k in _TOKEN_KINDS},
                "billed": {k: getattr(billed, k) for k in _TOKEN_KINDS} if billed else None}

    def notes(self) -> list[str]:
        """The documented missing terms that go with this line's variance (BILLING §7.7)."""
        out = []
        if self.billed is None:
            return out
        if self.source == "anthropic" and self.billed.tiers & {"priority", "priority_on_demand"}:
            out.append("Anthropic Priority Tier usage has no cost rows: its dollars are not in the bill")
        if self.billed.byok_nanos:
            out.append(f"BYOK ${nanos_to_str(self.billed.byok_nanos)} is on the upstream provider's bill, "
                       "not counted here")
        if self.billed.derived:
            out.append("per-model dollars derived from OpenAI line items")
        return out


@dataclass
class Reconciliation:
    lines: list[Line]
    first: date
    end: date
    billed_through: dict[str, str | None]  # the seam: the last settled billed day per source

    def totals(self) -> dict[str, Any]:
        observed = sum(line.observed_nanos for line in self.lines)
        billed = sum(line.billed_nanos for line in self.lines)
        best = sum(line.billed_nanos if line.day_status == "settled" else line.observed_nanos for line in self.lines)
        return {"observed_usd": nanos_to_str(observed), "billed_usd": nanos_to_str(billed),
                "delta_usd": nanos_to_str(billed - observed), "best_usd": nanos_to_str(best),
                "billed_through": self.billed_through}

    def as_json(self) -> dict[str, Any]:
        return {"rows": [line.as_json() for line in self.lines], "totals": self.totals()}

    def drifts(self) -> list[Line]:
        """Settled lines beyond the tolerance: drift, and billed- or observed-only lines."""
        return [line for line in self.lines
                if line.day_status == "settled" and not within(line.billed_nanos, line.observed_nanos)]


def reconcile(conn: sqlite3.Connection, queries: Queries, first: date, end: date,
              sources: list[str] | None = None) -> Reconciliation:
    """Every (UTC day, provider, model) of `first` … `end` (exclusive) seen on either side, for
    the chosen sources (default all three)."""
    chosen = list(SOURCES) if sources is None else list(sources)
    if not chosen:
        return Reconciliation([], first, end, {})
    provider_source = {SOURCES[s].provider: s for s in chosen}
    rows = ledger.billed_rows(conn, first, end, chosen)
    f = Filters(start_us=midnight_us(first, UTC), end_us=midnight_us(end, UTC), provider=tuple(provider_source))
    seen = queries.per_utc_day(f, ("provider", "model", "status", "project"))
    # a project is a dimension only where both sides know it: the bill's project/workspace id
    # that llmtray's events also carry as `project`; every other project is matched as one
    shared = ({(source, row.project) for source, row in rows if row.project}
              & {(provider_source[p], project) for _, (p, _, _, project), _ in seen if project})
    billed: dict[tuple[date, str, str, str], BilledSide] = defaultdict(BilledSide)
    for source, row in rows:
        model = canonical(row.model) if row.model else TOOLS_MODEL
        project = row.project if (source, row.project) in shared else ""
        billed[(row.day, source, model, project)].add(row, derived=source == "openai" and row.kind == COST)
    observed: dict[tuple[date, str, str, str], Totals] = defaultdict(Totals)
    failed: dict[tuple[date, str, str, str], int] = defaultdict(int)
    for day, (provider, model, status, project), totals in seen:
        source = provider_source[provider]
        key = (day, source, canonical(model or ""), project if (source, project) in shared else "")
        observed[key].add(totals)
        if status != "ok":
            failed[key] += totals.requests
    days = ledger.day_status(conn, first, end)
    lines = []
    for key in sorted(set(billed) | set(observed)):
        day, source, model, project = key
        status, as_of = days.get((source, day), (None, None))
        side = billed.get(key)
        shown = sorted(side.models)[0] if side and side.models and model != TOOLS_MODEL else model
        lines.append(Line(day, source, SOURCES[source].provider, shown or model, project, observed.get(key), side,
                          failed.get(key, 0), status, as_of))
    _classify(lines)
    through = {}
    for source in chosen:
        settled = [d for (s, d), (st, _) in days.items() if s == source and st == "settled"]
        through[source] = max(settled).isoformat() if settled else None
    return Reconciliation(lines, first, end, through)


def _classify(lines: list[Line]) -> None:
    by_key = {(line.day, line.source, canonical(line.model), line.project): line for line in lines}
    for line in lines:
        gap = not within(line.billed_nanos, line.observed_nanos)
        if line.day_status is None:
            line.status, line.cause = "observed_only", "no bill synced for this day"
            continue
        if line.day_status == "provisional":
            line.status, line.cause = "provisional", "provisional day" if gap else ""
            continue
        if line.billed is None:
            line.status = "observed_only"
        elif line.observed is None:
            line.status = "billed_only"
        else:
            line.status = "drift" if gap else "match"
        if gap:
            line.cause = _cause(line, by_key)


def _cause(line: Line, by_key: dict[tuple[date, str, str, str], Line]) -> str:
    """The first cause of the fixed list whose test holds (see the module docstring)."""
    delta = line.delta_nanos
    for step in (-1, 1):
        other = by_key.get((line.day + timedelta(days=step), line.source, canonical(line.model), line.project))
        if (other is not None and other.day_status == "settled" and (other.delta_nanos > 0) != (delta > 0)
                and not within(other.billed_nanos, other.observed_nanos)
                and within(line.billed_nanos + other.billed_nanos, line.observed_nanos + other.observed_nanos)
                and _calls_moved(line, other)):
            return "boundary shift"
    billed, seen = line.billed, line.observed or Totals()
    if billed is None:
        return "unexplained"
    if delta > 0 and line.failed == 0 and billed.has_usage and _more_traffic(billed, seen):
        return "untracked keys or projects"
    if billed.tool_nanos and within(delta, billed.tool_nanos):
        return "tool or storage lines"
    if billed.tiers:
        return "tier or batch"
    if billed.long_context or (seen.requests and seen.input_tokens / seen.requests > LONG_INPUT):
        return "long context"
    if billed.has_usage and _close(billed.input_tokens, seen.input_tokens) and not (
            _close(billed.cache_read_tokens, seen.cache_read_tokens)
            and _close(billed.cache_write_tokens, seen.cache_write_tokens)):
        return "cache category"
    if line.failed and delta > 0:
        return "failed calls"
    if billed.has_usage and _same_quantities(billed, seen):
        return "price data"
    if seen.unpriced:
        return "price data"
    return "unexplained"


def _calls_moved(line: Line, other: Line) -> bool:
    """Calls that crossed midnight move their tokens too: this day's input differs and the
    pair's agrees (without billed quantities, the dollars alone must say it)."""
    if not (line.billed and other.billed and line.billed.has_usage and other.billed.has_usage):
        return True
    seen = [x.observed.input_tokens if x.observed else 0 for x in (line, other)]
    return (not _close(line.billed.input_tokens, seen[0])
            and _close(line.billed.input_tokens + other.billed.input_tokens, sum(seen)))


def _more_traffic(billed: BilledSide, seen: Totals) -> bool:
    """More requests on the bill — or, for a bill without request counts, more of both input
    and output — than llmtray observed."""
    if billed.requests is not None:
        return billed.requests > seen.requests
    return (billed.input_tokens > seen.input_tokens and billed.output_tokens > seen.output_tokens
            and not _close(billed.input_tokens, seen.input_tokens)
            and not _close(billed.output_tokens, seen.output_tokens))


def _same_quantities(billed: BilledSide, seen: Totals) -> bool:
    return ((billed.requests is None or billed.requests == seen.requests)
            and _close(billed.input_tokens, seen.input_tokens) and _close(billed.output_tokens, seen.output_tokens)
            and _close(billed.cache_read_tokens, seen.cache_read_tokens)
            and _close(billed.cache_write_tokens, seen.cache_write_tokens))
