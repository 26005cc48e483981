"""Budgets: a spending limit over a calendar period, scoped like every other view, kept in the DB.

A budget maps onto `queries.Filters`, so its spend is computed by the same SQL as the dashboard
and `llmtray report` — the numbers can never disagree. Periods are the user's local calendar
(`Queries.tz`, week start from config). Reads work on a bare `sqlite3.Connection` (what
`Queries` holds), so the API, the CLI, the tray and the proxy's enforcement check share them;
changes go through `BudgetBook` on a Peewee database of the caller's thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import peewee as pw

from llmtray.core import periods
from llmtray.core.commits import Committed
from llmtray.core.errors import LLMTrayError
from llmtray.core.events import MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS
from llmtray.core.model_names import same_model
from llmtray.core.money import NANOS_PER_USD, nanos_to_str, parse_usd, usd_to_nanos
from llmtray.core.queries import Filters, Queries
from llmtray.core.settled import SettledQueries, SettledTotals, forget_all, settled_for
from llmtray.core.store import from_us, to_us

DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
SCOPE_FIELDS = ("provider", "model", "feature", "user", "project", "env")
PERIOD_PHRASE = {"day": "today", "week": "this week", "month": "this month"}
MAX_NAME = 100
MAX_LIMIT_NANOS = 10**9 * NANOS_PER_USD  # a billion dollars: anything above is a typo
MAX_THRESHOLD = 1000


class BudgetError(LLMTrayError, ValueError):
    """A budget that can't be stored or found; the message names the field or the budget."""


# --- definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a budget counts; unset fields mean "any", no tags means every tag set.

    Several tags must all be present on an event (AND), as in `Filters`."""

    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    user: str | None = None
    project: str | None = None
    env: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in SCOPE_FIELDS:
            value = getattr(self, name)
            if value is not None and (not value.strip() or len(value) > 200):
                raise BudgetError(f"scope {name}: must be 1–200 characters, got {value!r}")
        if len(self.tags) > MAX_TAGS:
            raise BudgetError(f"scope tags: at most {MAX_TAGS}, got {len(self.tags)}")
        keys = [k for k, _ in self.tags]
        for key in keys:
            if keys.count(key) > 1:
                raise BudgetError(f"scope tag {key!r} is given twice; an event has one value per tag key")
        for key, value in self.tags:
            if not key.strip() or len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
                raise BudgetError(f"scope tag {key!r}: key 1–{MAX_TAG_KEY} and value ≤{MAX_TAG_VALUE} characters")
        object.__setattr__(self, "tags", tuple(sorted(self.tags)))

    @property
    def is_everything(self) -> bool:
        return not self.tags and all(getattr(self, n) is None for n in SCOPE_FIELDS)

    def filters(self) -> Filters:
        dims = {n: (getattr(self, n),) for n in SCOPE_FIELDS if getattr(self, n) is not None}
        return Filters(tags=self.tags, **dims)

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a call with these attribution values (`provider`, …, `tags`: dict) counts; a
        model alias covers its dated snapshots, as in `filters()`."""
        for name in SCOPE_FIELDS:
            wanted = getattr(self, name)
            if wanted is None:
                continue
            if not (same_model(wanted, values.get(name)) if name == "model" else values.get(name) == wanted):
                return False
        tags = values.get("tags") or {}
        return all(tags.get(k) == v for k, v in self.tags)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: getattr(self, n) for n in SCOPE_FIELDS if getattr(self, n) is not None}
        if self.tags:
            out["tags"] = dict(self.tags)
        return out

    def describe(self) -> str:
        """`provider openai, feature chat, tag team=search` — or `all spend`."""
        parts = [f"{n} {getattr(self, n)}" for n in SCOPE_FIELDS if getattr(self, n) is not None]
        parts += [f"tag {k}={v}" for k, v in self.tags]
        return ", ".join(parts) or "all spend"


