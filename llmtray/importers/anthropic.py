"""Anthropic's usage and cost data: the Console CSV exports and the Admin API report pages.

Anthropic counts uncached input apart from cache reads and writes; `llmtray.core.usage.anthropic`
adds them back so `input_tokens` counts all input (DESIGN §3). The cost export names models by
display name ("Claude Sonnet 4.5"); those are mapped to API ids through genai-prices so spend by
model lines up with what the hooks record. The cost report API gives cents, not dollars.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.api_pages import ApiPagesFormat
from llmtray.importers.base import Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.values import money, stable_id, text, timestamp, whole


@functools.cache
def _display_names() -> dict[str, str]:
    from genai_prices.data_snapshot import get_snapshot  # loaded on first use: ~0.5 s, not at CLI start

    provider = next(p for p in get_snapshot().providers if p.id == "anthropic")
    return {m.name.lower(): m.id for m in provider.models if m.name}


def model_id(name: str) -> str:
    """`Claude Sonnet 4.5` → `claude-sonnet-4-5`; an API id or an unknown name stays as it is."""
    return _display_names().get(name.strip().lower(), name.strip())


def _tier(value: str | None) -> str | None:
    if not value:
        return None
    lowered = value.lower()
    return usage.service_tier(lowered) or ("batch" if "batch" in lowered else None)


def _tokens(row: Mapping[str, str], *, uncached: str, read: str, write: str | None, write_5m: str,
            write_1h: str, output: str) -> dict[str, int]:
    return usage.anthropic({
        "input_tokens": whole(row.get(uncached), uncached),
        "cache_read_input_tokens": whole(row.get(read), read),
        "cache_creation_input_tokens": whole(row.get(write), write) if write else 0,
        "cache_creation": {
            "ephemeral_5m_input_tokens": whole(row.get(write_5m), write_5m),
            "ephemeral_1h_input_tokens": whole(row.get(write_1h), write_1h),
        },
        "output_tokens": whole(row.get(output), output),
    })


def _cost_fields(model: str | None, cost: str | None, cost_type: str | None, token_type: str | None) -> dict[str, Any]:
    tags = {k: v for k, v in (("token_type", token_type), ("cost_type", cost_type)) if v}
    return {
        "provider": "anthropic",
        "model": model_id(model) if model else "(unitemized)",
        "operation": "chat" if cost_type in (None, "tokens") else "other",
        "cost_usd": cost,
        "requests": 0,  # a cost line is money, not a call: counting it would inflate requests
        "tags": tags,
    }


class AnthropicUsageCsv(CsvFormat):
    name = "anthropic-usage"
    label = "Anthropic Console usage export (CSV)"
    required = frozenset(("usage_date_utc", "model_version", "usage_input_tokens_no_cache",
                          "usage_input_tokens_cache_read", "usage_output_tokens"))
    placeholder = "row without tokens"

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        tokens = _tokens(row, uncached="usage_input_tokens_no_cache", read="usage_input_tokens_cache_read",
                         write="usage_input_tokens_cache_write", write_5m="usage_input_tokens_cache_write_5m",
                         write_1h="usage_input_tokens_cache_write_1h", output="usage_output_tokens")
        if not any(tokens.values()):
            return None
        model = text(row.get("model_version"))
        if model is None:
            raise RowProblem("model_version: missing")
        day = timestamp(row.get("usage_date_utc"), "usage_date_utc")
        key, workspace = text(row.get("api_key")), text(row.get("workspace"))
        return {
            "id": stable_id(self.name, day, model, key, workspace, *(text(row.get(c)) for c in
                            ("usage_type", "context_window", "inference_geo", "speed"))),
            "ts": day,
            "provider": "anthropic",
            "model": model,
            **tokens,
            "service_tier": _tier(text(row.get("usage_type"))),
            "project": workspace,
            "tags": {"api_key": key} if key else {},
        }


class AnthropicCostCsv(CsvFormat):
    name = "anthropic-cost"
    label = "Anthropic Console cost export (CSV)"
    required = frozenset(("usage_date_utc", "model", "workspace", "api_key", "token_type", "cost_usd"))
    placeholder = "row without cost"

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        cost = money(row.get("cost_usd"), "cost_usd")
        if cost is None or cost == "0":
            return None
        day = timestamp(row.get("usage_date_utc"), "usage_date_utc")
        model, workspace, key = text(row.get("model")), text(row.get("workspace")), text(row.get("api_key"))
        token_type, cost_type = text(row.get("token_type")), text(row.get("cost_type"))
        event = _cost_fields(model, cost, cost_type, token_type)
        if key:
            event["tags"]["api_key"] = key
        return {
            "id": stable_id(self.name, day, model, workspace, key, token_type, cost_type, *(text(row.get(c)) for c in
                            ("usage_type", "context_window", "inference_geo", "speed", "api_key_id"))),
            "ts": day,
            **event,
            "service_tier": _tier(text(row.get("usage_type"))),
            "project": workspace,
        }


class AnthropicUsageApi(ApiPagesFormat):
    name = "anthropic-usage-api"
    label = "Anthropic usage report API pages (JSON)"
    bucket_key, bucket_end_key = "starting_at", "ending_at"
    result_keys = frozenset(("uncached_input_tokens", "output_tokens"))
    empty_page_default = True

    def result(self, row: Mapping[str, str], start: str, end: str) -> dict[str, Any] | None:
        tokens = _tokens(row, uncached="uncached_input_tokens", read="cache_read_input_tokens", write=None,
                         write_5m="cache_creation.ephemeral_5m_input_tokens",
                         write_1h="cache_creation.ephemeral_1h_input_tokens", output="output_tokens")
        if not any(tokens.values()):
            return None
        start_ts = timestamp(start, "starting_at")
        model, key, workspace = text(row.get("model")), text(row.get("api_key_id")), text(row.get("workspace_id"))
        return {
            "id": stable_id(self.name, start_ts, timestamp(end, "ending_at"), model, key, workspace,
                            *(text(row.get(c)) for c in ("service_tier", "context_window", "inference_geo"))),
            "ts": start_ts,
            "provider": "anthropic",
            "model": model or "(all models)",
            **tokens,
            "service_tier": _tier(text(row.get("service_tier"))),
            "project": workspace,
            "tags": {"api_key_id": key} if key else {},
        }


class AnthropicCostApi(ApiPagesFormat):
    name = "anthropic-cost-api"
    label = "Anthropic cost report API pages (JSON)"
    bucket_key, bucket_end_key = "starting_at", "ending_at"
    result_keys = frozenset(("amount", "cost_type"))

    def result(self, row: Mapping[str, str], start: str, end: str) -> dict[str, Any] | None:
        currency = (text(row.get("currency")) or "USD").upper()
        if currency != "USD":
            raise RowProblem(f"currency: only USD amounts can be imported, got {currency!r}")
        cost = money(row.get("amount"), "amount", cents=True)
        if cost is None or cost == "0":
            return None
        start_ts = timestamp(start, "starting_at")
        model, description = text(row.get("model")), text(row.get("description"))
        cost_type, token_type, workspace = text(row.get("cost_type")), text(row.get("token_type")), text(row.get("workspace_id"))
        return {
            "id": stable_id(self.name, start_ts, timestamp(end, "ending_at"), model, description, cost_type,
                            token_type, workspace, *(text(row.get(c)) for c in
                                                     ("service_tier", "context_window", "inference_geo"))),
            "ts": start_ts,
            **_cost_fields(model or description, cost, cost_type, token_type),
            "service_tier": _tier(text(row.get("service_tier"))),
            "project": workspace,
        }
