"""OTLP payloads in the shapes real emitters send (OTEL.md §3–4), as OTLP/JSON dicts, and their
protobuf twins. Numbers are written the way each emitter writes them (OTel JS: intValue as a JSON
number; Codex: token counts as stringValue; canonical proto3 JSON: int64 as strings)."""

from __future__ import annotations

import base64
import copy
from typing import Any

T0 = 1_767_350_000_000_000_000  # 2026-01-02T10:33:20Z in Unix ns
TRACE = "5b8efff798038103d269b633813fc60c"


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": value}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, dict):
        v = value  # an AnyValue written by hand
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [attr(k, v) for k, v in d.items()]


def span(name: str, span_id: str, a: dict[str, Any], *, parent: str = "", start: int = T0,
         duration_ms: int = 1500, status: int = 0, trace: str = TRACE) -> dict[str, Any]:
    s: dict[str, Any] = {"traceId": trace, "spanId": span_id, "name": name, "kind": 3,
                         "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + duration_ms * 1_000_000),
                         "attributes": attrs(a), "status": {"code": status}}
    if parent:
        s["parentSpanId"] = parent
    return s


def traces(service: str, spans: list[dict[str, Any]], scope: str = "test", resource: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": attrs({"service.name": service, **(resource or {})})},
        "scopeSpans": [{"scope": {"name": scope}, "spans": spans}],
    }]}


def logs(service: str, records: list[dict[str, Any]], scope: str, resource: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": attrs({"service.name": service, **(resource or {})})},
        "scopeLogs": [{"scope": {"name": scope}, "logRecords": records}],
    }]}


def log_record(a: dict[str, Any], *, body: str | None = None, time: int = T0) -> dict[str, Any]:
    r: dict[str, Any] = {"timeUnixNano": str(time), "observedTimeUnixNano": str(time), "attributes": attrs(a)}
    if body is not None:
        r["body"] = {"stringValue": body}
    return r


# --- emitters -----------------------------------------------------------------------------------

def claude_code_log(request_id: str = "req_011CVzN3", **over: Any) -> dict[str, Any]:
    """A Claude Code `api_request` event as v2.1.138 exports it (intValue numbers, name in the body
    and in `event.name`), tokens in Anthropic's convention (input excludes cache)."""
    a = {"event.name": "api_request", "event.timestamp": "2026-01-02T10:33:20.123Z", "event.sequence": 7,
         "session.id": "3f1c9a2e-sess", "prompt.id": "p-1", "model": "claude-sonnet-4-20250514",
         "input_tokens": 387, "output_tokens": 512, "cache_read_tokens": 12000, "cache_creation_tokens": 2000,
         "cost_usd": 0.0523, "duration_ms": 2218, "request_id": request_id, "speed": "normal"}
    a.update(over)
    return logs("claude-code", [log_record(a, body="claude_code.api_request")], "com.anthropic.claude_code.events",
                {"service.version": "2.1.138", "team": "platform"})


def claude_code_span(request_id: str = "req_011CVzN3") -> dict[str, Any]:
    """The beta `claude_code.llm_request` span of the same request (same request id)."""
    return traces("claude-code", [span("claude_code.llm_request", "a1a1a1a1a1a1a1a1", {
        "model": "claude-sonnet-4-20250514", "gen_ai.system": "anthropic", "input_tokens": 387,
        "output_tokens": 512, "cache_read_tokens": 12000, "cache_creation_tokens": 2000,
        "request_id": request_id, "gen_ai.response.id": request_id, "session.id": "3f1c9a2e-sess"},
        duration_ms=2225)], "com.anthropic.claude_code.tracing")


def codex_log() -> dict[str, Any]:
    """Codex `codex.sse_event` / `response.completed`: counts as stringValue (Rust Display),
    cached and reasoning as intValue."""
    a = {"event.name": "codex.sse_event", "event.kind": "response.completed",
         "event.timestamp": "2026-01-02T10:40:00.000Z", "conversation.id": "0199-conv", "model": "gpt-5",
         "input_token_count": {"stringValue": "15000"}, "output_token_count": {"stringValue": "800"},
         "cached_token_count": 12000, "reasoning_token_count": 300, "tool_token_count": {"stringValue": "40"},
         "duration_ms": {"stringValue": "3100"}}
    return logs("codex_cli_rs", [log_record(a)], "codex_otel", {"env": "dev"})