@dataclass(frozen=True)
class Budget:
    """A validated budget definition: constructing an invalid one raises `BudgetError`."""

    name: str
    limit_nanos: int
    period: str
    scope: Scope = field(default_factory=Scope)
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    enforce: bool = False
    id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", clean_name(self.name))
        if not 0 < self.limit_nanos <= MAX_LIMIT_NANOS:
            raise BudgetError(f"limit: must be more than $0 and at most $1,000,000,000, got "
                              f"${nanos_to_str(self.limit_nanos)}")
        if self.period not in periods.PERIODS:
            raise BudgetError(f"period: must be one of {', '.join(periods.PERIODS)}, got {self.period!r}")
        check_thresholds(self.thresholds)
        object.__setattr__(self, "thresholds", tuple(sorted(self.thresholds)))

    @property
    def limit_usd(self) -> str:
        return nanos_to_str(self.limit_nanos) or "0"

    @property
    def warn_at(self) -> int:
        """Percent from which the budget shows as `warning`: its highest threshold below 100 (80 by default)."""
        return max((t for t in self.thresholds if t < 100), default=80)


def clean_name(text: str, error: type[LLMTrayError] = BudgetError) -> str:
    """A budget's or guard's name, stripped: 1–`MAX_NAME` printable characters, else `error`."""
    name = text.strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise error(f"name: must be 1–{MAX_NAME} printable characters, got {text!r}")
    return name


def check_thresholds(values: Iterable[int]) -> None:
    values = list(values)
    if not values:
        raise BudgetError("thresholds: give at least one percentage, e.g. 50,80,100")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_THRESHOLD:
            raise BudgetError(f"thresholds: {v!r} is not a whole percentage between 1 and {MAX_THRESHOLD}")
    if len(set(values)) != len(values):
        raise BudgetError(f"thresholds: {','.join(map(str, values))} repeats a value")


def parse_limit(text: str) -> int:
    """A user-written dollar limit (`25`, `$1,200.50`) as nanos; the error quotes the text."""
    try:
        amount: Decimal = parse_usd(text)
    except ValueError as exc:
        raise BudgetError(f"limit: {exc}") from None
    nanos = usd_to_nanos(amount)
    if nanos <= 0:
        raise BudgetError(f"limit: must be more than $0, got {text!r}")
    if nanos > MAX_LIMIT_NANOS:
        raise BudgetError(f"limit: {text!r} is above $1,000,000,000")
    return nanos


def parse_thresholds(text: str) -> tuple[int, ...]:
    """`50,80,100` (a `%` after a number is allowed) as sorted whole percentages."""
    items = [t.strip().rstrip("%").strip() for t in text.split(",")]
    out: list[int] = []
    for i, item in enumerate(items, 1):
        if not item.isdigit():
            raise BudgetError(f"thresholds: item {i} ({item!r}) of {text!r} is not a whole percentage")
        out.append(int(item))
    check_thresholds(out)
    return tuple(sorted(out))


