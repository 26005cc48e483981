"""The proxy's upstream hop (aiohttp sessions, `llmtray.ingest.upstream`) against scripted servers
on real sockets: what the proxy relies on — nothing added to the request but Host and framing,
framings (Content-Length, chunked split anywhere, close-delimited), chunk data handed on at once,
keep-alive reuse, an upstream that closes a pooled connection, broken answers with httpx's error
names, timeouts, the pool limit, TLS with a self-signed certificate, and forward proxies from the
environment (a CONNECT tunnel, absolute-form requests)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aiohttp import ClientResponse

from llmtray.ingest.upstream import (ConnectError, ConnectTimeout, Origin, ReadTimeout, RemoteProtocolError, Timeouts,
                                     UpstreamClient, body_pieces)

FAST = Timeouts.all(5.0)
Script = Callable[[socket.socket, int], None]


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and runs `script(sock, n)` for the n-th (from 0), each
    in its own thread; counts connections. Everything is joined and closed by `close()`."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None):
        self.script, self.tls = script, tls
        self.connections = 0
        self.release = threading.Event()  # scripts may wait on it
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="scripted-upstream")
        self._acceptor.start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def origin(self) -> Origin:
        return Origin("https" if self.tls else "http", "127.0.0.1", self.port)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            n, self.connections = self.connections, self.connections + 1
            thread = threading.Thread(target=self._run, args=(sock, n))
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, n: int) -> None:
        sock.settimeout(10)
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.script(sock, n)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self.release.set()
        self._stop.set()
        self._acceptor.join(10)
        for thread in self._threads:
            thread.join(10)
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(script, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def read_request(sock: socket.socket) -> bytes:
    """One request (head and Content-Length body) from the socket; b"" when it closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def answer(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def keep_answering(sock: socket.socket, n: int) -> None:
    while read_request(sock):
        sock.sendall(answer())


async def read(response: ClientResponse) -> bytes:
    """The whole body, through the proxy's own reader (errors translated), then released."""
    try:
        return b"".join([piece async for piece in body_pieces(response)])
    finally:
        response.release()


async def call(client: UpstreamClient, server: ScriptedServer, timeouts: Timeouts = FAST,
               body: bytes = b'{"model": "m"}') -> tuple[ClientResponse, bytes]:
    response = await client.send("POST", server.origin(), "/v1/chat/completions",
                                 [("Content-Type", "application/json")], body, timeouts)
    return response, await read(response)


def run(coro_fn: Callable[[UpstreamClient], object], **kw: object) -> object:
    """Run `coro_fn(client)` on a fresh loop with a fresh client, closed afterwards."""
    async def main() -> object:
        client = UpstreamClient(**kw)  # type: ignore[arg-type]
        try:
            return await coro_fn(client)  # type: ignore[misc]
        finally:
            await client.aclose()
    return asyncio.run(main())


# --- framing -------------------------------------------------------------------------------------


def test_request_is_sent_in_one_piece_with_host_and_length(serve):
    seen: list[bytes] = []

    def script(sock: socket.socket, n: int) -> None:
        seen.append(read_request(sock))
        sock.sendall(answer())

    server = serve(script)

    async def go(client: UpstreamClient) -> bytes:
        return (await call(client, server, body=b'{"a": 1}'))[1]

    assert run(go) == b'{"ok": true}'
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and body == b'{"a": 1}'
    assert sorted(lines[1:]) == sorted([b"Host: 127.0.0.1:%d" % server.port, b"Content-Length: 8",
                                        b"Content-Type: application/json"])  # nothing of aiohttp's own


def test_a_large_request_body_is_sent_whole(serve):
    """Bigger than the socket buffers: written with flow control, then the answer is read."""
    def script(sock: socket.socket, n: int) -> None:
        request = read_request(sock)
        sock.sendall(answer(b"%d" % len(request.partition(b"\r\n\r\n")[2])))

    server = serve(script)
    body = b"x" * (8 << 20)
    assert run(lambda client: call(client, server, body=body))[1] == b"%d" % len(body)  # type: ignore[index]


def test_chunked_body_split_at_every_byte_is_decoded_and_the_connection_reused(serve):
    wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: a\r\nx-kept: b\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer-Field: x\r\n\r\n")

    def script(sock: socket.socket, n: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while read_request(sock):
            for i in range(len(wire)):  # byte by byte: every split point of head and framing
                sock.sendall(wire[i:i + 1])

    server = serve(script)

    async def go(client: UpstreamClient) -> list[object]:
        out: list[object] = []
        for _ in range(3):
            response, body = await call(client, server)
            out.append((response.status, body, response.headers.getall("x-kept")))
        out.append(client.open_connections)
        return out

    result = run(go)
    assert result[:3] == [(200, b"hello 0123456789", ["a", "b"])] * 3
    assert result[3] == 1 and server.connections == 1  # one keep-alive connection for all three


def test_chunk_data_is_handed_on_before_its_chunk_is_complete(serve):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"20\r\ndata: first half\n\n")  # 18 of the chunk's 32 bytes
        server.release.wait(10)
        sock.sendall(b"data: second\n\n\r\n0\r\n\r\n")

    server = serve(script)

    async def go(client: UpstreamClient) -> list[bytes]:
        response = await client.send("POST", server.origin(), "/", [], b"{}", FAST)
        pieces = []
        try:
            async for piece in body_pieces(response):
                pieces.append(piece)
                server.release.set()  # only now does the rest of the chunk come
        finally:
            response.close()
        return pieces

    assert run(go) == [b"data: first half\n\n", b"data: second\n\n"]


def test_close_delimited_body_and_connection_close_are_not_reused(serve):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        if n == 0:  # no length, no chunking: the body ends when the connection does
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        else:
            sock.sendall(answer(b"bye", b"Connection: close\r\n"))

    server = serve(script)

    async def go(client: UpstreamClient) -> list[bytes]:
        bodies = [(await call(client, server))[1], (await call(client, server))[1]]
        assert client.open_connections == 0
        return bodies

    assert run(go) == [b"until the end", b"bye"]
    assert server.connections == 2


def test_a_pooled_connection_the_upstream_closed_is_replaced(serve):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(answer())  # keep-alive by default, but closed right after (an idle timeout)

    server = serve(script)

    async def go(client: UpstreamClient) -> list[bytes]:
        first = (await call(client, server))[1]
        for _ in range(500):  # the pool learns of the close from the loop, not from the next request
            if client.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        assert client.open_connections == 0
        return [first, (await call(client, server))[1]]

    assert run(go) == [b'{"ok": true}'] * 2
    assert server.connections == 2


def test_interim_responses_are_skipped(serve):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + answer(b"final"))

    server = serve(script)
    response, body = run(lambda client: call(client, server))  # type: ignore[misc]
    assert (response.status, body) == (200, b"final")


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, message", [  # aiohttp's words, under httpx's exception name
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "not completed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "not completed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "Content-Length"),
    (b"ICY 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nContent-", "Content-"),
    (b"", "disconnected"),
])
def test_broken_answers_are_protocol_errors(serve, reply: bytes, message: str):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(reply)
        sock.shutdown(socket.SHUT_WR)

    server = serve(script)

    async def go(client: UpstreamClient) -> int:
        with pytest.raises(RemoteProtocolError, match=message):
            await call(client, server)
        return client.open_connections

    assert run(go) == 0  # the broken connection was closed, not pooled


