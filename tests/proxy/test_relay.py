"""The relay itself, seen with plain HTTP (what curl or any language sees): bytes unchanged, streamed
chunk by chunk, compressed bodies still metered, paths and headers kept, nothing else reachable."""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib

import httpx
import pytest

from tests.proxy.conftest import stored_events, wait_events
from tests.proxy.stub import SNAPSHOTS, USAGE

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture
def http(service):
    with httpx.Client(base_url=f"{service.url}/proxy", timeout=30) as client:
        yield client


CASES = [("/openai/v1/chat/completions", STREAM), ("/openai/v1/chat/completions", CHAT),
         ("/anthropic/v1/messages", {**CHAT, "model": "claude-sonnet-4-0", "max_tokens": 9, "stream": True})]


def test_streamed_bytes_equal_the_upstream_bytes_and_are_metered(service, stub, http):
    """SSE and JSON, identity and gzip: the client gets the upstream's bytes, the meter reads a copy."""
    for n, (compress, (path, body)) in enumerate(((c, case) for c in (False, True) for case in CASES), 1):
        stub.compress = compress
        with http.stream("POST", path, json=body, headers={"Accept-Encoding": "gzip, br, zstd"}) as response:
            raw = b"".join(response.iter_raw())
            encoding = response.headers.get("content-encoding")
        assert raw == stub.sent[-1], (path, compress)
        assert encoding == ("gzip" if compress else None)
        assert stub.last().header("accept-encoding") == "gzip"  # narrowed to what the meter can read
        if compress:
            assert zlib.decompress(raw, wbits=31)  # really compressed: the meter read a decompressed copy
        event = wait_events(service, n)[-1]
        assert event["input_tokens"] > 0 and event["output_tokens"] > 0 and "tags" not in event, (path, compress)


def test_sse_is_relayed_chunk_by_chunk_not_buffered(service, stub, http):
    """The stub sends one event, then waits until the test has read it through the proxy."""
    with http.stream("POST", "/openai/v1/chat/completions", json={**STREAM, "model": "gated"}) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        assert b'"role": "assistant"' in first and not stub.gate.is_set()
        stub.gate.set()
        rest = b"".join(chunks)
    assert first + rest == stub.sent[-1] and rest.endswith(b"data: [DONE]\n\n")
    [event] = wait_events(service, 1)
    assert event["status"] == "ok" and event["input_tokens"] == USAGE["chat"]["prompt_tokens"]


def test_concurrent_streams_each_recorded_with_their_own_attribution(service, stub):
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                r = client.post(f"{service.url}/proxy/openai/v1/chat/completions", json=STREAM,
                                headers={"X-LLMTray-User": f"user-{i}"})
                assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    events = wait_events(service, 12)
    assert sorted(e["user"] for e in events) == sorted(f"user-{i}" for i in range(12))
    assert all(e["input_tokens"] == 1117 and e["stream"] for e in events)


def test_gemini_native_stream_and_json_with_query_kept(service, stub, http):
    path = "/google/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    r = http.post(path, params={"alt": "sse", "key": "AIza-x&y"}, json=body, headers={"X-LLMTray-Env": "dev"})
    assert r.status_code == 200 and r.content == stub.sent[-1]
    assert stub.last().target == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIza-x%26y"
    r = http.post("/google/v1beta/models/gemini-2.5-flash:generateContent",
                  json=body, headers={"x-goog-api-key": "AIza-header"})
    assert r.status_code == 200 and stub.last().header("x-goog-api-key") == "AIza-header"
    streamed, plain = wait_events(service, 2)
    usage = USAGE["gemini"]
    for event in (streamed, plain):
        assert event["provider"] == "google" and event["model"] == SNAPSHOTS["gemini-2.5-flash"]
        assert (event["input_tokens"], event["output_tokens"], event["reasoning_tokens"],
                event["cache_read_tokens"]) == (usage["promptTokenCount"],
                                                usage["candidatesTokenCount"] + usage["thoughtsTokenCount"],
                                                usage["thoughtsTokenCount"], usage["cachedContentTokenCount"])
        assert event["request_id"] == "mAitaLmkHPPlz7IPvtfUqQ4"
    assert streamed["stream"] is True and streamed["env"] == "dev" and plain["stream"] is False


def test_large_json_body_is_metered_from_its_tail(service, stub, http):
    """6 MB of embeddings: more than the meter holds whole, usage still read (head and tail)."""
    r = http.post("/openai/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["x"] * 200,
                                                  "dimensions": 2000})
    assert r.status_code == 200 and len(r.content) > 5_000_000 and r.content == stub.sent[-1]
    [event] = wait_events(service, 1)
    assert event["model"] == "text-embedding-3-small" and event["input_tokens"] == 8 and "tags" not in event


