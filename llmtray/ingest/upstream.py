"""The metering proxy's upstream hop: one `aiohttp.ClientSession` per upstream origin.

Each session pools keep-alive connections to its origin, checks certificates against
`SSL_CERT_FILE` / `SSL_CERT_DIR` or else certifi's bundle (not the OS store, which python.org's
macOS builds and frozen apps may lack), and honours `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`
(`trust_env`; loopback upstreams never go through a proxy). Bodies are passed through as they
are (`auto_decompress=False`: the client gets the provider's bytes), nothing is retried (an LLM
call is never sent twice), and no header is added but Host and the body's framing.

aiohttp's failures are renamed to httpx's names (`ConnectError`, `ReadTimeout`,
`RemoteProtocolError`, …), which the proxy used before and which appear in recorded events'
error texts. aiohttp has no write timeout: a request body that can't be sent within the read
timeout fails as a `ReadTimeout` of the answer instead.
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import certifi
from yarl import URL

from llmtray.ingest import raw_headers
from llmtray.ingest.auth import is_loopback

raw_headers.install()  # headers pass through byte for byte, UTF-8 or not

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers aiohttp would add on its own: the proxy forwards the client's, or none.
_NOT_ADDED = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
LARGE_BODY = 1024 * 1024
READ_BUFFER = 64 * 1024  # per response: aiohttp pauses the upstream socket at twice this unread


class UpstreamError(Exception):
    """Any failure talking to an upstream (the subclass name says which, like httpx's)."""


class TimeoutException(UpstreamError):
    """A wait ran out (which one is the subclass)."""


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class ConnectError(UpstreamError):
    pass


class RemoteProtocolError(UpstreamError):
    """The upstream broke HTTP/1.1: a malformed head, a truncated body, a connection closed early."""


def translated(exc: BaseException) -> UpstreamError:
    """aiohttp's exception as one of ours (the message kept, credentials never in it)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(text)
    if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError)):
        return ReadTimeout(text)
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError)):
        return ConnectError(text)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return ConnectError(f"the forward proxy refused the connection: HTTP {exc.status} {exc.message}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return RemoteProtocolError(text)
    return ConnectError(f"{type(exc).__name__}: {text.split(' Connection<', 1)[0]}")  # no pool internals


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each wait: `read` between two arrivals of response bytes, `connect`
    for a new connection, `pool` for a free one when all are busy (aiohttp counts it into the
    wait for a connection, whether pooled or new); `write` is kept for callers but aiohttp has
    no such timeout."""

    read: float = 600.0
    connect: float = 10.0
    write: float = 600.0
    pool: float = 30.0

    @classmethod
    def all(cls, seconds: float) -> Timeouts:
        return cls(seconds, seconds, seconds, seconds)

    def aiohttp(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, connect=self.pool, sock_connect=self.connect, sock_read=self.read)


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port (one session each)."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port != _DEFAULT_PORTS[self.scheme] else ""
        return f"{self.scheme}://{host}{port}"


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default trust: SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle."""
    if os.environ.get("SSL_CERT_FILE"):
        context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        context = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    else:
        context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


class UpstreamClient:
    """Sessions per origin, created lazily on the server's loop and closed with `aclose()`."""

    def __init__(self, *, max_connections: int = 256, keepalive_expiry: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None):
        self.max_connections, self.keepalive_expiry = max_connections, keepalive_expiry
        self._ssl = ssl_context
        self._sessions: dict[Origin, aiohttp.ClientSession] = {}

    def _session(self, origin: Origin) -> aiohttp.ClientSession:
        session = self._sessions.get(origin)
        if session is None:
            if origin.scheme == "https" and self._ssl is None:
                self._ssl = default_ssl_context()  # on first HTTPS use: loading the CAs takes a while
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=self.keepalive_expiry,
                                             ssl=self._ssl if origin.scheme == "https" else False)
            session = self._sessions[origin] = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=not is_loopback(origin.host),
                skip_auto_headers=_NOT_ADDED, read_bufsize=READ_BUFFER, max_line_size=64 * 1024,
                max_field_size=64 * 1024, cookie_jar=aiohttp.DummyCookieJar())
        return session

    async def send(self, method: str, origin: Origin, target: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None, timeouts: Timeouts) -> aiohttp.ClientResponse:
        """Send one request and return once the response head has arrived. `target` is the raw
        path and query (sent as is); `headers` hold no framing headers but a Content-Length for
        a streamed body of known length."""
        url = URL(origin.url + target, encoded=True)
        if isinstance(body, bytes) and len(body) > LARGE_BODY:
            body = io.BytesIO(body)  # written piece by piece as the socket takes it, not in one blocking go
        try:
            return await self._session(origin).request(
                method, url, headers=headers, data=body, allow_redirects=False, timeout=timeouts.aiohttp(),
                compress=None, chunked=None, expect100=False, raise_for_status=False, auto_decompress=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translated(exc) from None

    @property
    def open_connections(self) -> int:
        """Connections still connected, busy or idle (for tests and the bench; reads aiohttp's
        pool bookkeeping, which has no public count)."""
        count = 0
        for session in self._sessions.values():
            connector = session.connector
            if isinstance(connector, aiohttp.TCPConnector):
                count += len(connector._acquired)
                count += sum(1 for idle in connector._conns.values() for proto, _ in idle if proto.is_connected())
        return count

    async def aclose(self) -> None:
        """Close every session (at shutdown)."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        await asyncio.sleep(0)


async def body_pieces(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The response body as it arrives, in the pieces the socket delivered, failures translated."""
    content = response.content
    while True:
        try:
            piece = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translated(exc) from None
        if not piece:
            return
        yield piece
