"""Hostile and broken requests: each gets its documented answer, the server stays up, nothing is stored.

One server serves the whole table (short timeouts so slow clients are cut off quickly); after every
case a fresh connection checks /v1/health and the event table is still empty.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from llmtray.ingest.service import IngestService
from llmtray.ingest.messages import Limits
from tests.ingest.conftest import RawReply, Replies, count_events, event, make_service, post_bytes, raw

TIMEOUT_LIMITS = Limits(header_timeout=0.5, body_timeout=0.5, shutdown_grace=1.0, linger=1.0)
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def hostile_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestService]:
    before = set(threading.enumerate())
    data = tmp_path_factory.mktemp("hostile")
    service = make_service(data, TIMEOUT_LIMITS)
    yield service
    service.stop()
    leaked = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("llmtray-")]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """The shared server's threads live for the module; `hostile_service` checks them at its end."""
    yield


def _port(service: IngestService) -> int:
    return int(service.url.rsplit(":", 1)[1])


def _slow(first: bytes, pause: float = 1.5) -> Callable[[int], RawReply]:
    """Send `first`, then nothing: a slowloris client. The server must answer 408 and hang up."""
    def run(port: int) -> RawReply:
        with socket.create_connection(("127.0.0.1", port), timeout=pause + 5) as sock:
            sock.sendall(first)
            started = time.monotonic()
            reply = Replies(sock).next()
            assert time.monotonic() - started < pause + 4
            return reply
    return run


def _half_then_close(data: bytes) -> Callable[[int], RawReply]:
    def run(port: int) -> RawReply:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            return Replies(sock).next()
    return run


@dataclass(frozen=True)
class Case:
    name: str
    request: Callable[[str], bytes] | Callable[[int, str], RawReply]  # bytes from the token, or a runner
    status: int | None  # None: the server just closes
    needle: str = ""
    runner: bool = False


def _post(body: bytes, **kw) -> Callable[[str], bytes]:  # noqa: ANN003
    return lambda token: post_bytes(body, token, **kw)


def _events(data: object) -> Callable[[str], bytes]:
    return _post(json.dumps(data).encode())


