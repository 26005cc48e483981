"""One client per billing source (DESIGN §13, BILLING.md §1–3): the request shapes and how each
page becomes `BilledRow`s with its units explicit.

Every fetch asks for whole UTC days (start at 00:00:00Z, end exclusive), groups costs by the
finest dimensions offered and usage by model and tier, and reads every page before returning:
the caller writes a window all at once or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from llmtray.billing import fields as fd
from llmtray.billing.errors import MalformedPage
from llmtray.billing.rows import BYOK, COST, TOKENS, TOOL, USAGE, BilledRow
from llmtray.billing.transport import Page, Transport, paginate
from llmtray.billing.units import Unit, amount_nanos


BACKFILL_DAYS = 30  # the first round's reach (OpenRouter keeps no more)


@dataclass(frozen=True)
class Window:
    """UTC days `first` … `end` (exclusive)."""

    first: date
    end: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.end - self.first).days)]


def utc_today(now: float | None = None) -> date:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).date()


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Source:
    """What the sources share: the sync window and which days are still provisional."""

    name: ClassVar[str]
    provider: ClassVar[str]  # the `provider` of observed events this bill covers
    base_url: ClassVar[str]
    includes_today: ClassVar[bool] = True
    provisional_days: ClassVar[int] = 2  # the newest days fetchable: today and yesterday (BILLING §1.6, §2.5)
    max_backfill_days: ClassVar[int] = 365
    rolling_days: ClassVar[int] = 3

    def last_end(self, today: date) -> date:
        return today + timedelta(days=1) if self.includes_today else today

    def window(self, today: date, since: date | None, backfilled: bool) -> Window:
        """The rolling window once backfilled; else (or with `since`) from `since`/30 days back,
        within what the provider keeps."""
        end = self.last_end(today)
        if since is None:
            since = end - timedelta(days=self.rolling_days if backfilled else BACKFILL_DAYS)
        return Window(max(since, end - timedelta(days=self.max_backfill_days)), end)

    def provisional(self, day: date, today: date) -> bool:
        return day >= self.last_end(today) - timedelta(days=self.provisional_days)

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def fetch(self, transport: Transport, window: Window) -> tuple[list[Page], list[BilledRow]]:
        raise NotImplementedError

    check_path: ClassVar[str]  # the cost endpoint: the one call `billing connect` makes

    def check(self, transport: Transport, today: date) -> None:
        """One call for yesterday's costs, which only an admin/management key passes."""
        transport.get(self.check_path, self.check_params(today - timedelta(days=1)))

    def check_params(self, day: date) -> list[tuple[str, Any]]:
        return []


def _buckets(pages: list[Page], start_name: str, label: str) -> Iterator[tuple[date, str, list[Any]]]:
    """(UTC day, where, results) of every bucket of every page."""
    for p, page in enumerate(pages, start=1):
        data = fd.need(page.body, "data", list, f"{label} page {p}")
        for b, bucket in enumerate(data, start=1):
            where = f"{label} page {p}, bucket {b}"
            day = fd.utc_midnight(fd.need(bucket, start_name, (int, str), where), start_name, where)
            results = fd.need(bucket, "results", list, where)
            yield day, where, results


def _in_window(day: date, window: Window, where: str) -> None:
    if not window.first <= day < window.end:
        raise MalformedPage(f"{where}: a bucket for {day} is outside the {window.first}…{window.end} asked for")


def _currency(result: dict[str, Any], name: str, where: str) -> None:
    currency = result.get(name)
    if currency is not None and str(currency).lower() != "usd":
        raise MalformedPage(f"{where}: amount in {currency!r}; llmtray keeps USD bills only (never mixes currencies)")


