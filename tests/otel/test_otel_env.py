"""`llmtray otel-env` prints settings that really work: an SDK configured only by them reaches the
running llmtray and its call is stored."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib

import pytest

from llmtray.ingest.service import IngestService
from tests.otel.test_receiver import rows


def otel_env(service: IngestService, tool: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(service.paths.data), "otel-env", tool],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout


def exported_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
    return env


SDK_SCRIPT = """
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
provider = TracerProvider(resource=Resource.create({"service.name": "env-test"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # everything from OTEL_* variables
with provider.get_tracer("t").start_as_current_span("chat gpt-4o-mini") as s:
    s.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-env",
                      "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7})
provider.shutdown()
"""


def test_generic_settings_drive_a_real_sdk(service: IngestService) -> None:
    env = exported_env(otel_env(service, "generic"))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == service.url
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    subprocess.run([sys.executable, "-c", SDK_SCRIPT], env={**os.environ, **env}, check=True, timeout=60)
    [row] = rows(service)
    assert (row["event_id"], row["project"], row["input_tokens"]) == ("openai:chatcmpl-env", "env-test", 11)


@pytest.mark.parametrize("tool", ["claude-code", "gemini-cli"])
def test_agent_settings_name_our_endpoint_and_token(service: IngestService, tool: str) -> None:
    env = exported_env(otel_env(service, tool))
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env["GEMINI_TELEMETRY_OTLP_ENDPOINT"]
    assert endpoint == service.url
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == f"Authorization=Bearer%20{service.token}"
    assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", env.get("GEMINI_TELEMETRY_OTLP_PROTOCOL")) in ("http/protobuf",
                                                                                                  "http")


def test_codex_block_is_valid_toml_with_the_full_logs_url(service: IngestService) -> None:
    otel = tomllib.loads(otel_env(service, "codex"))["otel"]
    exporter = otel["exporter"]["otlp-http"]
    assert exporter["endpoint"] == f"{service.url}/v1/logs" and exporter["protocol"] == "binary"
    assert exporter["headers"]["Authorization"] == f"Bearer {service.token}"
    assert otel["log_user_prompt"] is False