def gemini_cli_logs() -> dict[str, Any]:
    """Gemini CLI's two records per response: `api_response` (counted) and its gen_ai twin (not)."""
    response = {"event.name": "gemini_cli.api_response", "event.timestamp": "2026-01-02T11:00:00.000Z",
                "session.id": "g-sess", "prompt_id": "g-p1", "model": "gemini-2.5-pro", "status_code": 200,
                "duration_ms": 4100, "input_token_count": 1000, "output_token_count": 300,
                "cached_content_token_count": 200, "thoughts_token_count": 120, "tool_token_count": 50,
                "total_token_count": 1470}
    twin = {"event.name": "gen_ai.client.inference.operation.details", "gen_ai.request.model": "gemini-2.5-pro",
            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 300, "gen_ai.response.id": "g-resp-1"}
    return logs("gemini-cli", [log_record(response), log_record(twin)], "gemini-cli")


def openai_v2_span(response_id: str = "chatcmpl-abc123") -> dict[str, Any]:
    """opentelemetry-instrumentation-openai-v2 (GenAI ≥1.40 names; input includes cache reads)."""
    return traces("billing-api", [span("chat gpt-4o-mini", "b1b1b1b1b1b1b1b1", {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": response_id,
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 300, "gen_ai.usage.reasoning.output_tokens": 100,
        "openai.response.service_tier": "default"})], "opentelemetry.instrumentation.openai_v2",
        {"deployment.environment.name": "staging", "llmtray.feature": "invoices"})


def openllmetry_legacy_span() -> dict[str, Any]:
    """OpenLLMetry 2024-04→2025-10: legacy names, capitalised system, a total that must not be added."""
    return traces("rag-app", [span("openai.chat", "c1c1c1c1c1c1c1c1", {
        "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 20, "llm.usage.total_tokens": 120,
        "llm.request.type": "chat", "traceloop.workflow.name": "answer"})], "opentelemetry.instrumentation.openai")


def openinference_spans() -> dict[str, Any]:
    """OpenInference: a CHAIN span (not counted) over an LLM span (counted)."""
    return traces("phoenix-app", [
        span("RetrievalQA", "d0d0d0d0d0d0d0d0", {"openinference.span.kind": "CHAIN",
                                                 "llm.token_count.prompt": 500, "llm.token_count.completion": 50}),
        span("ChatOpenAI", "d1d1d1d1d1d1d1d1", {
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
            "llm.token_count.prompt": 500, "llm.token_count.prompt_details.cache_read": 100,
            "llm.token_count.completion": 50, "llm.token_count.total": 550, "session.id": "oi-sess"},
            parent="d0d0d0d0d0d0d0d0"),
    ], "openinference.instrumentation.langchain")


def ai_sdk_spans() -> dict[str, Any]:
    """Vercel AI SDK v6: the ai.generateText parent repeats the child's usage; the doGenerate child
    carries it under both ai.usage.* and gen_ai.usage.* (same numbers)."""
    usage = {"ai.usage.inputTokens": 900, "ai.usage.outputTokens": 120, "ai.usage.cachedInputTokens": 400}
    return traces("next-app", [
        span("ai.generateText", "e0e0e0e0e0e0e0e0", {"ai.operationId": "ai.generateText",
                                                     "ai.model.id": "claude-3-5-haiku-20241022", **usage}),
        span("ai.generateText.doGenerate", "e1e1e1e1e1e1e1e1", {
            "ai.operationId": "ai.generateText.doGenerate", "ai.model.provider": "anthropic.messages",
            "ai.model.id": "claude-3-5-haiku-20241022", "gen_ai.system": "anthropic.messages",
            "gen_ai.request.model": "claude-3-5-haiku-20241022", "gen_ai.response.id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 120, **usage,
            "ai.response.msToFirstChunk": 320.5, "ai.telemetry.functionId": "chat-route"},
            parent="e0e0e0e0e0e0e0e0"),
    ], "ai")


