"""Each emitter of OTEL.md mapped from a real-format payload to the usage event llmtray stores:
tokens in llmtray's convention (§3), reported costs kept exactly, one event per call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmtray.core.events import parse_event
from llmtray.otel.decode import decode
from llmtray.otel.emitters import calls, provider_id
from llmtray.otel.records import RecentIds
from tests.otel import payloads as p


def events_of(payload: dict[str, Any], ancestors: Any = None) -> list[dict[str, Any]]:
    signal = "traces" if "resourceSpans" in payload else "logs"
    exported = decode(signal, "application/json", None, json.dumps(payload).encode())
    mapped, problems = calls(exported.records, ancestors)
    assert problems == []
    for m in mapped:
        parse_event(m.event)  # every mapped event is valid as it stands
    return [m.event for m in mapped]


def tokens(e: dict[str, Any]) -> tuple[int, ...]:
    return tuple(e.get(k, 0) for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                                        "output_tokens", "reasoning_tokens"))


def test_claude_code_log_adds_cache_to_input_and_keeps_its_cost() -> None:
    [e] = events_of(p.claude_code_log())
    assert (e["provider"], e["model"]) == ("anthropic", "claude-sonnet-4-20250514")
    assert tokens(e) == (387 + 12000 + 2000, 12000, 2000, 512, 0)
    assert e["cost_usd"] == "0.0523"  # the float's shortest repr, not 0.05229999…
    assert e["id"] == "anthropic:req_011CVzN3" and e["request_id"] == "req_011CVzN3"
    assert e["ts"] == "2026-01-02T10:33:20.123Z" and e["latency_ms"] == 2218
    assert e["project"] == "claude-code"
    assert e["tags"]["session"] == "3f1c9a2e-sess" and e["tags"]["team"] == "platform"
    assert e["tags"]["agent_version"] == "2.1.138" and e["tags"]["otel_profile"] == "claude-code-log"


def test_claude_code_tokens_as_strings_and_micros_cost() -> None:
    [e] = events_of(p.claude_code_log(input_tokens={"stringValue": "10"}, output_tokens={"intValue": "5"},
                                      cache_read_tokens={"stringValue": "0"}, cache_creation_tokens=0,
                                      cost_usd_micros=1234))
    assert tokens(e) == (10, 0, 0, 5, 0)
    assert e["cost_usd"] == "0.001234"


def test_claude_code_span_has_the_logs_id() -> None:
    [log_event] = events_of(p.claude_code_log())
    [span_event] = events_of(p.claude_code_span())
    assert span_event["id"] == log_event["id"]  # stored once, whichever arrives first
    assert tokens(span_event) == tokens(log_event)


def test_codex_string_counts_input_includes_cache_output_includes_reasoning() -> None:
    [e] = events_of(p.codex_log())
    assert (e["provider"], e["model"], e["operation"]) == ("openai", "gpt-5", "responses")
    assert tokens(e) == (15000, 12000, 0, 800, 300)  # tool_token_count is not added (meaning unclear)
    assert e["latency_ms"] == 3100 and e["tags"]["session"] == "0199-conv"
    assert e["id"].startswith("otel:codex:") and "cost_usd" not in e


def test_gemini_cli_counts_api_response_only_with_tool_and_thoughts() -> None:
    [e] = events_of(p.gemini_cli_logs())
    assert (e["provider"], e["model"]) == ("google", "gemini-2.5-pro")
    assert tokens(e) == (1000 + 50, 200, 0, 300 + 120, 120)


def test_genai_current_names() -> None:
    [e] = events_of(p.openai_v2_span())
    assert (e["provider"], e["model"]) == ("openai", "gpt-4o-mini-2024-07-18")  # response model wins
    assert tokens(e) == (1200, 1000, 0, 300, 100)
    assert e["id"] == "openai:chatcmpl-abc123" and e["service_tier"] == "default"
    assert e["env"] == "staging" and e["feature"] == "invoices" and e["project"] == "billing-api"
    assert e["latency_ms"] == 1500 and e["ts"] == "2026-01-02T10:33:20Z"


def test_openllmetry_legacy_names_and_no_total_added() -> None:
    [e] = events_of(p.openllmetry_legacy_span())
    assert (e["provider"], e["model"]) == ("openai", "gpt-4o-2024-08-06")
    assert tokens(e) == (100, 0, 0, 20, 0) and e["feature"] == "answer"


def test_openinference_counts_the_llm_span_not_the_chain() -> None:
    [e] = events_of(p.openinference_spans())
    assert tokens(e) == (500, 100, 0, 50, 0) and e["model"] == "gpt-4o-mini"
    assert e["id"] == f"otel:{p.TRACE}:d1d1d1d1d1d1d1d1"


def test_ai_sdk_counts_do_generate_once_from_one_family() -> None:
    [e] = events_of(p.ai_sdk_spans())
    assert (e["provider"], e["model"]) == ("anthropic", "claude-3-5-haiku-20241022")
    assert e["input_tokens"] == 900 and e["output_tokens"] == 120  # not 1800/240: one family only
    assert e["id"] == "anthropic:msg_01XFDUDYJgAACzvnptvVoYEL"
    assert e["ttft_ms"] == 320.5 and e["feature"] == "chat-route"


def test_pydantic_ai_agent_aggregate_skipped_chat_cost_reported() -> None:
    [e] = events_of(p.pydantic_ai_spans())
    assert e["model"] == "claude-sonnet-4-20250514" and e["cost_usd"] == "0.0042"
    assert tokens(e) == (2000, 1500, 0, 200, 0) and e["tags"]["session"] == "conv-9"


def test_nested_framework_span_keeps_the_innermost() -> None:
    [e] = events_of(p.nested_framework_spans())
    assert e["id"] == f"otel:{p.TRACE}:aa11aa11aa11aa11" and e["input_tokens"] == 700


def test_parent_in_a_later_batch_is_not_counted_on_top() -> None:
    payload = p.nested_framework_spans()
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    outer, inner = spans
    known = RecentIds(100)
    spans[:] = [inner]
    first = events_of(payload, known)
    spans[:] = [outer]
    second = events_of(payload, known)
    assert len(first) == 1 and second == []


def test_exclusive_input_is_corrected_and_marked() -> None:
    [e] = events_of(p.logfire_exclusive_span())
    assert tokens(e) == (3 + 7166, 7166, 0, 40, 0)
    assert e["tags"]["otel_profile"] == "genai+input+cache"


def test_span_error_status_is_an_error_event() -> None:
    payload = p.openai_v2_span()
    s = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["status"] = {"code": 2, "message": "RateLimitError: 429"}
    [e] = events_of(payload)
    assert e["status"] == "error" and e["error"] == "RateLimitError: 429"


def test_non_call_records_give_nothing() -> None:
    plain = p.traces("web", [p.span("GET /", "0102030405060708", {"http.method": "GET"})])
    prompt = p.logs("claude-code", [p.log_record({"event.name": "user_prompt", "prompt_length": "42"})],
                    "com.anthropic.claude_code.events")
    assert events_of(plain) == [] and events_of(prompt) == []


def test_content_attributes_never_reach_the_event() -> None:
    payload = p.openai_v2_span()
    s = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["attributes"] += p.attrs({"gen_ai.input.messages": "SECRET PROMPT", "gen_ai.output.messages": "SECRET ANSWER"})
    [e] = events_of(payload)
    assert "SECRET" not in json.dumps(e)


def test_unknown_model_is_kept_for_unpriced_not_dropped() -> None:
    payload = p.openai_v2_span()
    s = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["attributes"] = [a for a in s["attributes"] if a["key"] != "gen_ai.response.model"]
    s["attributes"] += p.attrs({"gen_ai.request.model": "acme-secret-model-9"})
    [e] = events_of(payload)
    assert e["model"] == "acme-secret-model-9" and "cost_usd" not in e


@pytest.mark.parametrize(("value", "model", "expected"), [
    ("OpenAI", None, "openai"), ("openai.responses", None, "openai"), ("anthropic.messages", None, "anthropic"),
    ("az.ai.openai", None, "azure"), ("aws.bedrock", None, "aws"), ("gcp.vertex_ai", None, "google"),
    ("mistral_ai", None, "mistral"), ("x_ai", None, "xai"), ("langchain", "claude-3-haiku", "anthropic"),
    ("spring_ai", "gpt-4o", "openai"), (None, "gemini-2.0-flash", "google"), (None, "my-model", "unknown"),
])
def test_provider_ids(value: str | None, model: str | None, expected: str) -> None:
    assert provider_id(value, model) == expected
