"""OpenRouter's exports: one row per generation, or the Activity page's daily aggregate.

`cost_total` / `Usage` is what OpenRouter charged, so it is imported as the reported cost.
Token counts follow the OpenAI shape (prompt includes cached tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.base import Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.values import (
    boolean, boolean_fast, decimal_number, decimal_number_fast, key_id, money, stable_id, text, timestamp,
    timestamp_fast, whole, whole_fast,
)


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

    def fast_row(self, header: tuple[str, ...], options: Options) -> Callable[[list[str]], dict[str, Any] | None]:
        at = {name: i for i, name in enumerate(header)}
        missing = len(header)  # optional columns a file lacks read the "" appended to each row
        (generation_at, created_at, cost_at, prompt_at, completion_at, model_at, cached_at, reasoning_at,
         api_key_at, app_at, upstream_at, cancelled_at, streamed_at, latency_at, ttft_at, user_at) = (
            at.get(name, missing) for name in (
                "generation_id", "created_at", "cost_total", "tokens_prompt", "tokens_completion", "model_permaslug",
                "tokens_cached", "tokens_reasoning", "api_key_name", "app_name", "provider_name", "cancelled",
                "streamed", "generation_time_ms", "time_to_first_token_ms", "user"))
        name = self.name

        def fast(cells: list[str]) -> dict[str, Any] | None:
            cells.append("")
            generation = cells[generation_at].strip()
            model = cells[model_at].strip()
            if not generation or not model:
                raise RowProblem("missing")  # row() names the column
            prompt = whole_fast(cells[prompt_at], "tokens_prompt")
            completion = whole_fast(cells[completion_at], "tokens_completion")
            cached = whole_fast(cells[cached_at], "tokens_cached")
            reasoning = whole_fast(cells[reasoning_at], "tokens_reasoning")
            if cached > prompt or reasoning > completion:
                raise RowProblem("tokens to clamp")  # usage.openai_chat's rules, in row()
            tags = {}
            if value := cells[api_key_at].strip():
                tags["api_key"] = value
            if value := cells[app_at].strip():
                tags["app"] = value
            if value := cells[upstream_at].strip():
                tags["upstream"] = value
            if boolean_fast(cells[cancelled_at], "cancelled"):
                tags["cancelled"] = "true"
            return {
                "id": key_id(name, generation),
                "request_id": generation,
                "ts": timestamp_fast(cells[created_at], "created_at"),
                "provider": "openrouter",
                "model": model,
                "input_tokens": prompt,
                "output_tokens": completion,
                "cache_read_tokens": cached,
                "cache_write_tokens": 0,
                "cache_write_1h_tokens": 0,
                "reasoning_tokens": reasoning,
                "cost_usd": money(cells[cost_at], "cost_total"),
                "stream": boolean_fast(cells[streamed_at], "streamed"),
                "latency_ms": decimal_number_fast(cells[latency_at], "generation_time_ms"),
                "ttft_ms": decimal_number_fast(cells[ttft_at], "time_to_first_token_ms"),
                "user": cells[user_at].strip() or None,
                "tags": tags,
            }

        return fast


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
