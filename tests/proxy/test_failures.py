"""When things go wrong: upstream timeouts, cut streams, unreachable upstreams and clients that
leave — the client gets a clear answer (or a visibly cut body) and the call is still recorded."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import openai
import pytest

from llmtray.config import Config
from llmtray.ingest.service import IngestService
from llmtray.ingest.upstream import Timeouts
from llmtray.paths import Paths
from tests.proxy.conftest import FAST_LIMITS, wait_events
from tests.proxy.stub import USAGE

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_STREAM = {"model": "claude-sonnet-4-0", "max_tokens": 9, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}
MESSAGES_INPUT = (USAGE["messages"]["input_tokens"] + USAGE["messages"]["cache_read_input_tokens"]
                  + USAGE["messages"]["cache_creation_input_tokens"])


def test_upstream_timeout_is_a_504_in_the_providers_shape(service, stub):
    service.proxy.timeout = Timeouts.all(0.5)
    with openai.OpenAI(base_url=f"{service.url}/proxy/openai/v1", api_key="sk-x", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="stall-headers", messages=CHAT["messages"])
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # the SDK hands over the `error` object
    assert "openai did not answer in time (ReadTimeout)" in caught.value.message
    stub.release.set()
    [event] = wait_events(service, 1)
    assert event["status"] == "error" and "did not answer in time" in event["error"]
    assert event["model"] == "stall-headers" and event["latency_ms"] >= 500


def test_upstream_stalling_mid_stream_cuts_the_client_and_records_an_error(service, stub):
    service.proxy.timeout = Timeouts.all(0.5)
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{service.url}/proxy/openai/v1/chat/completions",
                           json={**CHAT, "model": "stall-stream", "stream": True}) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # a truncated chunked body, not a clean end
                for _ in response.iter_raw():
                    pass
    stub.release.set()
    [event] = wait_events(service, 1)
    assert event["status"] == "error" and event["error"].startswith("upstream stopped sending mid-response")
    assert event["tags"] == {"llmtray.stream": "interrupted", "llmtray.usage": "missing"}
    assert event["request_id"] == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"  # the first chunk was read


def test_upstream_cut_keeps_the_usage_it_had_reported(service, stub):
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{service.url}/proxy/anthropic/v1/messages",
                           json={**ANTHROPIC_STREAM, "model": "cut"}) as response:
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in response.iter_raw():
                    pass
    [event] = wait_events(service, 1)
    assert event["status"] == "error" and event["error"].startswith("upstream response cut: RemoteProtocolError")
    assert event["input_tokens"] == MESSAGES_INPUT and event["output_tokens"] == 0  # message_start's counts
    assert event["tags"] == {"llmtray.stream": "interrupted", "llmtray.usage": "partial"}


def test_client_leaving_mid_stream_cancels_the_upstream_and_records_what_was_known(service, stub):
    body = json.dumps({**ANTHROPIC_STREAM, "model": "endless"}).encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(b"POST /proxy/anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b"message_start" not in received:
            received += sock.recv(65536)
    assert stub.abandoned.wait(10), "the upstream request was not closed after the client left"
    [event] = wait_events(service, 1)
    assert event["status"] == "ok" and event["stream"] is True
    assert event["tags"] == {"llmtray.stream": "abandoned", "llmtray.usage": "partial"}
    assert event["input_tokens"] == MESSAGES_INPUT and event["request_id"].startswith("msg_01XFDUDYJgAACzvn")
    assert event["id"] == f"anthropic:{event['request_id']}"  # keyed as Claude Code's transcripts key it


def test_unreachable_upstream_is_a_502(data_dir: Path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    service = IngestService(Paths(data_dir, data_dir, data_dir),
                            Config(upstreams={"anthropic": f"http://127.0.0.1:{dead}"}), port=0, limits=FAST_LIMITS)
    service.start()
    try:
        assert service.wait_ready(30)
        with httpx.Client(timeout=10) as client:
            r = client.post(f"{service.url}/proxy/anthropic/v1/messages", json={**ANTHROPIC_STREAM, "stream": False})
        assert r.status_code == 502
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
        assert f"could not reach anthropic at http://127.0.0.1:{dead}" in r.json()["error"]["message"]
        [event] = wait_events(service, 1)
        assert event["status"] == "error" and "ConnectError" in event["error"]
    finally:
        service.stop()


def test_a_coding_the_meter_cannot_read_is_relayed_and_noted(service, stub):
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{service.url}/proxy/openai/v1/chat/completions",
                           json={**CHAT, "model": "br"}) as response:
            raw = b"".join(response.iter_raw())
    assert raw == stub.sent[-1] and response.headers["content-encoding"] == "br"
    [event] = wait_events(service, 1)
    assert event["status"] == "ok" and event["model"] == "br"
    assert event["tags"] == {"llmtray.usage": "unreadable",
                             "llmtray.usage_error": "content-encoding br is not readable"}
