"""The OTLP receiver on the real ingest server over a real socket, writing the real SQLite file:
answers per OTLP (encodings, partial_success, Status bodies), idempotency, hostile bodies."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtray.ingest.service import IngestService
from llmtray.otel.receiver import status_protobuf
from tests.otel import payloads as p

JSON = {"Content-Type": "application/json"}
PB = {"Content-Type": "application/x-protobuf"}


def rows(service: IngestService) -> list[dict[str, Any]]:
    conn = sqlite3.connect(service.paths.db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM event ORDER BY id")]
    finally:
        conn.close()


def post(client: httpx.Client, path: str, payload: dict[str, Any], *, protobuf: bool = False,
         gz: bool = False) -> httpx.Response:
    body = p.to_protobuf(payload) if protobuf else json.dumps(payload).encode()
    headers = dict(PB if protobuf else JSON)
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return client.post(path, content=body, headers=headers)


def test_json_logs_stored_after_commit_with_otlp_answer(client: httpx.Client, service: IngestService) -> None:
    r = post(client, "/v1/logs", p.claude_code_log())
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == {}
    [row] = rows(service)  # answered only after the commit: the row is there now
    assert row["source"] == "otel" and row["event_id"] == "anthropic:req_011CVzN3"
    assert row["input_tokens"] == 14387 and row["cost_nanos"] == 52_300_000 and row["cost_source"] == "reported"


def test_protobuf_gzip_traces(client: httpx.Client, service: IngestService) -> None:
    r = post(client, "/v1/traces", p.openai_v2_span(), protobuf=True, gz=True)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf" and r.content == b""
    [row] = rows(service)
    assert (row["model"], row["input_tokens"], row["cache_read_tokens"]) == ("gpt-4o-mini-2024-07-18", 1200, 1000)


def test_redelivery_and_the_same_call_as_log_and_span_store_once(client: httpx.Client,
                                                                service: IngestService) -> None:
    for _ in range(2):
        assert post(client, "/v1/logs", p.claude_code_log()).status_code == 200
    assert post(client, "/v1/traces", p.claude_code_span(), protobuf=True).status_code == 200
    assert post(client, "/v1/traces", p.ai_sdk_spans()).status_code == 200
    assert post(client, "/v1/traces", p.ai_sdk_spans(), protobuf=True).status_code == 200
    assert sorted(r["event_id"] for r in rows(service)) == ["anthropic:msg_01XFDUDYJgAACzvnptvVoYEL",
                                                             "anthropic:req_011CVzN3"]


def test_priced_like_the_same_call_through_the_events_api(client: httpx.Client, service: IngestService) -> None:
    assert post(client, "/v1/traces", p.openai_v2_span()).status_code == 200
    same = {"id": "api-twin", "provider": "openai", "model": "gpt-4o-mini-2024-07-18", "ts": "2026-01-02T10:33:20Z",
            "input_tokens": 1200, "cache_read_tokens": 1000, "output_tokens": 300, "reasoning_tokens": 100,
            "service_tier": "default"}
    assert client.post("/v1/events", json=same).status_code == 200
    otel, api = sorted(rows(service), key=lambda r: r["source"] != "otel")
    assert otel["cost_source"] == api["cost_source"] == "computed"
    assert otel["cost_nanos"] == api["cost_nanos"] > 0


def test_undecodable_protobuf_is_a_400_with_a_status_body(client: httpx.Client, service: IngestService) -> None:
    r = client.post("/v1/traces", content=b"\x0a\xff\xff\xff\xff\x0f garbage", headers=PB)
    assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
    assert r.content.startswith(status_protobuf(3, "")[:2]) and b"not a valid OTLP traces request" in r.content
    assert rows(service) == []


def test_json_that_is_not_otlp(client: httpx.Client, service: IngestService) -> None:
    r = client.post("/v1/logs", json={"events": [{"provider": "openai", "model": "x"}]})
    assert r.status_code == 400 and r.json()["code"] == 3 and "expected 'resourceLogs'" in r.json()["message"]
    assert rows(service) == []


def test_gzip_bomb_413_and_the_server_keeps_answering(client: httpx.Client, service: IngestService) -> None:
    bomb = gzip.compress(b"\0" * (100 * 2**20), compresslevel=9)  # ~100 KB inflating to 100 MiB
    started = time.monotonic()
    r = client.post("/v1/traces", content=bomb, headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and b"inflates to more than" in r.content
    assert client.get("/v1/health").status_code == 200
    assert time.monotonic() - started < 20
    assert rows(service) == []


def test_grpc_and_unknown_encodings_are_415(client: httpx.Client) -> None:
    r = client.post("/v1/traces", content=b"\0\0\0\0\0", headers={"Content-Type": "application/grpc"})
    assert r.status_code == 415 and "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in r.json()["message"]
    r = client.post("/v1/traces", content=b"{}", headers={**JSON, "Content-Encoding": "br"})
    assert r.status_code == 415


def test_token_required(service: IngestService) -> None:
    r = httpx.post(f"{service.url}/v1/traces", content=json.dumps(p.openai_v2_span()), headers=JSON)
    assert r.status_code == 401 and rows(service) == []


def test_one_bad_call_is_a_partial_success_the_rest_stored(client: httpx.Client, service: IngestService) -> None:
    payload = p.openai_v2_span()
    bad = p.span("chat gpt-4o", "0b0b0b0b0b0b0b0b", {"gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai",
                                                     "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 1})
    absurd = p.span("chat gpt-4o", "0c0c0c0c0c0c0c0c", {"gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai",
                                                        "gen_ai.usage.input_tokens": 10**18,
                                                        "gen_ai.usage.output_tokens": 1})
    payload["resourceSpans"][0]["scopeSpans"][0]["spans"] += [bad, absurd]
    r = post(client, "/v1/traces", payload)
    assert r.status_code == 200
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "gen_ai.usage.input_tokens must be ≥ 0" in partial["errorMessage"]
    assert "input_tokens" in partial["errorMessage"].split(";")[1]
    assert [r["event_id"] for r in rows(service)] == ["openai:chatcmpl-abc123"]


def test_only_bad_calls_is_a_400_nothing_stored(client: httpx.Client, service: IngestService) -> None:
    payload = p.traces("x", [p.span("chat", "0d0d0d0d0d0d0d0d", {"gen_ai.system": "openai",
                                                                 "gen_ai.usage.input_tokens": 5})])
    r = post(client, "/v1/traces", payload, protobuf=True)
    assert r.status_code == 400 and b"no model attribute" in r.content
    assert rows(service) == []


def test_metrics_count_only_where_no_per_request_record_exists(client: httpx.Client,
                                                               service: IngestService) -> None:
    assert post(client, "/v1/logs", p.claude_code_log()).status_code == 200  # session 3f1c9a2e-sess, via logs
    other = p.claude_code_metrics(session="metrics-only")
    other["resourceMetrics"][0]["resource"]["attributes"] = p.attrs({"service.name": "claude-code-ci"})
    for payload in (p.claude_code_metrics(), other, other):  # the logged session, then one seen only in metrics
        r = client.post("/v1/metrics", json=payload)
        assert r.status_code == 200 and r.json() == {}
    by_profile = sorted((json.loads(r["tags"])["otel_profile"], r["input_tokens"]) for r in rows(service))
    assert by_profile == [("claude-code-log", 14387), ("claude-code-metrics", 31400)]


def test_a_real_exporter_sends_spans_and_logs(service: IngestService) -> None:
    """The OpenTelemetry SDK's own OTLP/HTTP exporters, pointed at llmtray as a user would."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    headers = {"Authorization": f"Bearer {service.token}"}
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "checkout",
                                                               "deployment.environment.name": "prod"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{service.url}/v1/traces",
                                                                            headers=headers)))
    tracer = tracer_provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    with tracer.start_as_current_span("invoke_agent planner") as agent:
        agent.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 999,
                              "gen_ai.usage.output_tokens": 99})
        with tracer.start_as_current_span("chat gpt-4o-mini") as call:
            call.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-sdk-1",
                                 "gen_ai.usage.input_tokens": 640, "gen_ai.usage.output_tokens": 64})
    tracer_provider.shutdown()

    logger_provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(f"{service.url}/v1/logs",
                                                                                      headers=headers)))
    logger_provider.get_logger("com.anthropic.claude_code.events").emit(
        body="claude_code.api_request", event_name="claude_code.api_request",
        attributes={"event.name": "api_request", "model": "claude-haiku-4-5", "input_tokens": 10,
                    "output_tokens": 20, "cache_read_tokens": 300, "cache_creation_tokens": 0,
                    "cost_usd": 0.00072, "request_id": "req_sdk_1", "session.id": "s-1"})
    logger_provider.shutdown()

    by_id = {r["event_id"]: r for r in rows(service)}
    assert set(by_id) == {"openai:chatcmpl-sdk-1", "anthropic:req_sdk_1"}
    call_row = by_id["openai:chatcmpl-sdk-1"]
    assert (call_row["input_tokens"], call_row["project"], call_row["env"]) == (640, "checkout", "prod")
    log_row = by_id["anthropic:req_sdk_1"]
    assert (log_row["input_tokens"], log_row["cache_read_tokens"], log_row["cost_nanos"]) == (310, 300, 720_000)


