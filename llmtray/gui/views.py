"""What each dashboard view shows, computed from `core.queries` — no Qt, so it runs on any thread.

The dashboard asks for a `ViewRequest` (filters, range, breakdown) and gets named payloads back,
one per view, in the order the user needs them: the KPI strip and the live view first (they must
move within a second of a commit), the heavier charts after. Chart widgets only ever see these
payloads; none of them runs a query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from llmtray.core import periods
from llmtray.core.blocks import Block, BlockBook
from llmtray.core.events import UsageEvent
from llmtray.core.model_names import alias_of
from llmtray.core.money import usd_to_nanos
from llmtray.core.pricing import Pricer
from llmtray.core.queries import DailySeries, Filters, LatencyStats, Queries, Totals
from llmtray.core.store import to_us

BudgetEntries = Callable[[Queries, datetime], list[dict[str, Any]]]
RANGES: dict[str, str] = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "month": "This month",
    "last_month": "Last month",
}
BREAKDOWNS = ("feature", "user", "project", "env", "provider", "source")
LIVE_MINUTES = 60
OPTIONS_RANGE = "90d"  # the longest range in RANGES
LATENCY_MODELS = 8  # the most-called models: more rows than this don't fit a readable chart
EVENTS_PAGE = 200
BLOCKS_SHOWN = 100  # the Blocks tab: active blocks and the most recent ended ones
# The by-model query behind the KPIs also yields the by-model and token charts for free, so
# they ride in the live lane rather than costing the chart lane the same query again.
LIVE_VIEWS = ("any_events", "kpis", "live", "events", "models", "tokens")
CHART_VIEWS = ("daily", "breakdown", "latency", "alerts", "blocks", "options", "subscription")
_SAVINGS_UNIT = 100_000  # tokens per price probe: below every tiered-price threshold (200k)


@dataclass(frozen=True)
class ViewRequest:
    """What the user is looking at; `filters` carries no time bounds (the range key does)."""

    filters: Filters = Filters()
    range_key: str = "30d"
    breakdown: str = "feature"
    views: tuple[str, ...] = LIVE_VIEWS + CHART_VIEWS


@dataclass(frozen=True)
class Window:
    """A range resolved against the clock: local days `first..last`, UTC µs `[start_us, end_us)`."""

    first: date
    last: date
    start_us: int
    end_us: int


def resolve_range(key: str, tz: tzinfo | None, now: datetime) -> Window:
    today = periods.today(tz, now)
    if key == "month":
        first, last = today.replace(day=1), today
    elif key == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        first = last.replace(day=1)
    elif key.endswith("d") and key[:-1].isdigit():
        first, last = today - timedelta(days=int(key[:-1]) - 1), today
    else:
        raise ValueError(f"unknown range {key!r}; expected one of {', '.join(RANGES)}")
    return Window(first, last, periods.midnight_us(first, tz), periods.midnight_us(last + timedelta(days=1), tz))


@dataclass(frozen=True)
class Kpis:
    """The strip at the top. Today/month/projection are calendar periods under the filters;
    the rest cover the selected range."""

    today: Totals
    month: Totals
    projected_nanos: int
    in_range: Totals
    range_label: str
    cache_savings_nanos: int | None
    budgets: list[dict[str, Any]] | None  # None: budgets are not available in this build


@dataclass(frozen=True)
class LiveWindow:
    """Per-minute spend over the last hour, ending at the minute after `now`."""

    start_us: int
    end_us: int
    minutes: list[tuple[int, int, int]]  # (minute start µs, cost nanos, requests)


@dataclass(frozen=True)
class ModelSpend:
    """Spend per model with what the by-model chart, the unpriced warning and cache savings need."""

    rows: list[tuple[str, str, Totals]]  # (provider, model, totals), most expensive first
    usage_missing: list[tuple[str, str, int]] = field(default_factory=list)  # part of `unpriced`: no usage reported

    @property
    def unpriced(self) -> list[tuple[str, str, int]]:
        """Requests without a price for their model (those without usage are named apart)."""
        missing = {(p, m): n for p, m, n in self.usage_missing}
        rows = ((p, m, t.unpriced - missing.get((p, m), 0)) for p, m, t in self.rows)
        return sorted((r for r in rows if r[2] > 0), key=lambda r: -r[2])

    def by_alias(self) -> list[tuple[str, str, Totals]]:
        """The rows with each dated snapshot counted under its alias (`model_names`), as the
        daily chart, filters and budgets see models; `rows` keeps them apart for pricing."""
        merged: dict[tuple[str, str], Totals] = {}
        for provider, model, totals in self.rows:
            merged.setdefault((provider, alias_of(model)), Totals()).add(totals)
        out = [(p, m, t) for (p, m), t in merged.items()]
        out.sort(key=lambda r: (-r[2].cost_nanos, -r[2].requests, r[0], r[1]))
        return out


@dataclass(frozen=True)
class BlockList:
    """The Blocks tab: recent blocks (newest first), calls refused per block id, and when."""

    blocks: list[Block]
    refused: dict[int, int]
    now_us: int

    @property
    def active(self) -> int:
        return sum(b.active_at(self.now_us) for b in self.blocks)


@dataclass(frozen=True)
class Breakdown:
    dimension: str
    rows: list[tuple[str, Totals]]


@dataclass(frozen=True)
class FilterOptions:
    providers: list[str]
    models: list[str]
    features: list[str]
    sources: list[str]
    tags: list[tuple[str, str]]
    tag_keys: list[str] = field(default_factory=list)


@dataclass
class ViewContext:
    """Everything a view function needs; built once per request on the worker thread."""

    queries: Queries
    request: ViewRequest
    now: datetime
    pricer: Pricer
    budget_entries: BudgetEntries | None = None
    alert_history: Callable[[int], list[Any]] | None = None  # newest alerts first, when alerts exist
    _window: Window | None = None
    _models: ModelSpend | None = None

    @property
    def window(self) -> Window:
        if self._window is None:
            self._window = resolve_range(self.request.range_key, self.queries.tz, self.now)
        return self._window

    @property
    def ranged(self) -> Filters:
        return self.request.filters.between(self.window.start_us, self.window.end_us)

    def model_spend(self) -> ModelSpend:
        """Shared by the KPIs (cache savings) and the by-model chart: one query, not two."""
        if self._models is None:
            self._models = ModelSpend(self.queries.by_provider_model(self.ranged),
                                      self.queries.usage_missing(self.ranged))
        return self._models


def kpis(ctx: ViewContext) -> Kpis:
    q, f = ctx.queries, ctx.request.filters
    today, _, _ = q.spend_in_period("day", f, ctx.now)
    month, projected = q.spend_and_projection("month", f, ctx.now)
    spend = ctx.model_spend()
    in_range = Totals()
    for _, _, t in spend.rows:
        in_range.add(t)
    budgets = ctx.budget_entries(q, ctx.now) if ctx.budget_entries else None
    return Kpis(today, month, projected, in_range, RANGES[ctx.request.range_key],
                cache_savings(spend.rows, ctx.pricer, ctx.now), budgets)


def cache_savings(rows: list[tuple[str, str, Totals]], pricer: Pricer, now: datetime) -> int | None:
    """What prompt caching saved against paying the full input price for the same tokens
    (cache writes cost extra at Anthropic, so they count against it). None when nothing was cached.

    Prices are linear below the tiered thresholds, so probing each model once with a fixed token
    count and scaling is exact up to nano-dollar rounding of the probe."""
    total, any_cache = 0, False
    for provider, model, t in rows:
        if not (t.cache_read_tokens or t.cache_write_tokens):
            continue
        any_cache = True
        base = UsageEvent(provider=provider, model=model, ts=now, input_tokens=_SAVINGS_UNIT)
        plain = pricer.price(base).cost_nanos
        if plain is None:
            continue  # unpriced model: no claim about savings
        read = pricer.price(replace(base, cache_read_tokens=_SAVINGS_UNIT)).cost_nanos or 0
        write = pricer.price(replace(base, cache_write_tokens=_SAVINGS_UNIT)).cost_nanos or 0
        write_1h = pricer.price(replace(base, cache_write_tokens=_SAVINGS_UNIT,
                                        cache_write_1h_tokens=_SAVINGS_UNIT)).cost_nanos or 0
        total += (t.cache_read_tokens * (plain - read)
                  + (t.cache_write_tokens - t.cache_write_1h_tokens) * (plain - write)
                  + t.cache_write_1h_tokens * (plain - write_1h)) // _SAVINGS_UNIT
    return total if any_cache else None


def live(ctx: ViewContext) -> LiveWindow:
    now_us = int(ctx.now.timestamp() * 1_000_000)
    end = now_us - now_us % 60_000_000 + 60_000_000
    start = end - LIVE_MINUTES * 60_000_000
    return LiveWindow(start, end, ctx.queries.per_minute(start, end, ctx.request.filters))


def events(ctx: ViewContext) -> list[dict[str, Any]]:
    """The newest events under the filters (the table's first page; it pages on by itself)."""
    return ctx.queries.events_page(ctx.ranged, limit=EVENTS_PAGE)


def daily(ctx: ViewContext) -> DailySeries:
    return ctx.queries.daily(ctx.request.filters, ctx.window.first, ctx.window.last, split="model")


def models(ctx: ViewContext) -> ModelSpend:
    return ctx.model_spend()


def breakdown(ctx: ViewContext) -> Breakdown:
    dim = ctx.request.breakdown
    return Breakdown(dim, ctx.queries.by(dim, ctx.ranged))


def tokens(ctx: ViewContext) -> dict[str, int]:
    t = Totals()
    for _, _, row in ctx.model_spend().rows:
        t.add(row)
    return t.token_breakdown()


def latency(ctx: ViewContext) -> list[LatencyStats]:
    return ctx.queries.latency(ctx.ranged, limit_models=LATENCY_MODELS)


def alerts(ctx: ViewContext) -> list[Any] | None:
    return ctx.alert_history(200) if ctx.alert_history else None


def blocks(ctx: ViewContext) -> BlockList:
    book = BlockBook(ctx.queries.conn)
    return BlockList(book.history(BLOCKS_SHOWN), book.refused(), to_us(ctx.now))


def any_events(ctx: ViewContext) -> bool:
    """Whether anything was ever recorded (the onboarding panel shows until it is)."""
    return bool(ctx.queries.recent(1))


def options(ctx: ViewContext) -> FilterOptions:
    """Values for the filter pickers: what was seen in the longest range the window offers
    (older values could select nothing), one scan for all four dimensions."""
    q = ctx.queries
    oldest = resolve_range(OPTIONS_RANGE, q.tz, ctx.now)
    since = Filters(start_us=oldest.start_us)
    seen = q.values_seen(("provider", "model", "feature", "source"), since)
    tags = q.tag_values(since)
    return FilterOptions(seen["provider"], seen["model"], seen["feature"], seen["source"], tags,
                         sorted({k for k, _ in tags}))


def subscription(ctx: ViewContext) -> int:
    """Coding agents' calls on a flat plan in the range (and source filter): their API-equivalent
    value in nano-dollars, shown beside spend, never in it."""
    from llmtray.agents.status import api_equivalent

    w = ctx.window
    return usd_to_nanos(api_equivalent(ctx.queries.conn, ctx.request.filters.source, w.start_us, w.end_us))


VIEWS: dict[str, Callable[[ViewContext], Any]] = {
    "any_events": any_events, "kpis": kpis, "live": live, "events": events, "daily": daily, "models": models,
    "breakdown": breakdown, "tokens": tokens, "latency": latency, "alerts": alerts, "blocks": blocks,
    "options": options, "subscription": subscription,
}


def compute(ctx: ViewContext) -> Iterator[tuple[str, Any]]:
    """(view name, payload) for each requested view, in the request's order."""
    for name in ctx.request.views:
        yield name, VIEWS[name](ctx)

