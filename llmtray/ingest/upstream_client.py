"""The metering proxy's upstream hop: a small asyncio HTTP/1.1 client with a keep-alive pool.

Why not httpx (which the proxy used first): on the 2-core build machine one bare
`httpx.AsyncClient` call to a loopback upstream cost ~1.7 ms of CPU (request model, anyio
stream, h11 state machine, three layers of pool bookkeeping), and `httpcore`'s pool used
directly still ~1.0 ms — each alone above the proxy's whole budget of 1 ms added latency. This
module does only what a relay needs, on `asyncio.Protocol` (no stream-reader task hops): one
write per request head and body, a response head parsed in one pass, the body handed on as it
arrives (Content-Length, chunked or close-delimited framing; chunk data is passed on before its
chunk ends, so SSE is never held back), TLS through asyncio's `ssl`, connections reused when
the response was read to its end. `bench/proxy.py` prints all three floors side by side.

What httpx did by default and this keeps: certificates checked against `SSL_CERT_FILE` /
`SSL_CERT_DIR` or else certifi's bundle (not the OS store, which python.org's macOS builds and
frozen apps may lack), and `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` honoured
(an http:// proxy: a CONNECT tunnel for https upstreams, absolute-form requests for http ones;
loopback upstreams never go through one). Exceptions mirror httpx's names (`ConnectError`,
`ReadTimeout`, `RemoteProtocolError`, …) because those names appear in recorded events' error
texts. What it deliberately doesn't do: HTTP/2 (the proxy spoke HTTP/1.1 under httpx too, see
`proxy.py`), redirects, cookies, retries (a request whose connection fails is an error for the
caller, never sent twice: LLM calls are not idempotent).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import logging
import os
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import certifi

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256
MAX_CHUNK_LINE = 4096
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: ([^\r\n]*))?")
_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- errors (the names are httpx's: they end up in events' error texts) -------------------------

class UpstreamError(Exception):
    """Any failure talking to an upstream."""


class TimeoutException(UpstreamError):
    """A wait ran out (which one is the subclass)."""


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class ConnectError(UpstreamError):
    pass


class RemoteProtocolError(UpstreamError):
    """The upstream broke HTTP/1.1: a malformed head, a truncated body, a connection closed early."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each wait: `read` between two arrivals of response bytes, `write`
    for the request to leave, `pool` for a free connection when all are busy."""

    read: float = 600.0
    connect: float = 10.0
    write: float = 600.0
    pool: float = 30.0

    @classmethod
    def all(cls, seconds: float) -> Timeouts:
        return cls(seconds, seconds, seconds, seconds)


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port (the pool's key), and the Host header for it."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> bytes:
        return self._host() + (b":%d" % self.port if self.port != _DEFAULT_PORTS[self.scheme] else b"")

    @property
    def authority(self) -> bytes:
        """host:port, always with the port (a CONNECT target)."""
        return self._host() + b":%d" % self.port

    def _host(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host.encode("idna") if not host.isascii() else host.encode("ascii")


@dataclass(frozen=True)
class ForwardProxy:
    """An http:// proxy that upstream connections go through."""

    host: str
    port: int
    authorization: bytes | None = None  # Proxy-Authorization, from the proxy URL's credentials


def environment_proxies() -> dict[str, ForwardProxy]:
    """Upstream scheme → proxy, from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (and the OS settings
    `urllib` reads), as httpx's `trust_env` did. Other kinds of proxy (socks, https://) are
    skipped with a warning: the connection then goes direct."""
    found = urllib.request.getproxies()
    out: dict[str, ForwardProxy] = {}
    for scheme in ("http", "https"):
        url = found.get(scheme) or found.get("all")
        if not url:
            continue
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            log.warning("proxy: the %s proxy %r is not an http:// proxy; %s upstreams are reached directly",
                        scheme, parts._replace(netloc=parts.hostname or "").geturl(), scheme)
            continue
        auth = None
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = b"Basic " + base64.b64encode(secret)
        out[scheme] = ForwardProxy(parts.hostname, parts.port or 80, auth)
    return out


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# --- one connection ----------------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One socket: a receive buffer the response reads from, and a single waiter for more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: UpstreamClient, origin: Origin,
                 live: set[_Connection]):
        self.loop, self.pool, self.origin = loop, pool, origin
        self._live = live  # the client's open sockets, whatever their state
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False  # the upstream closed its side (or the socket failed: see `error`)
        self.error: Exception | None = None
        self.idle_since = 0.0
        self.target_prefix = b""  # through a plain proxy: requests name the origin (absolute-form)
        self.proxy_authorization: bytes | None = None
        self.discarded = False  # closed by the pool; its place there already freed
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        self.pool._forget_idle(self)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        self.resume_writing()  # a sender waiting to drain goes on to find the connection closed
        self.pool._forget_idle(self)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # used by requests
    @property
    def usable(self) -> bool:
        return not self.eof and self.transport is not None and not self.transport.is_closing()

    async def wait_more(self, timeout: float) -> None:
        """Until more bytes (or the end) arrive; `ReadTimeout` after `timeout` without any."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter, ReadTimeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def drained(self, timeout: float) -> None:
        """Until the socket's send buffer has room again; `WriteTimeout` if it stays full."""
        drain = self._drain
        if drain is None or drain.done():
            return
        timer = self.loop.call_later(timeout, _expire, drain, WriteTimeout)
        try:
            await drain
        finally:
            timer.cancel()