def parse_tag(text: str) -> tuple[str, str]:
    """`KEY=VALUE` (the value may itself contain `=`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BudgetError(f"tag: expected KEY=VALUE, got {text!r}")
    return key.strip(), value


# --- storage -------------------------------------------------------------------------------


def budget_models(db: pw.Database) -> SimpleNamespace:
    """Peewee models of the budget tables bound to `db` (one set per database, no globals).
    The schema itself is migration 3 in `core.db`."""

    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class BudgetRow(Base):
        name = pw.TextField(unique=True)
        limit_nanos = pw.IntegerField()
        period = pw.TextField()
        provider = pw.TextField(null=True)
        model = pw.TextField(null=True)
        feature = pw.TextField(null=True)
        user = pw.TextField(null=True)
        project = pw.TextField(null=True)
        env = pw.TextField(null=True)
        tags = pw.TextField(null=True)
        thresholds = pw.TextField()
        enforce = pw.BooleanField()
        created = pw.IntegerField()

        class Meta:
            table_name = "budget"

    class Crossing(Base):
        budget = pw.IntegerField()
        period_start = pw.IntegerField()
        kind = pw.TextField()
        threshold = pw.IntegerField()
        ts = pw.IntegerField()
        alert = pw.IntegerField(null=True)

        class Meta:
            table_name = "crossing"
            primary_key = pw.CompositeKey("budget", "period_start", "kind", "threshold")

    return SimpleNamespace(BudgetRow=BudgetRow, Crossing=Crossing)


def _row_values(b: Budget) -> dict[str, Any]:
    return {
        "name": b.name,
        "limit_nanos": b.limit_nanos,
        "period": b.period,
        **{n: getattr(b.scope, n) for n in SCOPE_FIELDS},
        "tags": json.dumps(dict(b.scope.tags), ensure_ascii=False, sort_keys=True) if b.scope.tags else None,
        "thresholds": ",".join(map(str, b.thresholds)),
        "enforce": bool(b.enforce),
    }


def _from_row(row: Mapping[str, Any]) -> Budget:
    tags = tuple(json.loads(row["tags"]).items()) if row["tags"] else ()
    return Budget(
        name=row["name"],
        limit_nanos=int(row["limit_nanos"]),
        period=row["period"],
        scope=Scope(**{n: row[n] for n in SCOPE_FIELDS}, tags=tags),
        thresholds=tuple(int(t) for t in row["thresholds"].split(",")),
        enforce=bool(row["enforce"]),
        id=int(row["id"]),
    )


def load_budgets(conn: sqlite3.Connection) -> list[Budget]:
    """Every budget, by name, from a plain connection (the one a `Queries` reads through)."""
    cur = conn.execute("SELECT * FROM budget ORDER BY name COLLATE NOCASE")
    cols = [d[0] for d in cur.description]
    return [_from_row(dict(zip(cols, r))) for r in cur]


class BudgetBook:
    """Adds and removes budgets on one database (use it on the thread that opened `db`)."""

    def __init__(self, db: pw.Database):
        self.db = db
        self.models = budget_models(db)

    def list(self) -> list[Budget]:
        return load_budgets(self.db.connection())

    def get(self, name: str) -> Budget:
        row = self.models.BudgetRow.select().where(self.models.BudgetRow.name == name.strip()).dicts().first()
        if row is None:
            raise BudgetError(self._unknown(name))
        return _from_row(row)

    def add(self, budget: Budget) -> Budget:
        """Store a new budget; a name already taken (case-insensitively) is an error."""
        try:
            with self.db.atomic("IMMEDIATE"):
                self.models.BudgetRow.insert(**_row_values(budget), created=int(time.time())).execute()
        except pw.IntegrityError:
            raise BudgetError(f"a budget named {budget.name!r} already exists "
                              "(remove it first: llmtray budgets remove NAME)") from None
        invalidate_enforcement_cache()
        return self.get(budget.name)

    def remove(self, name: str) -> Budget:
        """Delete a budget and its crossing records; its alerts stay in the history."""
        with self.db.atomic("IMMEDIATE"):
            budget = self.get(name)
            self.models.BudgetRow.delete().where(self.models.BudgetRow.id == budget.id).execute()
        invalidate_enforcement_cache()
        return budget

    def _unknown(self, name: str) -> str:
        names = [b.name for b in self.list()]
        known = f"; budgets: {', '.join(names)}" if names else "; there are no budgets yet"
        return f"no budget named {name!r}{known}"


# --- evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStatus:
    """Where one budget stands in its current period (money in nanos, bounds in UTC µs)."""

    budget: Budget
    start_us: int
    end_us: int
    spent_nanos: int
    projected_nanos: int
    unpriced_requests: int

    @property
    def percent(self) -> Decimal:
        return Decimal(self.spent_nanos * 100) / Decimal(self.budget.limit_nanos)

    def reached(self) -> tuple[int, ...]:
        """Thresholds at or below the current spend, compared exactly in integers."""
        return tuple(t for t in self.budget.thresholds if self.spent_nanos * 100 >= self.budget.limit_nanos * t)

    @property
    def state(self) -> str:
        """`exceeded` at 100 %; `warning` from the highest threshold below 100 % (80 % by default)."""
        if self.spent_nanos >= self.budget.limit_nanos:
            return "exceeded"
        return "warning" if self.spent_nanos * 100 >= self.budget.limit_nanos * self.budget.warn_at else "ok"

    @property
    def on_pace_to_exceed(self) -> bool:
        return self.projected_nanos > self.budget.limit_nanos


def evaluate(queries: Queries, budget: Budget, now: datetime | None = None, week_start: int = 0,
             *, project: bool = True) -> BudgetStatus:
    """Spend of the budget's current period and (unless `project=False`) its projected end.

    The projection is `Queries.projection`: pace over the last 7 days or the whole period if
    longer, so a quiet first morning doesn't project zero and one early burst doesn't project a
    fortune."""
    now = now or datetime.now(UTC)
    f = budget.scope.filters()
    spent, start, end = queries.spend_in_period(budget.period, f, now, week_start)
    projected = queries.projection(budget.period, f, now, week_start) if project else spent.cost_nanos
    return BudgetStatus(budget, start, end, spent.cost_nanos, projected, spent.unpriced)


def entry(status: BudgetStatus, tz: Any) -> dict[str, Any]:
    """One budget as JSON (DESIGN §7 fields first, money as decimal strings), plus its
    definition and period so scripts need no second call."""
    b = status.budget
    return {
        "name": b.name,
        "period": b.period,
        "limit_usd": b.limit_usd,
        "spent_usd": nanos_to_str(status.spent_nanos),
        "percent": float(round(status.percent, 1)),
        "projected_usd": nanos_to_str(status.projected_nanos),
        "state": status.state,
        "scope": b.scope.as_dict(),
        "thresholds": list(b.thresholds),
        "enforce": b.enforce,
        "period_start": from_us(status.start_us).astimezone(tz).isoformat(),
        "period_end": from_us(status.end_us).astimezone(tz).isoformat(),
        "unpriced_requests": status.unpriced_requests,
    }


def budget_entries(queries: Queries, now: datetime, week_start: int = 0) -> list[dict[str, Any]]:
    """Every budget's entry for `status.summary` (the API, `status --json`, the tray); period
    sums are remembered between calls (`core.settled`), so a tray refreshing on every commit
    re-reads only the current quarter-hour."""
    fast = SettledQueries(queries, settled_for(queries.conn), to_us(now))
    return [entry(evaluate(fast, b, now, week_start), queries.tz) for b in load_budgets(queries.conn)]


# --- enforcement (proxy and enforcing hooks) -------------------------------------------------


@dataclass(frozen=True)
class _Exhausted:
    budgets: tuple[Budget, ...]  # enforced budgets at or over their limit, most over first
    valid_until: float  # monotonic deadline
    from_us: int  # the answer holds while `now` stays inside every budget's current period
    until_us: int


class EnforcementCache:
    """Which enforced budgets are exhausted, recomputed at most every `ttl_s` seconds, when a
    period rolls over, or after `invalidate()` (wired to the writer's commit notice) — so the
    proxy can ask on every request for the price of a dictionary lookup. A recomputation sums
    only the current 15-minute bucket afresh (`core.settled`)."""

    def __init__(self, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[SettledTotals, int], _Exhausted] = {}

    def invalidate(self, committed: Committed | None = None) -> None:
        """After a commit the next check recomputes; without one (a reprice, changed budgets)
        remembered period sums are dropped too."""
        with self._lock:
            self._entries.clear()
        if committed is None:
            forget_all()

    def exhausted(self, queries: Queries, scope_values: Mapping[str, Any], now: datetime | None = None,
                  week_start: int = 0) -> Budget | None:
        now = now or datetime.now(UTC)
        now_us = to_us(now)
        settled = settled_for(queries.conn)
        key = (settled, week_start)
        with self._lock:
            cached = self._entries.get(key)
        if cached is None or self.clock() >= cached.valid_until or not cached.from_us <= now_us < cached.until_us:
            cached = self._compute(SettledQueries(queries, settled, now_us), now, week_start)
            with self._lock:
                self._entries[key] = cached
        return next((b for b in cached.budgets if b.scope.matches(scope_values)), None)

    def _compute(self, queries: Queries, now: datetime, week_start: int) -> _Exhausted:
        deadline = self.clock() + self.ttl_s
        lo, hi, over = -(2**63), 2**63, []
        for b in load_budgets(queries.conn):
            if not b.enforce:
                continue
            status = evaluate(queries, b, now, week_start, project=False)
            lo, hi = max(lo, status.start_us), min(hi, status.end_us)
            if status.spent_nanos >= b.limit_nanos:
                over.append(status)
        over.sort(key=lambda s: (-s.percent, s.budget.name))
        return _Exhausted(tuple(s.budget for s in over), deadline, lo, hi)


_ENFORCEMENT = EnforcementCache()


def exhausted_enforced_budget(queries: Queries, scope_values: Mapping[str, Any], now: datetime | None = None,
                              week_start: int = 0) -> Budget | None:
    """The enforced budget (most over its limit) that forbids a call with these attribution
    values — `provider`, `model`, `feature`, `user`, `project`, `env`, `tags` (dict) — or None."""
    return _ENFORCEMENT.exhausted(queries, scope_values, now, week_start)


def invalidate_enforcement_cache(committed: Committed | None = None) -> None:
    """Forget cached exhaustion (a writer listener: call it with each `Committed`)."""
    _ENFORCEMENT.invalidate(committed)
