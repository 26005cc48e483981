"""Metrics as a fallback only: counted where no per-request record of the session exists, never on
top; cumulative series turned into deltas; retries stored once."""

from __future__ import annotations

import json

from llmtray.otel.decode import decode
from llmtray.otel.metrics import MetricsFallback
from tests.otel import payloads as p


def records(payload: dict) -> list:
    return decode("metrics", "application/json", None, json.dumps(payload).encode()).records


def test_claude_code_metrics_become_one_interval_event() -> None:
    [event], problems = MetricsFallback(lambda s: False).events(records(p.claude_code_metrics()))
    assert problems == []
    assert (event["provider"], event["model"]) == ("anthropic", "claude-sonnet-4-20250514")
    assert (event["input_tokens"], event["cache_read_tokens"], event["cache_write_tokens"], event["output_tokens"]) \
        == (400 + 30000 + 1000, 30000, 1000, 900)
    assert event["cost_usd"] == "0.25" and event["tags"] == {"otel_profile": "claude-code-metrics",
                                                            "session": "3f1c9a2e-sess"}
    assert event["ts"] == "2026-01-02T10:34:20Z" and event["project"] == "claude-code"


def test_same_interval_again_has_the_same_id() -> None:
    fallback = MetricsFallback(lambda s: False)
    [a], _ = fallback.events(records(p.claude_code_metrics()))
    [b], _ = fallback.events(records(p.claude_code_metrics()))
    assert a["id"] == b["id"]


def test_not_counted_when_the_session_has_per_request_records() -> None:
    asked = []
    fallback = MetricsFallback(lambda s: asked.append(s) or s == "3f1c9a2e-sess")
    assert fallback.events(records(p.claude_code_metrics()))[0] == []
    assert asked == ["3f1c9a2e-sess"]
    assert len(fallback.events(records(p.claude_code_metrics(session="other")))[0]) == 1


def test_not_counted_for_a_service_that_sent_per_request_records() -> None:
    fallback = MetricsFallback(lambda s: False)
    fallback.services_with_requests.add("claude-code")
    assert fallback.events(records(p.claude_code_metrics(session="never-logged")))[0] == []


def test_cumulative_series_counts_rises_only() -> None:
    fallback = MetricsFallback(lambda s: False, started_ns=p.T0 + 1)  # the series began before we started
    minute = 60 * 10**9
    first = fallback.events(records(p.claude_code_metrics(temporality=2, end=p.T0 + minute)))[0]
    assert first == []  # a baseline: its value includes usage from before this receiver listened
    [rise] = fallback.events(records(p.claude_code_metrics(temporality=2, end=p.T0 + 2 * minute, scale=3)))[0]
    assert rise["output_tokens"] == 2 * 900 and rise["cost_usd"] == "0.5"
    # a new start time is a reset (a new process): its whole value is new usage
    [reset] = fallback.events(records(p.claude_code_metrics(temporality=2, start=p.T0 + 5 * minute,
                                                            end=p.T0 + 6 * minute)))[0]
    assert reset["output_tokens"] == 900


def test_genai_histogram_sums_and_counts_requests() -> None:
    [event], _ = MetricsFallback(lambda s: False).events(records(p.genai_histogram()))
    assert (event["provider"], event["model"], event["requests"]) == ("openai", "gpt-4o", 3)
    assert (event["input_tokens"], event["output_tokens"]) == (3000, 450)


def test_gemini_cli_genai_twin_metric_is_ignored() -> None:
    assert MetricsFallback(lambda s: False).events(records(p.genai_histogram("gemini-cli")))[0] == []
