"""The real server over a real socket: happy paths, every documented error code, the seams."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from llmtray.core.commits import Committed
from llmtray.ingest.service import IngestService
from llmtray.ingest.messages import Limits, Request, Response
from tests.ingest.conftest import (Replies, build_service, count_events, event, make_service, post_bytes, raw,
                                   read_reply, started, stored_ids)


def port_of(service: IngestService) -> int:
    return int(service.url.rsplit(":", 1)[1])


# --- happy paths -------------------------------------------------------------------------------


def test_health_needs_no_token(service):
    r = httpx.get(f"{service.url}/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["version"]


def test_one_event_is_committed_before_the_answer(service, client):
    r = client.post("/v1/events", json=event(1))
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    assert stored_ids(service.paths.db) == {"ev-1"}  # readable by another connection: committed


def test_array_and_wrapper_with_duplicates(service, client):
    assert client.post("/v1/events", json=[event(1), event(2)]).json() == {"accepted": 2, "duplicates": 0}
    r = client.post("/v1/events", json={"events": [event(2), event(3), event(3)]})
    assert r.json() == {"accepted": 1, "duplicates": 2}
    assert stored_ids(service.paths.db) == {"ev-1", "ev-2", "ev-3"}


def test_empty_batch_is_accepted_as_nothing(service, client):
    assert client.post("/v1/events", json=[]).json() == {"accepted": 0, "duplicates": 0}
    assert count_events(service.paths.db) == 0


def test_source_header_is_stored(service, client):
    client.post("/v1/events", json=event(1), headers={"X-LLMTray-Source": "hook"})
    client.post("/v1/events", json=event(2))
    conn = sqlite3.connect(service.paths.db)
    try:
        assert dict(conn.execute("SELECT event_id, source FROM event")) == {"ev-1": "hook", "ev-2": "api"}
    finally:
        conn.close()


def test_events_are_priced_in_the_writer(service, client):
    client.post("/v1/events", json=[event(1), event(2, model="no-such-model-xyz"), event(3, cost_usd="0.5")])
    conn = sqlite3.connect(service.paths.db)
    try:
        rows = dict((r[0], r[1:]) for r in conn.execute("SELECT event_id, cost_source, cost_nanos FROM event"))
    finally:
        conn.close()
    assert rows["ev-1"][0] == "computed" and rows["ev-1"][1] > 0
    assert rows["ev-2"] == ("unpriced", None)
    assert rows["ev-3"] == ("reported", 500_000_000)


def test_pricing_overrides_come_from_pricing_toml(data_dir):
    (data_dir / "pricing.toml").write_text(
        '[[model]]\nprovider = "openai"\nmodel = "gpt-4o-mini"\ninput_mtok = 1\noutput_mtok = 2\n')
    service = make_service(data_dir)
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {service.token}"}) as c:
            c.post(f"{service.url}/v1/events", json=event(0, input_tokens=1_000_000, output_tokens=1_000_000))
        conn = sqlite3.connect(service.paths.db)
        try:
            assert conn.execute("SELECT cost_nanos, pricing_version FROM event").fetchone() == (
                3_000_000_000, "user override")
        finally:
            conn.close()
    finally:
        service.stop()


def test_summary(service, client):
    client.post("/v1/events", json=event(1, ts=None, cost_usd="1.25"))
    body = client.get("/v1/summary").json()
    assert body["today_usd"] == "1.25" and body["month_usd"] == "1.25"
    assert isinstance(body["budgets"], list)
    assert httpx.get(f"{service.url}/v1/summary").status_code == 401


def test_summary_includes_budget_entries(data_dir):
    seen = []

    def budget_entries(queries, now):  # noqa: ANN001, ANN202
        seen.append(now)
        return [{"name": "team", "state": "ok"}]

    service = make_service(data_dir, budget_entries=budget_entries)
    try:
        r = httpx.get(f"{service.url}/v1/summary", headers={"Authorization": f"Bearer {service.token}"})
        assert r.json()["budgets"] == [{"name": "team", "state": "ok"}] and len(seen) == 1
    finally:
        service.stop()


def test_keep_alive_and_pipelining(service):
    body = json.dumps(event(1)).encode()
    requests = post_bytes(body, service.token) * 3 + b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=10) as sock:
        sock.sendall(requests)
        reader = Replies(sock)
        replies = [reader.next() for _ in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 200]
    assert [r.json() for r in replies[:3]] == [{"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1},
                                              {"accepted": 0, "duplicates": 1}]


def test_chunked_upload(service):
    body = json.dumps([event(1), event(2)]).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    reply = raw(port_of(service), post_bytes(chunked, service.token, extra="Transfer-Encoding: chunked"))
    assert reply.status == 200 and reply.json() == {"accepted": 2, "duplicates": 0}


def test_expect_100_continue(service):
    body = json.dumps(event(1)).encode()
    head = post_bytes(b"", service.token, extra=f"Content-Length: {len(body)}\r\nExpect: 100-continue")
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_reply(sock).json() == {"accepted": 1, "duplicates": 0}


def test_http10_is_answered_and_closed(service):
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=10) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.0\r\n\r\n")
        reply = read_reply(sock)
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert sock.recv(10) == b""


def test_listeners_hear_each_commit(data_dir):
    heard: list[Committed] = []
    service = make_service_with_listener(data_dir, heard.append)
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {service.token}"}) as c:
            c.post(f"{service.url}/v1/events", json=[event(1), event(2)], headers={"X-LLMTray-Source": "hook"})
            c.post(f"{service.url}/v1/events", json=[event(2)])
    finally:
        service.stop()
    assert heard[0].accepted == 2 and heard[0].duplicates == 0 and heard[0].sources == frozenset({"hook"})
    assert heard[0].first_ts_us == heard[0].last_ts_us == 1767348000 * 1_000_000
    assert heard[1].accepted == 0 and heard[1].duplicates == 1 and heard[1].sources == frozenset()


def make_service_with_listener(data_dir, listener) -> IngestService:  # noqa: ANN001
    service = build_service(data_dir)
    service.add_listener(listener)
    return started(service)


# --- every documented error code ------------------------------------------------------------------


def test_400_names_index_and_field_and_stores_nothing(service, client):
    r = client.post("/v1/events", json=[event(1), event(2, output_tokens="many")])
    assert r.status_code == 400
    assert r.json()["errors"] == [{"index": 1, "field": "output_tokens", "message": "must be an integer, got string"}]
    assert count_events(service.paths.db) == 0


def test_401(service):
    r = httpx.post(f"{service.url}/v1/events", json=event(1))
    assert r.status_code == 401 and "missing token" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(f"{service.url}/v1/events", json=event(1), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "invalid token" in r.json()["error"]
    assert count_events(service.paths.db) == 0


def test_403_origin_and_host(service, client):
    assert client.post("/v1/events", json=event(1), headers={"Origin": "https://evil.example"}).status_code == 403
    r = client.get("/v1/health", headers={"Host": "rebind.evil.example:8787"})
    assert r.status_code == 403 and "DNS rebinding" in r.json()["error"]
    assert client.get("/v1/health", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    for host in ("localhost:1", "127.0.0.1", "[::1]:8787", "127.3.4.5"):
        assert client.get("/v1/health", headers={"Host": host}).status_code == 200


def test_allow_remote_relaxes_host_but_not_origin(data_dir):
    service = make_service(data_dir, allow_remote=True)
    try:
        assert httpx.get(f"{service.url}/v1/health", headers={"Host": "tray.lan:8787"}).status_code == 200
        assert httpx.get(f"{service.url}/v1/health", headers={"Origin": "http://tray.lan"}).status_code == 403
    finally:
        service.stop()


def test_404_405_413_415(service, client):
    assert client.get("/v2/events").status_code == 404
    r = client.get("/v1/events")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert client.delete("/v1/health").status_code == 405
    r = client.post("/v1/events", content=b"[" + b" " * (8 * 1024 * 1024) + b"]",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "8 MiB" in r.json()["error"]
    r = client.post("/v1/events", content=json.dumps(event(1)), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert count_events(service.paths.db) == 0
    assert client.post("/v1/events", json=event(1)).status_code == 200  # the client's connection pool recovers


def test_503_when_the_backlog_is_full(data_dir):
    release = threading.Event()
    first_commit = threading.Event()

    def slow_listener(committed: Committed) -> None:
        first_commit.set()
        release.wait(20)

    service = make_service_with_listener(data_dir, slow_listener)
    service.writer.max_backlog = 10
    auth = {"Authorization": f"Bearer {service.token}"}
    try:
        with httpx.Client(base_url=service.url, headers=auth, timeout=30) as a, \
                httpx.Client(base_url=service.url, headers=auth, timeout=30) as b:
            assert a.post("/v1/events", json=event(0)).status_code == 200
            assert first_commit.wait(10)  # the writer now sits in the listener
            waiting: list[httpx.Response] = []
            six = [event(i) for i in range(1, 7)]
            t = threading.Thread(target=lambda: waiting.append(b.post("/v1/events", json=six)))
            t.start()
            while service.writer.backlog < 6:
                threading.Event().wait(0.01)
            r = a.post("/v1/events", json=[event(i) for i in range(10, 15)])
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and "behind" in r.json()["error"]
            release.set()
            t.join(10)
            assert waiting[0].json() == {"accepted": 6, "duplicates": 0}
    finally:
        release.set()
        service.stop()
    assert stored_ids(service.paths.db) == {f"ev-{i}" for i in range(7)}


def test_503_when_sqlite_refuses_and_other_batches_still_commit(service, client):
    conn = sqlite3.connect(service.paths.db)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON event_row"
                 " WHEN NEW.model = (SELECT id FROM name WHERE text = 'boom') "
                 "BEGIN SELECT RAISE(ABORT, 'boom refused'); END")
    conn.commit()
    conn.close()
    r = client.post("/v1/events", json=[event(1), event(2, model="boom")])
    assert r.status_code == 503 and "boom refused" in r.json()["error"] and r.headers["retry-after"]
    assert client.post("/v1/events", json=event(3)).status_code == 200
    assert stored_ids(service.paths.db) == {"ev-3"}


def test_500_is_json_without_traceback(data_dir):
    def broken(queries, now):  # noqa: ANN001, ANN202
        raise ZeroDivisionError("secret internals")

    service = make_service(data_dir, budget_entries=broken)
    try:
        r = httpx.get(f"{service.url}/v1/summary", headers={"Authorization": f"Bearer {service.token}"})
        assert r.status_code == 500
        assert r.json() == {"error": "internal error; see the llmtray log"}
        assert httpx.get(f"{service.url}/v1/health").status_code == 200
    finally:
        service.stop()


# --- the mount seam (what /proxy/ is built on) --------------------------------------------------


def test_mounted_handler_streams_chunk_by_chunk_and_is_closed_on_disconnect(data_dir):
    gate: list[asyncio.Event] = []
    closed = threading.Event()
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        gate.append(asyncio.Event())

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"data: one\n\n"
                await gate[-1].wait()
                yield b"data: two\n\n"
                await asyncio.sleep(30)  # a long stream the client abandons
                yield b"never"
            finally:
                closed.set()

        return Response(200, [("Content-Type", "text/event-stream"), ("Connection", "bogus")], chunks())

    service = build_service(data_dir)
    service.mount("/seam/", handler)
    started(service)
    try:
        with httpx.Client(timeout=10) as c:
            with c.stream("POST", f"{service.url}/seam/openai/v1/chat?x=1", content=b'{"stream": true}',
                          headers={"X-Test": "yes"}) as r:
                assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
                parts = r.iter_raw()
                assert next(parts) == b"data: one\n\n"  # arrived while the handler still waits
                service.server.loop.call_soon_threadsafe(gate[-1].set)
                assert next(parts) == b"data: two\n\n"
            assert closed.wait(10)  # the client left mid-stream: the iterator was closed
        req = seen[0]
        assert (req.method, req.path, req.query) == ("POST", "/seam/openai/v1/chat", "x=1")
        assert req.body == b'{"stream": true}'
        assert req.headers.get("x-test") == "yes"
        r = httpx.get(f"{service.url}/seam/x", headers={"Origin": "http://evil"})
        assert r.status_code == 403  # the guard runs before mounted handlers
    finally:
        service.stop()


def test_mounted_handler_failure_is_a_json_502(data_dir):
    async def handler(request: Request) -> Response:
        raise RuntimeError("upstream exploded")

    service = build_service(data_dir)
    service.mount("/seam/", handler, token_required=True)
    started(service)
    try:
        assert httpx.get(f"{service.url}/seam/a").status_code == 401
        r = httpx.get(f"{service.url}/seam/a", headers={"Authorization": f"Bearer {service.token}"})
        assert r.status_code == 502 and "exploded" not in r.text
    finally:
        service.stop()


def test_connection_limit_answers_503(data_dir):
    service = make_service(data_dir, limits=Limits(max_connections=2, header_timeout=5, shutdown_grace=1))
    try:
        port = port_of(service)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            for s in held:  # both busy: a request whose body is still on its way
                s.sendall(post_bytes(b"[", service.token, extra="Content-Length: 100"))
            time.sleep(0.3)
            reply = raw(port, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert reply.status == 503 and reply.headers["retry-after"] == "1"
            assert "too many connections" in reply.json()["error"]
        finally:
            for s in held:
                s.close()
    finally:
        service.stop()
