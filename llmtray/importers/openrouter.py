"""OpenRouter's exports: one row per generation, or the Activity page's daily aggregate.

`cost_total` / `Usage` is what OpenRouter charged, so it is imported as the reported cost.
Token counts follow the OpenAI shape (prompt includes cached tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.base import Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.values import boolean, decimal_number, money, stable_id, text, timestamp, whole


def _tokens(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, int]:
    return usage.openai_chat({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })


class OpenRouterGenerationsCsv(CsvFormat):
    name = "openrouter-generations"
    label = "OpenRouter per-generation export (CSV)"
    required = frozenset(("generation_id", "created_at", "cost_total", "tokens_prompt", "tokens_completion",
                          "model_permaslug"))

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        generation = text(row["generation_id"])
        if generation is None:
            raise RowProblem("generation_id: missing")
        model = text(row["model_permaslug"])
        if model is None:
            raise RowProblem("model_permaslug: missing")
        tags = {k: v for k, v in (("api_key", text(row.get("api_key_name"))), ("app", text(row.get("app_name"))),
                                  ("upstream", text(row.get("provider_name")))) if v}
        if boolean(row.get("cancelled"), "cancelled"):
            tags["cancelled"] = "true"
        return {
            "id": stable_id(self.name, generation),
            "request_id": generation,
            "ts": timestamp(row["created_at"], "created_at"),
            "provider": "openrouter",
            "model": model,
            **_tokens(whole(row["tokens_prompt"], "tokens_prompt"), whole(row["tokens_completion"], "tokens_completion"),
                      whole(row.get("tokens_cached"), "tokens_cached"),
                      whole(row.get("tokens_reasoning"), "tokens_reasoning")),
            "cost_usd": money(row["cost_total"], "cost_total"),
            "stream": boolean(row.get("streamed"), "streamed"),
            "latency_ms": decimal_number(row.get("generation_time_ms"), "generation_time_ms"),
            "ttft_ms": decimal_number(row.get("time_to_first_token_ms"), "time_to_first_token_ms"),
            "user": text(row.get("user")),
            "tags": tags,
        }


class OpenRouterActivityCsv(CsvFormat):
    name = "openrouter-activity"
    label = "OpenRouter activity export (CSV)"
    required = frozenset(("Date", "Slug", "Usage", "Requests", "Prompt Tokens", "Completion Tokens"))
    placeholder = "day without requests"

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        requests = whole(row["Requests"], "Requests")
        cost = money(row["Usage"], "Usage")
        tokens = _tokens(whole(row["Prompt Tokens"], "Prompt Tokens"),
                         whole(row["Completion Tokens"], "Completion Tokens"), 0,
                         whole(row.get("Reasoning Tokens"), "Reasoning Tokens"))
        if requests == 0 and cost in (None, "0") and not any(tokens.values()):
            return None
        model = text(row["Slug"])
        if model is None:
            raise RowProblem("Slug: missing")
        day = timestamp(row["Date"], "Date")
        return {
            "id": stable_id(self.name, day, model),
            "ts": day,
            "provider": "openrouter",
            "model": model,
            "requests": max(requests, 1),
            **tokens,
            "cost_usd": cost,
        }
