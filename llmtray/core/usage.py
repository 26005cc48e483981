"""Provider usage blocks → the event's token fields, written once for hooks, proxy and importers.

Providers disagree on what "input tokens" means (Anthropic excludes cache tokens, OpenAI and
Gemini include them; Gemini's thinking tokens sit outside its candidates count). Every caller
goes through these functions so the convention of DESIGN §3 — `input_tokens` counts all input,
`output_tokens` all output — is applied in exactly one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmtray.core.errors import LLMTrayError

Tokens = dict[str, int]

# The tag hooks and the proxy put on an event whose usage block was not what it should be, and
# the values that mean the provider's token counts are unknown (an OpenAI stream without
# `stream_options.include_usage` reports none). Such a call cost something nobody knows: it is
# unpriced — out of the totals, counted and named — never "ok, $0.00".
USAGE_TAG = "llmtray.usage"
NO_USAGE = ("missing", "malformed", "unreadable")


class UsageFormatError(LLMTrayError, ValueError):
    """A provider's usage block has a value of the wrong type; the message names its path."""


def _get(block: Mapping[str, Any] | None, path: str) -> int:
    """A non-negative integer at a dotted path; missing or null counts as 0."""
    value: Any = block
    for part in path.split("."):
        if value is None:
            return 0
        if not isinstance(value, Mapping):
            raise UsageFormatError(f"usage.{path}: expected an object at {part!r}, got {type(value).__name__}")
        value = value.get(part)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise UsageFormatError(f"usage.{path}: expected a token count, got {value!r}")
    if value < 0 or (isinstance(value, float) and not value.is_integer()):
        raise UsageFormatError(f"usage.{path}: expected a non-negative whole number, got {value!r}")
    return int(value)


def _clamped(tokens: Tokens) -> Tokens:
    """Keep subsets within totals even when a provider's numbers are inconsistent, so a slightly
    odd response is still recorded rather than rejected (the totals are what is billed)."""
    tokens["cache_write_1h_tokens"] = min(tokens["cache_write_1h_tokens"], tokens["cache_write_tokens"])
    cache = tokens["cache_read_tokens"] + tokens["cache_write_tokens"]
    tokens["input_tokens"] = max(tokens["input_tokens"], cache)
    tokens["reasoning_tokens"] = min(tokens["reasoning_tokens"], tokens["output_tokens"])
    return tokens


def _tokens(inp: int, out: int, cache_read: int = 0, cache_write: int = 0, write_1h: int = 0, reasoning: int = 0) -> Tokens:
    return _clamped({
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": write_1h,
        "reasoning_tokens": reasoning,
    })


def openai_chat(usage: Mapping[str, Any] | None) -> Tokens:
    """Chat Completions (and OpenRouter, Groq, DeepSeek…): `prompt_tokens` already includes cached."""
    return _tokens(
        _get(usage, "prompt_tokens"),
        _get(usage, "completion_tokens"),
        cache_read=_get(usage, "prompt_tokens_details.cached_tokens") or _get(usage, "prompt_cache_hit_tokens"),
        reasoning=_get(usage, "completion_tokens_details.reasoning_tokens"),
    )


def openai_responses(usage: Mapping[str, Any] | None) -> Tokens:
    """Responses API and embeddings (`input_tokens` / `prompt_tokens`, cached inside input)."""
    if usage is not None and "input_tokens" not in usage and "prompt_tokens" in usage:
        return openai_chat(usage)  # embeddings report {prompt_tokens, total_tokens}
    return _tokens(
        _get(usage, "input_tokens"),
        _get(usage, "output_tokens"),
        cache_read=_get(usage, "input_tokens_details.cached_tokens"),
        reasoning=_get(usage, "output_tokens_details.reasoning_tokens"),
    )


def anthropic(usage: Mapping[str, Any] | None) -> Tokens:
    """Messages API: `input_tokens` excludes cache reads and writes, so they are added back."""
    uncached = _get(usage, "input_tokens")
    cache_read = _get(usage, "cache_read_input_tokens")
    cache_write = _get(usage, "cache_creation_input_tokens")
    write_5m = _get(usage, "cache_creation.ephemeral_5m_input_tokens")
    write_1h = _get(usage, "cache_creation.ephemeral_1h_input_tokens")
    cache_write = max(cache_write, write_5m + write_1h)
    return _tokens(uncached + cache_read + cache_write, _get(usage, "output_tokens"), cache_read, cache_write, write_1h)


def gemini(metadata: Mapping[str, Any] | None) -> Tokens:
    """Gemini `usageMetadata`: thinking tokens are billed as output but counted outside candidates."""
    thoughts = _get(metadata, "thoughtsTokenCount")
    return _tokens(
        _get(metadata, "promptTokenCount") + _get(metadata, "toolUsePromptTokenCount"),
        _get(metadata, "candidatesTokenCount") + thoughts,
        cache_read=_get(metadata, "cachedContentTokenCount"),
        reasoning=thoughts,
    )


_TIERS = {
    "default": "default",
    "standard": "default",
    "standard_only": "default",
    "auto": "default",
    "on_demand": "default",
    "batch": "batch",
    "flex": "flex",
    "priority": "priority",
    "scale": "priority",
}


def service_tier(value: Any) -> str | None:
    """Map a provider's service tier name onto the event's four; unknown names are dropped."""
    return _TIERS.get(value.lower()) if isinstance(value, str) else None