class OpenAI(Source):
    name, provider, base_url = "openai", "openai", "https://api.openai.com"
    unit: ClassVar[Unit] = "usd"
    check_path = "/v1/organization/costs"

    def check_params(self, day: date) -> list[tuple[str, Any]]:
        return [("start_time", int(midnight(day).timestamp())), ("limit", 1)]

    def fetch(self, transport: Transport, window: Window) -> tuple[list[Page], list[BilledRow]]:
        span = [("start_time", int(midnight(window.first).timestamp())),
                ("end_time", int(midnight(window.end).timestamp())), ("bucket_width", "1d")]
        ndays = len(window.days)
        costs = list(paginate(transport, "/v1/organization/costs",
                              [*span, ("group_by", "project_id"), ("group_by", "line_item"),
                               ("limit", min(180, ndays))]))
        usage = list(paginate(transport, "/v1/organization/usage/completions",
                              [*span, *(("group_by", g) for g in ("model", "project_id", "batch", "service_tier")),
                               ("limit", min(31, ndays))]))
        rows: list[BilledRow] = []
        for day, where, results in _buckets(costs, "start_time", "costs"):
            _in_window(day, window, where)
            for r, result in enumerate(results, start=1):
                at = f"{where}, result {r}"
                amount = fd.need(result, "amount", dict, at)
                _currency(amount, "currency", f"{at}: amount")
                nanos = _money(amount.get("value"), self.unit, f"{at}: amount.value")
                line = fd.text(result, "line_item", at)
                model, _ = split_line_item(line)
                rows.append(BilledRow(day, COST, model=model, project=fd.text(result, "project_id", at), item=line,
                                      category=TOKENS if model else TOOL, amount_nanos=nanos))
        for day, where, results in _buckets(usage, "start_time", "usage"):
            _in_window(day, window, where)
            for r, result in enumerate(results, start=1):
                at = f"{where}, result {r}"
                tier = "batch" if result.get("batch") is True else fd.text(result, "service_tier", at)
                rows.append(BilledRow(
                    day, USAGE, model=fd.text(result, "model", at), project=fd.text(result, "project_id", at),
                    tier=_tier(tier),
                    requests=fd.count(result, "num_model_requests", at),
                    input_tokens=fd.count(result, "input_tokens", at),
                    cache_read_tokens=fd.count(result, "input_cached_tokens", at),
                    cache_write_tokens=fd.count(result, "input_cache_write_tokens", at),
                    output_tokens=fd.count(result, "output_tokens", at)))
        return costs + usage, rows


def split_line_item(line: str) -> tuple[str, str]:
    """('gpt-4o-2024-08-06', 'input') from 'gpt-4o-2024-08-06, input'; ('', line) for a line with
    no model ('web search tool calls'). Best effort: OpenAI documents no format (BILLING §1.2)."""
    model, sep, kind = line.rpartition(", ")
    if sep and model and " " not in model:
        return model, kind
    return "", line


