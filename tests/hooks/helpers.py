"""Small helpers shared by the hook tests: finding events, published prices, token expectations."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

# Published list prices, USD per million tokens (OpenAI and Anthropic pricing pages), used to
# compute expected costs by hand: (uncached input, cached input read, 5m write, 1h write, output).
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), None, None, Decimal("0.60")),
    "gpt-4.1": (Decimal("2"), Decimal("0.50"), None, None, Decimal("8")),
    "o3-mini": (Decimal("1.10"), Decimal("0.55"), None, None, Decimal("4.40")),
    "text-embedding-3-small": (Decimal("0.02"), None, None, None, Decimal(0)),
    "claude-sonnet-4": (Decimal("3"), Decimal("0.30"), Decimal("3.75"), Decimal("6"), Decimal("15")),
}


def cost(model: str, *, input: int, output: int = 0, cache_read: int = 0, write_5m: int = 0,
         write_1h: int = 0) -> str:
    """Expected cost as the decimal string the store exports (input counts every input token)."""
    uncached, read, w5, w1, out = PRICES[model]
    uncached_tokens = input - cache_read - write_5m - write_1h
    total = uncached * uncached_tokens + out * output
    total += (read or 0) * cache_read + (w5 or 0) * write_5m + (w1 or 0) * write_1h
    return format((total / 1_000_000).normalize(), "f")


def tokens(event: dict[str, Any]) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
            "cache_write_1h_tokens", "reasoning_tokens")
    return {k: event[k] for k in keys}


def expect_tokens(input: int, output: int, cache_read: int = 0, cache_write: int = 0, cache_write_1h: int = 0,
                  reasoning: int = 0) -> dict[str, int]:
    return {"input_tokens": input, "output_tokens": output, "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write, "cache_write_1h_tokens": cache_write_1h,
            "reasoning_tokens": reasoning}


def one(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The single event whose fields equal `match`."""
    found = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one event matching {match}, found {len(found)} in {events}"
    return found[0]


def assert_hook_event(event: dict[str, Any]) -> None:
    """What every hook event carries: a uuid id, the hook source, a measured latency."""
    uuid.UUID(event["id"])
    assert event["source"] == "hook"
    assert event["latency_ms"] > 0


# The stub's usage after llmtray's convention (input counts all input, cache included).
CHAT = expect_tokens(1117, 46, cache_read=1024)
CHAT_COST = cost("gpt-4o-mini", input=1117, output=46, cache_read=1024)
REASONING = expect_tokens(75, 1186, reasoning=1024)
REASONING_COST = cost("o3-mini", input=75, output=1186)
RESPONSES = expect_tokens(2036, 87, cache_read=1920)
RESPONSES_COST = cost("gpt-4.1", input=2036, output=87, cache_read=1920)
EMBEDDINGS = expect_tokens(8, 0)
EMBEDDINGS_COST = cost("text-embedding-3-small", input=8)
# Anthropic reports input 12 *excluding* 3000 cache reads and 1500 cache writes (1000 5m + 500 1h)
MESSAGES = expect_tokens(12 + 3000 + 1500, 15, cache_read=3000, cache_write=1500, cache_write_1h=500)
MESSAGES_COST = cost("claude-sonnet-4", input=4512, output=15, cache_read=3000, write_5m=1000, write_1h=500)