def pydantic_ai_spans() -> dict[str, Any]:
    """Pydantic AI / Logfire: invoke_agent aggregates (with operation.cost); the chat span counts,
    with its own reported cost."""
    return traces("support-bot", [
        span("invoke_agent support", "f0f0f0f0f0f0f0f0", {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
            "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 200, "operation.cost": 0.0042}),
        span("chat claude-sonnet-4-0", "f1f1f1f1f1f1f1f1", {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-0", "gen_ai.response.model": "claude-sonnet-4-20250514",
            "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.details.cache_read_tokens": 1500,
            "gen_ai.usage.output_tokens": 200, "operation.cost": 0.0042, "gen_ai.response.id": "msg_pyd_1",
            "gen_ai.conversation.id": "conv-9"}, parent="f0f0f0f0f0f0f0f0"),
    ], "pydantic-ai")


def nested_framework_spans() -> dict[str, Any]:
    """LangChain's LLM span wrapping the OpenAI SDK span of the same call: keep the innermost."""
    return traces("lc-app", [
        span("ChatOpenAI.chat", "aa00aa00aa00aa00", {
            "gen_ai.system": "langchain", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 700, "gen_ai.usage.output_tokens": 70}),
        span("openai.chat", "aa11aa11aa11aa11", {
            "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 700, "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.output_tokens": 70}, parent="aa00aa00aa00aa00"),
    ], "opentelemetry.instrumentation.langchain")


def logfire_exclusive_span() -> dict[str, Any]:
    """Logfire's Claude Agent SDK integration: input written *exclusive* of cache, against the spec."""
    return traces("agent", [span("chat claude-sonnet-4-0", "ab00ab00ab00ab00", {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-0", "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.cache_read.input_tokens": 7166, "gen_ai.usage.output_tokens": 40})], "logfire")


# --- protobuf twins -----------------------------------------------------------------------------

def _b64_ids(obj: Any) -> Any:
    """OTLP/JSON ids are hex; json_format reads bytes fields as base64 (OTEL.md §1.3)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                out[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                out[k] = _b64_ids(v)
        return out
    if isinstance(obj, list):
        return [_b64_ids(v) for v in obj]
    return obj


def to_protobuf(payload: dict[str, Any]) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    cls = ExportTraceServiceRequest if "resourceSpans" in payload else ExportLogsServiceRequest
    message = json_format.ParseDict(_b64_ids(copy.deepcopy(payload)), cls())
    return message.SerializeToString()


def point(value: float | int, a: dict[str, Any], *, start: int, end: int) -> dict[str, Any]:
    p: dict[str, Any] = {"startTimeUnixNano": str(start), "timeUnixNano": str(end), "attributes": attrs(a)}
    p["asInt" if isinstance(value, int) else "asDouble"] = str(value) if isinstance(value, int) else value
    return p


def claude_code_metrics(session: str = "3f1c9a2e-sess", *, start: int = T0, end: int = T0 + 60 * 10**9,
                        temporality: int = 1, scale: int = 1) -> dict[str, Any]:
    """Claude Code's two usage metrics for one model over one export interval (delta by default)."""
    common = {"session.id": session, "model": "claude-sonnet-4-20250514", "user.id": "u-anon"}
    tokens = [point(n * scale, {**common, "type": kind}, start=start, end=end)
              for kind, n in (("input", 400), ("output", 900), ("cacheRead", 30000), ("cacheCreation", 1000))]
    cost = [point(0.25 * scale, common, start=start, end=end)]
    metric = lambda name, pts, unit: {"name": name, "unit": unit,  # noqa: E731
                                      "sum": {"aggregationTemporality": temporality, "isMonotonic": True,
                                              "dataPoints": pts}}
    return {"resourceMetrics": [{
        "resource": {"attributes": attrs({"service.name": "claude-code", "service.version": "2.1.138"})},
        "scopeMetrics": [{"scope": {"name": "com.anthropic.claude_code"}, "metrics": [
            metric("claude_code.token.usage", tokens, "tokens"), metric("claude_code.cost.usage", cost, "USD"),
            metric("claude_code.session.count", [point(1, common, start=start, end=end)], "count")]}]}]}


def genai_histogram(service: str = "copilot-chat") -> dict[str, Any]:
    """`gen_ai.client.token.usage`, the GenAI histogram (Copilot and others emit only this)."""
    common = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat"}
    pts = [{"startTimeUnixNano": str(T0), "timeUnixNano": str(T0 + 60 * 10**9), "count": "3", "sum": total,
            "attributes": attrs({**common, "gen_ai.token.type": kind})}
           for kind, total in (("input", 3000.0), ("output", 450.0))]
    return {"resourceMetrics": [{
        "resource": {"attributes": attrs({"service.name": service})},
        "scopeMetrics": [{"scope": {"name": "copilot"}, "metrics": [{
            "name": "gen_ai.client.token.usage", "unit": "{token}",
            "histogram": {"aggregationTemporality": 1, "dataPoints": pts}}]}]}]}