def test_503_with_retry_after_when_sqlite_refuses_then_the_retry_stores(client: httpx.Client,
                                                                       service: IngestService) -> None:
    conn = sqlite3.connect(service.paths.db)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON event_row BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    conn.commit()
    r = post(client, "/v1/traces", p.openai_v2_span(), protobuf=True)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and b"disk says no" in r.content
    assert rows(service) == []
    conn.execute("DROP TRIGGER refuse")
    conn.commit()
    conn.close()
    assert post(client, "/v1/traces", p.openai_v2_span(), protobuf=True).status_code == 200  # the exporter's retry
    assert len(rows(service)) == 1


def test_a_claude_code_call_read_from_its_log_files_first_is_not_stored_again(client: httpx.Client,
                                                                            service: IngestService,
                                                                            tmp_path: Path) -> None:
    """The agents' tailer keys Claude Code calls by `message.id`; Claude Code's OTLP records know only
    the request id. The same call from both must be one event, whichever path comes first."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    project = home / ".claude" / "projects" / "-home-dev-shop"
    project.mkdir(parents=True)
    line = {"type": "assistant", "sessionId": "3f1c9a2e-sess", "requestId": "req_011CVzN3", "cwd": "/home/dev/shop",
            "timestamp": "2026-01-02T10:33:20.123Z", "uuid": "u1", "version": "2.1.138",
            "message": {"id": "msg_01Files", "type": "message", "role": "assistant",
                        "model": "claude-sonnet-4-20250514", "stop_reason": "end_turn",
                        "usage": {"input_tokens": 387, "output_tokens": 512, "cache_read_input_tokens": 12000,
                                  "cache_creation_input_tokens": 2000}}}
    (project / "3f1c9a2e-sess.jsonl").write_text(json.dumps(line) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "CODEX_", "GEMINI_", "XDG_DATA"))}
    subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(service.paths.data), "agents", "scan"],
                   env={**env, "HOME": str(home)}, check=True, capture_output=True, timeout=120)
    assert [r["event_id"] for r in rows(service)] == ["anthropic:msg_01Files"]
    r = post(client, "/v1/logs", p.claude_code_log())  # request req_011CVzN3 of session 3f1c9a2e-sess
    assert r.status_code == 200
    assert [r["event_id"] for r in rows(service)] == ["anthropic:msg_01Files"]
    assert post(client, "/v1/traces", p.claude_code_span()).status_code == 200  # its span: the same call
    assert len(rows(service)) == 1