def test_headers_hop_by_hop_dropped_and_repeats_kept(service, stub):
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        body = json.dumps(CHAT).encode()
        sock.sendall(b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                     b"Proxy-Authorization: Basic eDp5\r\nTE: trailers\r\nAuthorization: Bearer sk-\xe9\r\n"
                     b"X-Custom: caf\xc3\xa9\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
    got = stub.last()
    assert {"connection", "x-secret-hop", "keep-alive", "proxy-authorization", "te"}.isdisjoint(got.names())
    assert got.header("authorization") == "Bearer sk-\xe9"  # byte for byte, even outside ASCII
    assert got.header("x-custom").encode("latin-1") == "café".encode()
    head = reply.split(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert head.count("set-cookie:") == 2 and "x-request-id: req_stub_123" in head
    assert head.count("\r\ndate:") == 1 and head.count("\r\nserver:") == 1
    httpx.post(f"{service.url}/proxy/openai/v1/chat/completions", json=CHAT)
    assert "cookie" not in stub.last().names()  # the upstream's cookies were not kept by the proxy


def test_unrecorded_requests_pass_through_without_events(service, stub, http):
    r = http.get("/openai/v1/models", headers={"Authorization": "Bearer sk-x"})
    assert r.status_code == 200 and r.json()["object"] == "list", r.text
    assert stub.last().method == "GET" and stub.last().target == "/v1/models"
    r = http.post("/azure-test/deployments/gpt%2Dmini/chat/completions?api-version=2024-10-21", json=CHAT)
    assert r.status_code == 200
    assert stub.last().target == "/openai/deployments/gpt%2Dmini/chat/completions?api-version=2024-10-21"
    [event] = wait_events(service, 1)  # the models list was not a call that costs money
    assert event["provider"] == "azure-test"


def test_unknown_upstream_lists_the_known_ones(service, http):
    r = http.post("/opnai/v1/chat/completions", json=CHAT)
    assert r.status_code == 404
    body = r.json()
    assert "did you mean 'openai'" in body["error"]
    assert {"openai", "anthropic", "google", "openrouter", "deepseek", "groq", "mistral", "xai"} <= set(body["upstreams"])
    assert "api.groq.com" not in r.text and "127.0.0.1" not in r.text  # names only, never their URLs


BAD_ATTRIBUTION = [
    ({"X-LLMTray-Tags": "team"}, "X-LLMTray-Tags item 1 ('team') is not key=value"),
    ({"X-LLMTray-Tags": "a=1,a=2"}, "tag 'a' is given twice"),
    ({"X-LLMTray-Featur": "x"}, "unknown header X-LLMTray-Featur"),
    ({"X-LLMTray-User": "u" * 201}, "X-LLMTray-User is 201 characters long"),
]


def test_bad_attribution_is_refused_before_forwarding(service, stub, http):
    for headers, fragment in BAD_ATTRIBUTION:
        r = http.post("/openai/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 400 and fragment in r.json()["error"]["message"]
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert stub.received == [] and stored_events(service.paths.db) == []


def test_browser_pages_and_dot_segments_are_refused(service, stub, http):
    r = http.post("/openai/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    for target in (b"/proxy/openrouter/../v1/chat/completions", b"/proxy/openrouter/%2E%2e/x"):
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % target)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400") and b"'..' are not forwarded" in reply
    assert stub.received == []


def test_upstream_connections_are_kept_alive_and_replaced_when_the_upstream_hangs_up(service, stub, http):
    """Calls share one pooled upstream connection; one the upstream closed after answering (as an
    idle timeout does, unannounced) leaves the pool, and the next call opens a fresh one."""
    for _ in range(3):
        assert http.post("/openai/v1/chat/completions", json=CHAT).status_code == 200
    r = http.post("/openai/v1/chat/completions", json={**CHAT, "model": "hang-up"})
    assert r.status_code == 200 and r.content == stub.sent[-1]
    pool = service.proxy.client
    deadline = time.monotonic() + 10
    while pool.open_connections and time.monotonic() < deadline:  # the loop sees the close
        time.sleep(0.01)
    assert pool.open_connections == 0
    assert http.post("/openai/v1/chat/completions", json=CHAT).status_code == 200
    peers = [received.peer for received in stub.received]
    assert len(set(peers[:4])) == 1 and peers[4] != peers[0]
    assert [e["status"] for e in wait_events(service, 5)] == ["ok"] * 5
