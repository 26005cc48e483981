"""The hardening review's attacks on the server and the proxy (issue #26 items 1, 6, 7 and 11),
each replayed against the real service on loopback with a real stub upstream."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llmtray.billing.sync import FIRST_AFTER_S
from llmtray.config import Config
from llmtray.ingest import proxy as proxy_module
from llmtray.ingest.service import IngestService
from llmtray.paths import Paths
from tests.ingest.conftest import Replies
from tests.ingest.test_serve import start_serve
from tests.proof.conftest import LIMITS, proxying_service, row_count, threads_stopped
from tests.proof.rawhttp import HEALTH, exchange
from tests.proxy.test_upstream import ScriptedServer, read_request, serve  # noqa: F401 - `serve` is a fixture

MIB = 1024 * 1024


@pytest.fixture
def served(tmp_path):
    with proxying_service(tmp_path) as pair:
        yield pair


def _port(service) -> int:
    return int(service.url.rsplit(":", 1)[1])


# --- item 11: small things ----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost:1@evil.com", "127.0.0.1%anything", "127.0.0.1%25evil.com:8787",
                                  "localhost:8787:80", "[::1]evil.com", "localhost evil.com"])
def test_host_guard_refuses_hosts_that_only_start_like_loopback(served, host):
    service, _ = served
    reply, _ = exchange(_port(service), f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert reply.status in (400, 403), reply
    assert exchange(_port(service), HEALTH)[0].status == 200


@pytest.mark.parametrize("host", ["localhost:8787", "127.0.0.1", "[::1]:8787", "a.localhost:1", "LOCALHOST"])
def test_host_guard_still_accepts_loopback_hosts(served, host):
    service, _ = served
    reply, _ = exchange(_port(service), f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert reply.status == 200, reply


def test_upstream_root_without_trailing_slash_sends_slash(served):
    service, stub = served
    reply, _ = exchange(_port(service), b"GET /proxy/openai HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status is not None and reply.status < 500, reply
    assert stub.last().target == "/"


def test_unknown_upstream_names_upstreams_but_not_their_urls(served):
    service, stub = served
    reply, _ = exchange(_port(service), b"GET /proxy/nope/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status == 404
    body = reply.json()
    assert "openai" in body["upstreams"] and "openrouter" in body["upstreams"]
    assert stub.url not in reply.body.decode() and "127.0.0.1:" not in reply.body.decode()
    assert "api.openai.com" not in reply.body.decode()


# --- a hostile upstream, a slow client, big uploads (items 1, 6, 7) -------------------------------

@contextmanager
def serving(tmp_path: Path, **upstreams: str) -> Iterator[IngestService]:
    """The real service with `upstreams` (name → base URL) configured."""
    with threads_stopped():
        service = IngestService(Paths(tmp_path, tmp_path, tmp_path), Config(upstreams=upstreams), port=0,
                                limits=LIMITS)
        try:
            service.start()
            assert service.wait_ready(30)
            yield service
        finally:
            service.stop()


def _url(server: ScriptedServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_a_client_that_reads_nothing_pauses_an_endless_upstream(tmp_path, serve):
    """#26 item 1: 1 MiB chunks without end, to a client that reads nothing. The upstream must be
    held back by backpressure (the server used to buffer gigabytes)."""
    sent = [0]

    def endless(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + bytes(MIB) + b"\r\n"
        while True:
            sock.sendall(chunk)  # blocks once nobody reads: that is the point
            sent[0] += 1

    upstream = serve(endless)
    with serving(tmp_path, endless=_url(upstream)) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            client.sendall(b"GET /proxy/endless/download HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(3)
            assert client.recv(16).startswith(b"HTTP/1.1 200")
            held = sent[0]
        assert held < 48, f"the upstream got {held} MiB out while the client read nothing"
        assert exchange(service.port, HEALTH)[0].status == 200


def _gzip_bomb(expanded: int) -> bytes:
    """`Content-Encoding: gzip, gzip` whose inner layer inflates to `expanded` bytes of zeros,
    built from one repeated flushed block (compressing that much for real takes seconds)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = z.compress(bytes(MIB)) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(MIB)) + z.flush(zlib.Z_FULL_FLUSH)
    inner = first + block * (expanded // MIB - 2) + z.compress(bytes(MIB)) + z.flush()
    return zlib.compress(inner, 9, wbits=31)


def test_a_gzip_bomb_from_the_upstream_does_not_stall_the_server(tmp_path, serve):
    """#26 item 6: a few KiB that inflate to 512 MiB used to be decompressed on the event loop."""
    bomb = _gzip_bomb(512 * MIB)
    assert len(bomb) < 64 * 1024

    def script(sock: socket.socket, n: int) -> None:
        while read_request(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip, gzip\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(bomb), bomb))

    upstream = serve(script)
    with serving(tmp_path, bomb=_url(upstream)) as service:
        slowest = [0.0]
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t0 = time.monotonic()
                assert exchange(service.port, HEALTH)[0].status == 200
                slowest[0] = max(slowest[0], time.monotonic() - t0)
                time.sleep(0.02)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            body = json.dumps({"model": "gpt-4o-mini", "messages": []}).encode()
            reply, _ = exchange(service.port, b"POST /proxy/bomb/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert reply.status == 200 and reply.body == bomb  # relayed untouched
            deadline = time.monotonic() + 30
            while row_count(service.paths.db) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            done.set()
            prober.join(30)
        assert row_count(service.paths.db) == 1
        conn = sqlite3.connect(service.paths.db)
        try:
            tags = json.loads(conn.execute("SELECT tags FROM event").fetchone()[0])
        finally:
            conn.close()
        assert slowest[0] < 1.0, f"/v1/health took {slowest[0]:.2f} s while the bomb was metered"
        assert tags["llmtray.usage"] == "unreadable" and "MiB" in tags["llmtray.usage_error"]


def test_half_sent_heads_do_not_lock_out_the_api(served):
    """#26 item 7: 300 connections that never finish their head used to take every slot (503)."""
    service, _ = served
    socks = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127")
            socks.append(sock)
        time.sleep(0.3)
        assert exchange(service.port, HEALTH)[0].status == 200
    finally:
        for sock in socks:
            sock.close()


def test_an_upload_is_streamed_to_the_upstream_as_it_arrives(tmp_path, serve):
    """#26 item 7: request bodies used to be held whole (64 MiB each) before anything was sent."""
    first_bytes = threading.Event()
    got = [0]

    def script(sock: socket.socket, n: int) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        got[0] = len(body)
        while got[0] < length:
            got[0] += len(sock.recv(1 << 20))
            first_bytes.set()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%d"
                     % (len(str(got[0])), got[0]))

    upstream = serve(script)
    size = 16 * MIB
    with serving(tmp_path, files=_url(upstream)) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as client:
            client.sendall(b"POST /proxy/files/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % size)
            client.sendall(bytes(2 * MIB))
            assert first_bytes.wait(10), "the upstream saw nothing before the upload was complete"
            client.sendall(bytes(size - 2 * MIB))
            reply = Replies(client).next()
        assert reply.status == 200 and reply.body == b"%d" % size


def test_bodies_held_for_metering_have_a_budget(tmp_path, serve):
    """#26 item 7: recorded calls' bodies are read whole (the model decides the budget check), so
    together they get a budget: past it, a 503 with Retry-After, and nothing is sent upstream."""
    release = threading.Event()
    requests: list[bytes] = []

    def stalling(sock: socket.socket, n: int) -> None:
        while request := read_request(sock):
            requests.append(request)
            release.wait(20)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    upstream = serve(stalling)
    with serving(tmp_path, slow=_url(upstream)) as service:
        service.proxy.buffers.limit = 4 * MIB
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 3 * MIB}]}).encode()
        call = (b"POST /proxy/slow/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        first = threading.Thread(target=lambda: requests.append(b"first:%d" % exchange(service.port, call)[0].status))
        first.start()
        deadline = time.monotonic() + 10
        while not requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests, "the first call never reached the upstream"
        refused, _ = exchange(service.port, call)
        assert refused.status == 503 and refused.headers["retry-after"] == "1"
        assert "retry shortly" in refused.json()["error"]["message"]
        assert len(requests) == 1  # the refused call was not sent
        release.set()
        first.join(30)
        assert requests[-1] == b"first:200"
        assert service.proxy.buffers.used == 0


def test_a_compressed_upload_is_forwarded_as_sent(tmp_path, serve):
    """aiohttp inflates request bodies by default; the proxy must forward the client's bytes."""
    seen: list[bytes] = []

    def script(sock: socket.socket, n: int) -> None:
        while request := read_request(sock):
            seen.append(request)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    upstream = serve(script)
    packed = zlib.compress(b'{"purpose": "batch"}' * 1000, wbits=31)
    with serving(tmp_path, files=_url(upstream)) as service:
        reply, _ = exchange(service.port, b"POST /proxy/files/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(packed), packed))
        assert reply.status == 200
    head, _, body = seen[0].partition(b"\r\n\r\n")
    head = head.lower()
    assert body == packed and b"content-encoding: gzip" in head and b"content-length: %d" % len(packed) in head


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_memory_held_for_uploads_is_given_back(tmp_path, serve):
    """#26 item 7: after concurrent uploads ended, the server kept most of their memory
    (glibc holds freed heap pages; bodies arrive in thousands of small pieces). Measured on
    `llmtray serve` in its own process, so nothing else's allocations blur the figure."""
    def sink(sock: socket.socket, n: int) -> None:
        while read_request(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    upstream = serve(sink)
    (tmp_path / "config.toml").write_text(f'[proxy.upstreams]\nsink = "{_url(upstream)}"\n')
    body = b'{"model": "gpt-4o-mini", "input": "' + bytes(30 * MIB) + b'"}'  # one buffer, shared by every client
    head = (b"POST /proxy/sink/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    proc, url, _ = start_serve(tmp_path)
    started = time.monotonic()
    port = int(url.rsplit(":", 1)[1])
    try:
        def upload() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(head)
                sock.sendall(body)
                assert Replies(sock).next().status in (200, 503)

        upload()  # warm: pools, threads, imports
        # and past serve's own start-up work (the first billing round, on a thread of its own, runs
        # FIRST_AFTER_S after start): measured during the uploads it kept ~12 MiB of their heap
        time.sleep(max(0.5, FIRST_AFTER_S + 1 - (time.monotonic() - started)))
        before = _rss_mib(proc.pid)
        clients = [threading.Thread(target=upload) for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(120)
        time.sleep(1)
        kept = _rss_mib(proc.pid) - before
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert kept < 48, f"{kept:.0f} MiB still held after the uploads ended"


def test_an_oversized_streamed_upload_is_a_413_not_a_gateway_error(tmp_path, serve, monkeypatch):
    """A chunked upload that passes the limit while it streams: the client's fault, said as such."""
    monkeypatch.setattr(proxy_module, "MAX_BODY_BYTES", 2 * MIB)

    def sink(sock: socket.socket, n: int) -> None:
        while sock.recv(MIB):
            pass

    upstream = serve(sink)
    with serving(tmp_path, files=_url(upstream)) as service:
        chunk = b"100000\r\n" + bytes(MIB) + b"\r\n"
        reply, _ = exchange(service.port, b"POST /proxy/files/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 4 + b"0\r\n\r\n")
        assert reply.status == 413 and "larger than 2 MiB" in reply.json()["error"]
        assert exchange(service.port, HEALTH)[0].status == 200
