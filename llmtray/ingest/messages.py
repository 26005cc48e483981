"""What the server hands a mounted handler and what it takes back, and the limits it enforces.

These are llmtray's own small types rather than aiohttp's request and response objects, so a
handler (the metering proxy, later the OTLP receiver) is a plain async function that tests can
call and that doesn't care how the bytes were framed: `server.py` turns aiohttp's request into a
`Request` and a `Response` into aiohttp's answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

# Hop-by-hop headers belong to one connection; a handler's value would corrupt the server's framing.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "content-length"})


@dataclass(frozen=True)
class Limits:
    """Every size and wait the server accepts; tests shrink the timeouts."""

    max_header_bytes: int = 32 * 1024  # one header line (aiohttp's parser limits lines, not the whole head)
    max_headers: int = 100
    max_body_bytes: int = 8 * 1024 * 1024
    header_timeout: float = 30.0  # an idle keep-alive connection, or a request head trickling in
    # A new connection must send its first request head within this: hundreds of half-sent heads
    # would otherwise hold their slots for the whole `header_timeout`.
    first_head_timeout: float = 10.0
    body_timeout: float = 30.0  # a whole buffered body, from the end of the head
    max_connections: int = 256
    # Requests under a mount (the proxy) in progress at once, at most: the rest of
    # `max_connections` is kept for the API, so proxy abuse can't lock out /v1/events and /v1/health.
    max_mounted_requests: int = 224
    shutdown_grace: float = 5.0  # in-flight requests get this long to finish on stop
    linger: float = 2.0  # after an early error, how long unread request bytes are drained


class Headers:
    """Request headers in arrival order; names lower-cased, values as Latin-1 text (every byte kept)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key == name]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One request as handlers see it. `path` and `query` are raw (not percent-decoded), so a
    proxy forwards exactly what it was sent. A mount that buffers gets the whole `body`; one that
    streams gets `stream` (the body's pieces as they arrive, within the mount's size limit) and
    `length` (the declared Content-Length, None when chunked)."""

    method: str
    path: str
    query: str
    version: str
    headers: Headers
    client: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class Response:
    """What a handler returns. `body` may be an async iterator of chunks (SSE, proxied streams):
    each chunk is written as it comes (the next is asked for once the client's socket has room),
    chunked-encoded unless `headers` carry a Content-Length. Hop-by-hop headers from a handler
    are dropped (the server does the framing)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""
