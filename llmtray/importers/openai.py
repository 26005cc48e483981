"""OpenAI's usage and cost data: the dashboard's CSV exports and the Usage/Costs API pages.

Usage rows carry tokens (priced by the store); cost rows carry what OpenAI billed (`reported`).
The usage CSV and the Usage API describe the same buckets, so they share one id namespace:
importing both for the same days adds each bucket once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.api_pages import ApiPagesFormat
from llmtray.importers.base import Head, Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.values import boolean, money, stable_id, text, timestamp, whole

TIME_COLUMNS = frozenset(("start_time", "end_time", "start_time_iso", "end_time_iso"))
_TOKEN_KINDS = {"input": "input", "output": "output", "cached input": "cached", "cached_input": "cached"}


def _bucket_ts(row: Mapping[str, str], column: str) -> str:
    """Unix seconds first (exact, always UTC); the ISO column (with or without `+00:00`) if empty."""
    value = row.get(column) or row.get(f"{column}_iso")
    return timestamp(value, column)


def usage_event(row: Mapping[str, str]) -> dict[str, Any] | None:
    """One usage bucket (CSV row or API result as text cells) → event; None for an empty bucket."""
    requests = whole(row.get("num_model_requests"), "num_model_requests")
    tokens = usage.openai_responses({
        "input_tokens": whole(row.get("input_tokens"), "input_tokens"),
        "output_tokens": whole(row.get("output_tokens"), "output_tokens"),
        "input_tokens_details": {"cached_tokens": whole(row.get("input_cached_tokens"), "input_cached_tokens")},
    })
    cache_write = whole(row.get("input_cache_write_tokens"), "input_cache_write_tokens")
    if requests == 0 and not any(tokens.values()) and not cache_write:
        return None
    start = _bucket_ts(row, "start_time")
    batch = boolean(row.get("batch"), "batch")
    tier = "batch" if batch else usage.service_tier(text(row.get("service_tier")))
    model = text(row.get("model"))
    project, user, key = text(row.get("project_id")), text(row.get("user_id")), text(row.get("api_key_id"))
    event: dict[str, Any] = {
        "id": stable_id("openai-usage", start, _bucket_ts(row, "end_time"), project, user, key, model,
                        batch, text(row.get("service_tier"))),
        "ts": start,
        "provider": "openai",
        "model": model or "(all models)",
        "requests": max(requests, 1),
        **tokens,
        "service_tier": tier,
        "project": project,
        "user": user,
    }
    event["cache_write_tokens"] = cache_write
    event["input_tokens"] = max(event["input_tokens"], event["cache_read_tokens"] + cache_write)
    if key:
        event["tags"] = {"api_key_id": key}
    return event


def cost_event(row: Mapping[str, str], fmt: str) -> dict[str, Any] | None:
    """One cost line (CSV row or API result) → event with the billed amount; None when it holds none."""
    amount = money(row.get("amount_value") or row.get("amount.value"), "amount_value")
    if amount is None or amount == "0":
        return None  # an empty bucket, or a line that cost nothing (`0E-6176` in the API)
    line_item = text(row.get("line_item"))
    currency = (text(row.get("amount_currency") or row.get("amount.currency")) or "usd").lower()
    if currency != "usd":
        raise RowProblem(f"amount_currency: only USD amounts can be imported, got {currency!r}")
    model, kind = line_item or "(unitemized)", None
    if line_item and ", " in line_item:
        head, tail = line_item.rsplit(", ", 1)
        if tail.strip().lower() in _TOKEN_KINDS:
            model, kind = head.strip(), _TOKEN_KINDS[tail.strip().lower()]
    start = _bucket_ts(row, "start_time")
    project, user, key = text(row.get("project_id")), text(row.get("user_id")), text(row.get("api_key_id"))
    event: dict[str, Any] = {
        "id": stable_id(fmt, start, _bucket_ts(row, "end_time"), line_item, project, user, key,
                        text(row.get("organization_id")), text(row.get("api_source"))),
        "ts": start,
        "provider": "openai",
        "model": model,
        "operation": "chat" if kind or not line_item else "other",
        "cost_usd": amount,
        "requests": 0,  # a cost line is money, not a call: counting it would inflate requests
        "project": project,
        "user": user,
        "tags": {k: v for k, v in (("line_item", line_item), ("api_key_id", key)) if v},
    }
    unit = (text(row.get("quantity_unit")) or "").lower()
    if kind and row.get("quantity") and (not unit or "token" in unit):
        quantity = whole(row.get("quantity"), "quantity")
        if kind == "output":
            event["output_tokens"] = quantity
        else:
            event["input_tokens"] = quantity
            if kind == "cached":
                event["cache_read_tokens"] = quantity
    return event


class OpenAIUsageCsv(CsvFormat):
    name = "openai-usage"
    label = "OpenAI usage export (CSV)"
    required = TIME_COLUMNS
    placeholder = "empty day bucket"

    def detect(self, head: Head) -> bool:
        # An export with no usage at all is just the four time columns.
        return super().detect(head) and ("num_model_requests" in head.header or set(head.header) == TIME_COLUMNS)

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        return usage_event(row)


class OpenAICostCsv(CsvFormat):
    name = "openai-cost"
    label = "OpenAI cost export (CSV)"
    required = TIME_COLUMNS | {"amount_value", "amount_currency", "line_item"}
    placeholder = "empty cost bucket"

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        return cost_event(row, self.name)


class OpenAIUsageApi(ApiPagesFormat):
    name = "openai-usage-api"
    label = "OpenAI Usage API pages (JSON)"
    bucket_key, bucket_end_key = "start_time", "end_time"
    result_keys = frozenset(("num_model_requests", "input_tokens"))
    empty_page_default = True

    def result(self, row: Mapping[str, str], start: str, end: str) -> dict[str, Any] | None:
        return usage_event({**row, "start_time": start, "end_time": end})


class OpenAICostsApi(ApiPagesFormat):
    name = "openai-costs-api"
    label = "OpenAI Costs API pages (JSON)"
    bucket_key, bucket_end_key = "start_time", "end_time"
    result_keys = frozenset(("amount",))

    def result(self, row: Mapping[str, str], start: str, end: str) -> dict[str, Any] | None:
        return cost_event({**row, "start_time": start, "end_time": end}, self.name)