def _expire(future: asyncio.Future[None], kind: type[TimeoutException]) -> None:
    if not future.done():
        future.set_exception(kind(f"no answer within the {kind.__name__[:-7].lower()} timeout"))


# --- one response --------------------------------------------------------------------------------

class UpstreamResponse:
    """A response whose head has arrived; the body is read with `aiter_raw()` or `read()`.
    `close()` puts the connection back in the pool if the body was read to its end, else
    closes it (an unread body can't be skipped on a keep-alive connection)."""

    def __init__(self, conn: _Connection, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 length: int | None, chunked: bool, reusable: bool, read_timeout: float):
        self.status_code = status
        self.reason = reason
        self.raw_headers = headers
        self._conn: _Connection | None = conn
        self._left = length  # Content-Length bytes still to come (None: chunked or until close)
        self._chunked = chunked
        self._chunk_left = 0  # bytes of the current chunk still to come
        self._crlf = False  # a chunk's data was read, its CRLF not yet
        self._trailers = False  # past the last chunk, reading trailers
        self._reusable = reusable
        self._timeout = read_timeout
        self.done = length == 0

    def header(self, name: bytes) -> str | None:
        """The first value of a header (lower-case name), as text."""
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    def header_values(self, name: bytes) -> list[str]:
        return [value.decode("latin-1") for key, value in self.raw_headers if key.lower() == name]

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body without its transfer framing, in pieces as they arrive: everything received
        so far is handed on at once, nothing is waited for that has not been asked for."""
        while not self.done:
            piece = await self._next()
            if piece:
                yield piece

    async def read(self) -> bytes:
        """The whole body (for small, Content-Length bodies)."""
        parts = [piece async for piece in self.aiter_raw()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _next(self) -> bytes:
        conn = self._conn
        assert conn is not None, "the response is closed"
        while True:
            piece = self._take(conn.buf)
            if piece or self.done:
                return piece
            if conn.eof:
                return self._ended(conn)
            await conn.wait_more(self._timeout)

    def _take(self, buf: bytearray) -> bytes:
        """Body bytes available in `buf` now (b"" if none yet), consumed from it."""
        if not buf:
            return b""
        if not self._chunked:
            if self._left is None:  # until the connection closes
                piece = bytes(buf)
                buf.clear()
                return piece
            n = min(self._left, len(buf))
            piece = bytes(buf[:n])
            del buf[:n]
            self._left -= n
            self.done = self._left == 0
            return piece
        out = bytearray()
        while buf and not self.done:
            if self._chunk_left:  # chunk data: handed on as it comes, before its chunk is complete
                n = min(self._chunk_left, len(buf))
                out += buf[:n]
                del buf[:n]
                self._chunk_left -= n
                self._crlf = not self._chunk_left
                continue
            if self._crlf:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                del buf[:2]
                self._crlf = False
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise RemoteProtocolError("chunk header line too long")
                break
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self._trailers:
                self.done = not line  # the blank line after the trailers ends the body
                continue
            m = _CHUNK_SIZE.fullmatch(line)
            if m is None:
                raise RemoteProtocolError(f"malformed chunk size line {line[:40]!r}")
            self._chunk_left = int(m.group(1), 16)
            self._trailers = not self._chunk_left
        return bytes(out)

    def _ended(self, conn: _Connection) -> bytes:
        """The connection closed: the end of a close-delimited body, else a cut one."""
        if not self._chunked and self._left is None:
            self.done = True
            self._reusable = False
            return b""
        what = "incomplete chunked read" if self._chunked else f"{self._left} bytes of the body missing"
        cause = f" ({type(conn.error).__name__}: {conn.error})" if conn.error else ""
        raise RemoteProtocolError(f"peer closed connection without sending complete message body: {what}{cause}")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.done and self._reusable and conn.usable and not conn.buf:
            conn.pool._release(conn)
        else:
            conn.pool._discard(conn)


# --- the pool ------------------------------------------------------------------------------------

class UpstreamClient:
    """Keep-alive connections per origin, used from one event loop (created on it, lazily)."""

    def __init__(self, *, max_connections: int = 256, max_idle: int = 64, keepalive_expiry: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, proxies: Mapping[str, ForwardProxy] | None = None):
        """`proxies` (upstream scheme → proxy) defaults to the environment's."""
        self.max_connections, self.max_idle, self.keepalive_expiry = max_connections, max_idle, keepalive_expiry
        self._ssl = ssl_context
        self._proxies = environment_proxies() if proxies is None else dict(proxies)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._n_idle = 0
        self._open = 0  # connections open or being opened
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._live: set[_Connection] = set()
        self._closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # built on first HTTPS use: loading the CAs takes a while
            if os.environ.get("SSL_CERT_FILE"):
                self._ssl = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self._ssl = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
            else:
                self._ssl = ssl.create_default_context(cafile=certifi.where())
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    async def send(self, method: str, origin: Origin, target: bytes, headers: Sequence[tuple[bytes, bytes]],
                   body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        """Send one request and return once the response head has arrived. Adds Host and
        Content-Length; `headers` must hold no framing headers of their own."""
        conn = await self._acquire(origin, timeouts)
        try:
            head = [b"%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method.encode("ascii"), conn.target_prefix, target,
                                                           origin.host_header)]
            if body or method in ("POST", "PUT", "PATCH"):
                head.append(b"Content-Length: %d\r\n" % len(body))
            if conn.proxy_authorization:
                head.append(b"Proxy-Authorization: %s\r\n" % conn.proxy_authorization)
            head += [b"%s: %s\r\n" % pair for pair in headers]
            head.append(b"\r\n")
            if len(body) < 65536:
                head.append(body)
                conn.transport.write(b"".join(head))  # type: ignore[union-attr]
            else:
                conn.transport.write(b"".join(head))  # type: ignore[union-attr]
                conn.transport.write(body)  # type: ignore[union-attr]
                await conn.drained(timeouts.write)
            return await self._response(conn, method, timeouts.read)
        except BaseException:
            self._discard(conn)
            raise

    async def _response(self, conn: _Connection, method: str, timeout: float) -> UpstreamResponse:
        buf = conn.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise RemoteProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
                if conn.eof:
                    cause = f": {type(conn.error).__name__}: {conn.error}" if conn.error else ""
                    if buf:
                        raise RemoteProtocolError(f"connection closed in the middle of the response head{cause}")
                    raise RemoteProtocolError(f"server disconnected without sending a response{cause}")
                searched = max(0, len(buf) - 3)
                await conn.wait_more(timeout)
                end = buf.find(b"\r\n\r\n", searched)
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[:end + 4]
            m = _STATUS_LINE.fullmatch(lines[0])
            if m is None:
                raise RemoteProtocolError(f"malformed status line {lines[0][:60]!r}")
            status = int(m.group(2))
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: informational, the real head follows
            break
        if len(lines) - 1 > MAX_HEADERS:
            raise RemoteProtocolError(f"more than {MAX_HEADERS} response headers")
        headers = []
        length: int | None = None
        chunked = False
        keep_alive = m.group(1) == b"1"
        for line in lines[1:]:
            h = _HEADER.fullmatch(line)
            if h is None:
                raise RemoteProtocolError(f"malformed response header line {line[:60]!r}")
            name, value = h.group(1), h.group(2)
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                values = {v.strip() for v in value.split(b",")}
                if len(values) != 1 or not (v := values.pop()).isdigit() or (length is not None and int(v) != length):
                    raise RemoteProtocolError(f"invalid Content-Length {value[:30]!r}")
                length = int(v)
            elif lower == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise RemoteProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
                chunked = True
            elif lower == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if status == 101:
            raise RemoteProtocolError("the upstream switched protocols; the proxy relays HTTP/1.1 only")
        if method == "HEAD" or status in (204, 304) or (method == "CONNECT" and 200 <= status < 300):
            length, chunked = 0, False
        elif chunked:
            keep_alive = keep_alive and length is None  # with a Content-Length too: chunked wins, then close
            length = None
        elif length is None:
            keep_alive = False  # delimited by the connection's close
        return UpstreamResponse(conn, status, m.group(3) or b"", headers, length, chunked, keep_alive, timeout)

    # --- connections --------------------------------------------------------------------------

    async def _acquire(self, origin: Origin, timeouts: Timeouts) -> _Connection:
        if self._closed:
            raise ConnectError("the upstream client is closed")
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._n_idle -= 1
            if conn.usable and now - conn.idle_since < self.keepalive_expiry:
                return conn
            self._discard(conn)
        if self._open >= self.max_connections and self._n_idle:  # idle ones of other origins make room
            oldest = min((c for conns in self._idle.values() for c in conns), key=lambda c: c.idle_since)
            self._forget_idle(oldest)
        if self._open >= self.max_connections:
            await self._wait_for_room(timeouts.pool)
            return await self._acquire(origin, timeouts)
        self._open += 1
        try:
            return await self._connect(origin, timeouts.connect)
        except BaseException:
            self._open -= 1
            self._wake_waiter()
            raise

    async def _wait_for_room(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        timer = loop.call_later(timeout, _expire, waiter, PoolTimeout)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_waiter()  # the room we were given goes to the next in line
            raise
        finally:
            timer.cancel()
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def _wake_waiter(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context if origin.scheme == "https" else None
        proxy = self._proxies.get(origin.scheme)
        if proxy is not None and (_is_loopback(origin.host) or urllib.request.proxy_bypass(origin.host)):
            proxy = None  # NO_PROXY
        host, port = (proxy.host, proxy.port) if proxy is not None else (origin.host, origin.port)
        direct_tls = tls if proxy is None else None
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self, origin, self._live), host, port, ssl=direct_tls,
                    server_hostname=origin.host if direct_tls else None,
                    ssl_handshake_timeout=timeout if direct_tls else None)
                if proxy is not None and tls is not None:
                    await self._tunnel(conn, proxy, tls, timeout)
                elif proxy is not None:
                    conn.target_prefix = b"http://" + origin.host_header
                    conn.proxy_authorization = proxy.authorization
        except BaseException as exc:
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            via = f" through the proxy {proxy.host}:{proxy.port}" if proxy is not None else ""
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout(f"no connection to {origin.host}:{origin.port}{via} "
                                     f"within {timeout:g} s") from None
            if isinstance(exc, (OSError, ssl.SSLError, RemoteProtocolError)):
                raise ConnectError(f"{str(exc) or type(exc).__name__}{via}") from None
            raise
        return conn

    async def _tunnel(self, conn: _Connection, proxy: ForwardProxy, tls: ssl.SSLContext, timeout: float) -> None:
        """CONNECT through `proxy`, then TLS with the upstream inside the tunnel."""
        origin = conn.origin
        head = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (origin.authority, origin.authority)
        if proxy.authorization:
            head += b"Proxy-Authorization: %s\r\n" % proxy.authorization
        assert conn.transport is not None
        conn.transport.write(head + b"\r\n")
        answer = await self._response(conn, "CONNECT", timeout)
        if not 200 <= answer.status_code < 300:
            raise ConnectError(f"the proxy {proxy.host}:{proxy.port} refused a tunnel to {origin.host}:{origin.port}: "
                               f"HTTP {answer.status_code} {answer.reason.decode('latin-1')}")
        transport = await asyncio.get_running_loop().start_tls(
            conn.transport, conn, tls, server_hostname=origin.host, ssl_handshake_timeout=timeout)
        assert transport is not None
        conn.transport = transport

    def _release(self, conn: _Connection) -> None:
        """A connection whose response was read to the end: kept for the next request."""
        if self._closed or self._n_idle >= self.max_idle:
            self._discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._n_idle += 1
        self._wake_waiter()

    def _discard(self, conn: _Connection) -> None:
        """A connection that can't be reused: closed, and its place in the pool freed (once)."""
        if conn.discarded:
            return
        conn.discarded = True
        self._forget_idle(conn)
        if conn.transport is not None:
            conn.transport.close()
        self._open -= 1
        self._wake_waiter()

    def _forget_idle(self, conn: _Connection) -> None:
        """An idle connection the upstream closed leaves the pool at once."""
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
            self._n_idle -= 1
            self._discard(conn)

    async def aclose(self) -> None:
        """Close every connection now (at shutdown: no TLS close_notify exchange to wait for,
        so no socket outlives the loop)."""
        self._closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                self._forget_idle(conn)
        self._idle.clear()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(PoolTimeout("the upstream client is closing"))
        for conn in list(self._live):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)  # the transports' connection_lost callbacks close the sockets

    @property
    def open_connections(self) -> int:
        """Connections open or being opened (for tests and the bench)."""
        return self._open