def test_silence_is_a_read_timeout_and_the_connection_is_dropped(serve):
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        server.release.wait(10)

    server = serve(script)

    async def go(client: UpstreamClient) -> int:
        with pytest.raises(ReadTimeout):
            await call(client, server, Timeouts.all(0.2))
        return client.open_connections

    assert run(go) == 0


def test_unreachable_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = Origin("http", "127.0.0.1", probe.getsockname()[1])

    async def go(client: UpstreamClient) -> None:
        with pytest.raises(ConnectError):
            await client.send("GET", dead, "/", [], None, FAST)
        assert client.open_connections == 0

    run(go)


def test_pool_limit_queues_requests_then_times_out(serve):
    """aiohttp counts the wait for a pooled connection into its connect timeout: a ConnectTimeout."""
    def script(sock: socket.socket, n: int) -> None:
        read_request(sock)
        server.release.wait(10)
        sock.sendall(answer())
        keep_answering(sock, n)

    server = serve(script)

    async def go(client: UpstreamClient) -> list[bytes]:
        first = asyncio.create_task(call(client, server))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectTimeout):  # the only connection is busy
            await call(client, server, Timeouts(read=5, connect=5, write=5, pool=0.1))
        second = asyncio.create_task(call(client, server))  # waits for the first to give its connection back
        await asyncio.sleep(0.05)
        server.release.set()
        return [(await first)[1], (await second)[1]]

    assert run(go, max_connections=1) == [b'{"ok": true}'] * 2
    assert server.connections == 1


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmtray test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("upstream.test"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_tls_upstream_verified_against_its_certificate(serve, certificate):
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = serve(keep_answering, tls=server_ctx)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def go(client: UpstreamClient) -> list[bytes]:
        bodies = [(await call(client, server))[1] for _ in range(2)]
        assert client.open_connections == 1  # kept alive over TLS too
        return bodies

    assert run(go, ssl_context=trusting) == [b'{"ok": true}'] * 2
    assert server.connections == 1

    async def untrusted(client: UpstreamClient) -> None:  # the system's CAs don't know it
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await call(client, server)

    run(untrusted)


# --- forward proxies -----------------------------------------------------------------------------


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def tunnelling_proxy(target_port: int, seen: list[bytes], status: bytes = b"200 Connection established") -> Script:
    """A CONNECT proxy that sends every tunnel to 127.0.0.1:`target_port` (whatever host was named)."""
    def script(sock: socket.socket, n: int) -> None:
        head = read_request(sock)
        seen.append(head)
        sock.sendall(b"HTTP/1.1 %s\r\n\r\n" % status)
        if not status.startswith(b"200"):
            return
        with socket.create_connection(("127.0.0.1", target_port), timeout=10) as upstream:
            back = threading.Thread(target=_pipe, args=(upstream, sock))
            back.start()
            _pipe(sock, upstream)
            back.join(10)
    return script


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_https_upstream_through_a_connect_tunnel_from_the_environment(serve, certificate, no_proxy_env):
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    upstream = serve(keep_answering, tls=server_ctx)
    seen: list[bytes] = []
    proxy = serve(tunnelling_proxy(upstream.port, seen))
    no_proxy_env.setenv("HTTPS_PROXY", f"http://u:p@127.0.0.1:{proxy.port}")
    origin = Origin("https", "upstream.test", 443)  # only the proxy resolves it; TLS checks the name

    async def go(client: UpstreamClient) -> list[bytes]:
        return [await read(await client.send("GET", origin, "/v1/models", [], None, FAST)) for _ in range(2)]

    assert run(go, ssl_context=ssl.create_default_context(cafile=str(cert))) == [b'{"ok": true}'] * 2
    [tunnel] = seen  # one tunnel, kept alive
    lines = tunnel.split(b"\r\n")
    assert lines[0] == b"CONNECT upstream.test:443 HTTP/1.1" and b"Proxy-Authorization: Basic dTpw" in lines
    assert upstream.connections == 1


def test_a_refused_tunnel_is_a_connect_error(serve, no_proxy_env):
    proxy = serve(tunnelling_proxy(1, [], b"407 Proxy Authentication Required"))
    no_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")

    async def go(client: UpstreamClient) -> None:
        with pytest.raises(ConnectError, match="407"):
            await client.send("GET", Origin("https", "upstream.test", 443), "/", [], None, FAST)
        assert client.open_connections == 0

    run(go)


def test_http_upstream_through_a_proxy_gets_absolute_form_requests(serve, no_proxy_env):
    seen: list[bytes] = []

    def script(sock: socket.socket, n: int) -> None:
        while request := read_request(sock):
            seen.append(request.split(b"\r\n\r\n")[0])
            sock.sendall(answer())

    proxy = serve(script)
    no_proxy_env.setenv("HTTP_PROXY", f"http://u:p@127.0.0.1:{proxy.port}")
    origin = Origin("http", "upstream.test", 8080)

    async def go(client: UpstreamClient) -> bytes:
        return await read(await client.send("GET", origin, "/v1/models?x=1", [("Authorization", "Bearer k")], None,
                                            FAST))

    assert run(go) == b'{"ok": true}'
    [request] = seen
    lines = request.split(b"\r\n")
    assert lines[0] == b"GET http://upstream.test:8080/v1/models?x=1 HTTP/1.1"
    assert {b"Host: upstream.test:8080", b"Proxy-Authorization: Basic dTpw", b"Authorization: Bearer k"} <= set(lines)


def test_loopback_upstreams_never_go_through_a_proxy(serve, no_proxy_env):
    server = serve(keep_answering)
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    assert run(lambda client: call(client, server))[1] == b'{"ok": true}'  # type: ignore[index]