NINE_MIB = b"[" + b" " * (9 * 1024 * 1024) + b"]"
MIB_CHUNK = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
CASES = [
    Case("truncated JSON", _post(b'{"provider": "openai", "mo'), 400, "invalid JSON"),
    Case("9 MiB body", _post(NINE_MIB), 413, "8 MiB"),
    Case("9 MiB chunked body", _post(MIB_CHUNK * 9 + b"0\r\n\r\n", extra="Transfer-Encoding: chunked"), 413, "8 MiB"),
    Case("text/plain", _post(b"{}", content_type="text/plain"), 415, "Content-Type"),
    Case("no content type", _post(b"{}", content_type=None), 415, "missing Content-Type"),
    Case("form encoded", _post(b"a=1", content_type="application/x-www-form-urlencoded"), 415),
    Case("latin-1 charset", _post(b"{}", content_type="application/json; charset=latin-1"), 415, "charset"),
    Case("deeply nested JSON", _post(b"[" * 200_000 + b"]" * 200_000), 400, "nested too deeply"),
    Case("1e400", _post(b'{"provider": "openai", "model": "m", "latency_ms": 1e400}'), 400, "out of range"),
    Case("400-digit integer", _post(b'{"provider": "openai", "model": "m", "ts": 1' + b"0" * 400 + b"}"), 400,
         "out of range"),
    Case("NaN", _post(b'{"provider": "openai", "model": "m", "input_tokens": NaN}'), 400, "NaN"),
    Case("Infinity", _post(b'[{"provider": "openai", "model": "m", "latency_ms": Infinity}]'), 400, "Infinity"),
    Case("invalid UTF-8", _post(b'{"provider": "openai", "model": "gpt\xc3\x28"}'), 400, "not valid UTF-8"),
    Case("UTF-8 BOM", _post(b'\xef\xbb\xbf{"provider": "openai", "model": "m"}'), 400, "invalid JSON"),
    Case("10,001 events", _post(b"[" + b",".join([b"{}"] * 10_001) + b"]"), 400, "limit is 10000"),
    Case("one bad event among good ones", _events([event(1), event(2, provider="Bad Provider!"), event(3)]), 400,
         "1 of 3"),
    Case("unknown field", _events(event(1, prompt="secret")), 400, "unknown field"),
    Case("NUL in model", _events(event(1, model="gpt\u0000")), 400, "NUL"),
    Case("far-future ts", _events(event(1, ts="2999-01-01T00:00:00Z")), 400, "future"),
    Case("events not an array", _events({"events": "all of them"}), 400, "must be an array"),
    Case("top-level string", _post(b'"hello"'), 400, "expected an event object"),
    Case("reserved source", _post(json.dumps(event(1)).encode(), extra="X-LLMTray-Source: proxy"), 400,
         "X-LLMTray-Source"),
    Case("no token", lambda token: post_bytes(json.dumps(event(1)).encode(), None), 401, "missing token"),
    Case("wrong token", lambda token: post_bytes(json.dumps(event(1)).encode(), token + "x"), 401, "invalid token"),
    Case("basic auth", lambda token: post_bytes(b"{}", None, extra="Authorization: Basic dXNlcjpwYXNz"), 401),
    Case("browser Origin", _post(json.dumps(event(1)).encode(), extra="Origin: https://evil.example"), 403, "Origin"),
    Case("rebinding Host", lambda token: post_bytes(json.dumps(event(1)).encode(), token).replace(
        b"Host: 127.0.0.1", b"Host: attacker.example:8787"), 403, "DNS rebinding"),
    Case("no Host in HTTP/1.1", lambda token: post_bytes(b"{}", token).replace(b"Host: 127.0.0.1\r\n", b""), 400,
         "Host"),
    Case("GET on /v1/events", lambda token: b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "use POST"),
    Case("path traversal", lambda token: b"GET /v1/../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404),
    Case("absolute-form target", lambda token: b"GET http://127.0.0.1/v1/health HTTP/1.1\r\nHost: x\r\n\r\n", 400,
         "request target"),
    Case("HTTP/2.0 request line", lambda token: b"GET /v1/health HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    Case("garbage request line", lambda token: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400,
         "malformed request line"),
    Case("40 KiB header", lambda token: b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
         + b"a" * 40_000 + b"\r\n\r\n", 431),
    Case("200 headers", lambda token: b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
    Case("obsolete line folding",
         lambda token: b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n folded\r\n\r\n", 400, "malformed header"),
    Case("NUL in a header", lambda token: b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n", 400,
         "control characters"),
    Case("negative Content-Length", _post(b"", extra="Content-Length: -5"), 400, "Content-Length"),
    Case("conflicting Content-Lengths", _post(b"{}", extra="Content-Length: 2\r\nContent-Length: 3"), 400,
         "conflicting"),
    Case("Content-Length and chunked", _post(b"0\r\n\r\n", extra="Content-Length: 5\r\nTransfer-Encoding: chunked"),
         400, "both"),
    Case("gzip transfer coding", _post(b"", extra="Transfer-Encoding: gzip, chunked"), 501, "not supported"),
    Case("bad chunk size", _post(b"zz\r\n{}\r\n0\r\n\r\n", extra="Transfer-Encoding: chunked"), 400, "chunk size"),
    Case("unknown Expect", _post(b"{}", extra="Expect: 200-ok"), 417),
    Case("slowloris body",
         lambda port, token: _slow(post_bytes(b'{"provider": "openai"', token, extra="Content-Length: 500"))(port),
         408, "request body not received", runner=True),
    Case("slowloris head", lambda port, token: _slow(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")(port),
         408, "request head not received", runner=True),
    Case("body cut short",
         lambda port, token: _half_then_close(post_bytes(b'[{"provider"', token, extra="Content-Length: 900"))(port),
         None, runner=True),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(hostile_service, case):
    port = _port(hostile_service)
    if case.runner:
        reply = case.request(port, hostile_service.token)  # type: ignore[call-arg, arg-type]
    else:
        reply = raw(port, case.request(hostile_service.token))  # type: ignore[arg-type]
    assert reply.status == case.status, reply
    if case.status is not None:
        assert reply.headers["content-type"] == "application/json"
        body = reply.json()
        assert set(body) <= {"error", "errors"} and case.needle in body["error"]
        assert "Traceback" not in body["error"] and 'File "' not in body["error"]
    assert raw(port, HEALTH).status == 200  # still serving
    assert count_events(hostile_service.paths.db) == 0  # nothing stored
