"""LiteLLM proxy data: the `LiteLLM_SpendLogs` table dumped as CSV, and the Admin UI's daily
"Export CSV" per team or tag.

Spend logs are per request, with LiteLLM's computed `spend` (imported as the reported cost) and
whole prompts/responses in quoted fields that span lines. The Admin UI export has no model
column: its rows are imported under provider `litellm`, model `(all models)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from llmtray.importers.base import Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.values import boolean, decimal_number, money, stable_id, text, timestamp, whole

# LiteLLM's `custom_llm_provider` → our provider ids (DESIGN §3) where they differ.
_PROVIDERS = {
    "vertex_ai": "google", "vertex_ai_beta": "google", "gemini": "google", "bedrock": "aws",
    "bedrock_converse": "aws", "sagemaker": "aws", "azure_ai": "azure", "text-completion-openai": "openai",
    "together_ai": "together", "fireworks_ai": "fireworks",
}
_OPERATIONS = {
    "completion": "chat", "chat_completion": "chat", "embedding": "embeddings", "image_generation": "image",
    "transcription": "audio", "speech": "audio", "responses": "responses", "text_completion": "completion",
}


def _json(row: Mapping[str, str], column: str) -> Any:
    raw = text(row.get(column))
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RowProblem(f"{column}: not valid JSON ({exc.msg} at character {exc.pos})") from None


def _ms_between(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    ms = delta.total_seconds() * 1000
    return ms if ms >= 0 else None


def _operation(call_type: str | None) -> str:
    if not call_type:
        return "chat"
    name = call_type[1:] if call_type.startswith("a") and call_type[1:] in _OPERATIONS else call_type
    return _OPERATIONS.get(name, "other")


class LiteLLMSpendLogsCsv(CsvFormat):
    name = "litellm-spendlogs"
    label = "LiteLLM spend logs (CSV dump of LiteLLM_SpendLogs)"
    required = frozenset(("request_id", "call_type", "spend", "startTime", "model"))

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        request_id = text(row["request_id"])
        if request_id is None:
            raise RowProblem("request_id: missing")
        raw_model = text(row["model"])
        if raw_model is None:
            raise RowProblem("model: missing")
        llm_provider = (text(row.get("custom_llm_provider")) or "").lower()
        prefix, _, rest = raw_model.partition("/")
        if not llm_provider and rest:
            llm_provider = prefix.lower()
        model = rest if rest and prefix.lower() == llm_provider else raw_model
        start = timestamp(row["startTime"], "startTime")
        end = timestamp(row["endTime"], "endTime") if text(row.get("endTime")) else None
        first_token = timestamp(row["completionStartTime"], "completionStartTime") \
            if text(row.get("completionStartTime")) else None
        metadata = _json(row, "metadata") or {}
        if not isinstance(metadata, dict):
            raise RowProblem("metadata: expected a JSON object")
        tags: dict[str, str] = {}
        alias, team_alias = metadata.get("user_api_key_alias"), metadata.get("user_api_key_team_alias")
        if isinstance(alias, str) and alias.strip():
            tags["api_key"] = alias.strip()[:200]
        request_tags = _json(row, "request_tags")
        if isinstance(request_tags, list) and request_tags:
            tags["request_tags"] = ",".join(map(str, request_tags))[:200]
        if boolean(row.get("cache_hit"), "cache_hit"):
            tags["cache_hit"] = "true"
        failed = (text(row.get("status")) or "success").lower() not in ("success", "ok")
        latency = decimal_number(row.get("request_duration_ms"), "request_duration_ms")
        return {
            "id": stable_id(self.name, request_id),
            "request_id": request_id[:200],
            "ts": start,
            "provider": _PROVIDERS.get(llm_provider, llm_provider or "litellm"),
            "model": model,
            "operation": _operation(text(row.get("call_type"))),
            "input_tokens": whole(row.get("prompt_tokens"), "prompt_tokens"),
            "output_tokens": whole(row.get("completion_tokens"), "completion_tokens"),
            "cost_usd": money(row["spend"], "spend"),
            "latency_ms": latency if latency is not None else _ms_between(start, end),
            "ttft_ms": _ms_between(start, first_token) if first_token and first_token != end else None,
            "status": "error" if failed else "ok",
            "error": f"LiteLLM status {text(row.get('status'))!r}" if failed else None,
            "user": text(row.get("user")) or text(row.get("end_user")),
            "project": (text(team_alias) if isinstance(team_alias, str) else None) or text(row.get("team_id")),
            "tags": tags,
        }


class LiteLLMUiCsv(CsvFormat):
    name = "litellm-ui"
    label = "LiteLLM Admin UI spend export (CSV)"
    required = frozenset(("Date", "Spend ($)", "Requests", "Prompt Tokens", "Completion Tokens"))
    placeholder = "day without requests"

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        requests = whole(row["Requests"], "Requests")
        cost = money(row["Spend ($)"], "Spend ($)")
        inp, out = whole(row["Prompt Tokens"], "Prompt Tokens"), whole(row["Completion Tokens"], "Completion Tokens")
        if requests == 0 and cost in (None, "0") and not inp and not out:
            return None
        day = timestamp(row["Date"], "Date")
        team, tag = text(row.get("Team")), text(row.get("Tag"))
        group_id = text(row.get("Team ID")) or text(row.get("Tag ID"))
        return {
            "id": stable_id(self.name, day, "team" if "Team" in row else "tag", team or tag, group_id),
            "ts": day,
            "provider": "litellm",
            "model": "(all models)",
            "requests": max(requests, 1),
            "input_tokens": inp,
            "output_tokens": out,
            "cost_usd": cost,
            "project": team,
            "tags": {"tag": tag} if tag else {},
        }