class Anthropic(Source):
    name, provider, base_url = "anthropic", "anthropic", "https://api.anthropic.com"
    unit: ClassVar[Unit] = "cents"  # "123.45" is $1.2345 — the ×100 trap
    check_path = "/v1/organizations/cost_report"

    def check_params(self, day: date) -> list[tuple[str, Any]]:
        return [("starting_at", midnight(day).strftime("%Y-%m-%dT%H:%M:%SZ")), ("limit", 1)]

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}

    def fetch(self, transport: Transport, window: Window) -> tuple[list[Page], list[BilledRow]]:
        span = [("starting_at", midnight(window.first).strftime("%Y-%m-%dT%H:%M:%SZ")),
                ("ending_at", midnight(window.end).strftime("%Y-%m-%dT%H:%M:%SZ"))]
        limit = ("limit", min(31, len(window.days)))
        costs = list(paginate(transport, "/v1/organizations/cost_report",
                              [*span, ("group_by[]", "workspace_id"), ("group_by[]", "description"), limit]))
        usage = list(paginate(transport, "/v1/organizations/usage_report/messages",
                              [*span, ("bucket_width", "1d"),
                               *(("group_by[]", g) for g in ("model", "workspace_id", "service_tier",
                                                             "context_window")), limit]))
        rows: list[BilledRow] = []
        for day, where, results in _buckets(costs, "starting_at", "cost_report"):
            _in_window(day, window, where)
            for r, result in enumerate(results, start=1):
                at = f"{where}, result {r}"
                _currency(result, "currency", at)
                cost_type = fd.text(result, "cost_type", at) or "tokens"
                rows.append(BilledRow(
                    day, COST, model=fd.text(result, "model", at), project=fd.text(result, "workspace_id", at),
                    item=fd.text(result, "description", at) or fd.text(result, "token_type", at) or cost_type,
                    category=TOKENS if cost_type == "tokens" else TOOL,
                    tier=_tier(fd.text(result, "service_tier", at)), context=fd.text(result, "context_window", at),
                    amount_nanos=_money(result.get("amount"), self.unit, f"{at}: amount")))
        for day, where, results in _buckets(usage, "starting_at", "usage_report"):
            _in_window(day, window, where)
            for r, result in enumerate(results, start=1):
                at = f"{where}, result {r}"
                creation = result.get("cache_creation") or {}
                if not isinstance(creation, dict):
                    raise MalformedPage(f"{at}: cache_creation should be an object")
                writes = (fd.count(creation, "ephemeral_5m_input_tokens", f"{at}: cache_creation")
                          + fd.count(creation, "ephemeral_1h_input_tokens", f"{at}: cache_creation"))
                reads = fd.count(result, "cache_read_input_tokens", at)
                rows.append(BilledRow(
                    day, USAGE, model=fd.text(result, "model", at), project=fd.text(result, "workspace_id", at),
                    tier=_tier(fd.text(result, "service_tier", at)), context=fd.text(result, "context_window", at),
                    input_tokens=fd.count(result, "uncached_input_tokens", at) + reads + writes,
                    cache_read_tokens=reads, cache_write_tokens=writes,
                    output_tokens=fd.count(result, "output_tokens", at)))
        return costs + usage, rows


def _money(value: Any, unit: Unit, where: str) -> int:
    try:
        return amount_nanos(value, unit, where)
    except ValueError as exc:
        raise MalformedPage(str(exc)) from None


def _tier(value: str) -> str:
    return "" if value in ("standard", "default") else value


class OpenRouter(Source):
    """`/api/v1/activity`: completed UTC days only (today never), the last 30 of them, no
    pagination. `usage` is what OpenRouter charged; `byok_usage_inference` is on the upstream
    provider's own bill, kept apart so it is never counted twice."""

    name, provider, base_url = "openrouter", "openrouter", "https://openrouter.ai"
    unit: ClassVar[Unit] = "usd"
    includes_today = False
    provisional_days = 1  # yesterday, its newest day: activity's lag is unverified (BILLING §8)
    max_backfill_days = 30
    check_path = "/api/v1/activity"

    def fetch(self, transport: Transport, window: Window) -> tuple[list[Page], list[BilledRow]]:
        page = transport.get("/api/v1/activity", {})
        data = fd.need(page.body, "data", list, "activity")
        rows: list[BilledRow] = []
        for i, item in enumerate(data, start=1):
            at = f"activity row {i}"
            raw_day = fd.need(item, "date", str, at)
            try:
                day = date.fromisoformat(raw_day[:10])
            except ValueError:
                raise MalformedPage(f"{at}: date is not YYYY-MM-DD: {raw_day!r:.40}") from None
            if not window.first <= day < window.end:
                continue  # the endpoint always answers with its whole 30 days
            model = fd.need(item, "model", str, at)
            upstream = fd.text(item, "provider_name", at)
            rows.append(BilledRow(
                day, COST, model=model, item=upstream,
                amount_nanos=_money(item.get("usage"), self.unit, f"{at}: usage"),
                requests=fd.count(item, "requests", at), input_tokens=fd.count(item, "prompt_tokens", at),
                output_tokens=fd.count(item, "completion_tokens", at)))
            byok = item.get("byok_usage_inference")
            if byok is not None:
                nanos = _money(byok, self.unit, f"{at}: byok_usage_inference")
                if nanos:
                    rows.append(BilledRow(day, COST, model=model, item=upstream, category=BYOK, amount_nanos=nanos))
        return [page], rows


SOURCES: dict[str, Source] = {s.name: s for s in (OpenAI(), Anthropic(), OpenRouter())}
