"""aiohttp's connection handling plus what the ingest server promises and aiohttp doesn't do.

aiohttp's `RequestHandler` parses requests with llhttp, keeps connections alive, lingers to let
a client read an early error and shuts down gracefully. What it lacks, added here:

- A deadline for the request head. aiohttp only times out *idle* connections, silently; a client
  trickling a head in (slowloris) gets `408` after the timeout, and a brand-new connection must
  send its first head within `Limits.first_head_timeout` (shorter than the keep-alive timeout:
  hundreds of half-open connections must not hold their slots for long).
- A connection budget: at `Limits.max_connections`, a new connection first evicts the oldest
  one that is not handling a request (idle, or still sending its head); only when every slot
  is busy does it get `503` with `Retry-After`. So half-sent heads can't lock anyone out.
- Errors as JSON in our words: a malformed request gets `{"error": "..."}` naming the problem
  (431 for an oversized head, 505 for another HTTP version), never aiohttp's text page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (BadHttpMessage, BadStatusLine, HttpProcessingError, InvalidHeader,
                                     LineTooLong)
from aiohttp.web_protocol import RequestHandler

from llmtray.ingest.messages import Limits
from llmtray.ingest.reply import HttpError

log = logging.getLogger(__name__)


def raw_reply(error: HttpError, server: str) -> bytes:
    """A complete JSON error answer, for the moments there is no request object to answer."""
    body = error.reply().encode()
    lines = [f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}", f"Server: {server}",
             "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in error.headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def parse_error(exc: BaseException | None, message: str | None = None) -> HttpError:
    """What a parse failure means in the words the API documents (and the tests pin)."""
    text = message or (str(getattr(exc, "message", "")) if exc is not None else "") or str(exc or "")
    lower = text.lower()
    if isinstance(exc, LineTooLong) or "too long" in lower or "header overflow" in lower:
        return HttpError(431, "request head too large (a line over the limit)")
    if "too many headers" in lower:
        return HttpError(431, "too many request headers")
    if "version" in lower:
        return HttpError(505, "only HTTP/1.1 and HTTP/1.0 are supported")
    if "content-length" in lower and "transfer-encoding" in lower:
        return HttpError(400, "both Transfer-Encoding and Content-Length given")
    if "duplicate content-length" in lower:
        return HttpError(400, "conflicting Content-Length headers")
    duplicate = re.search(r"duplicate '([!#$%&'*+\-.^_`|~0-9A-Za-z]+)' header", text, re.IGNORECASE)
    if duplicate:
        return HttpError(400, f"header {duplicate.group(1)!r} given more than once (it takes one value)")
    if "content-length" in lower:
        return HttpError(400, "invalid Content-Length")
    if "chunk" in lower:
        return HttpError(400, "malformed chunk size in chunked body")
    if "transfer-encoding" in lower or "transfer encoding" in lower:
        return HttpError(501, "Transfer-Encoding is not supported (only chunked)")
    if "host" in lower:
        return HttpError(400, "missing or malformed Host header (required by HTTP/1.1)")
    if "header value char" in lower:
        return HttpError(400, "control characters in header value")
    if isinstance(exc, InvalidHeader) or "header" in lower:
        return HttpError(400, "malformed header line")
    if isinstance(exc, BadStatusLine) or "method" in lower or "url" in lower or "request line" in lower:
        return HttpError(400, "malformed request line (expected 'METHOD /path HTTP/1.1')")
    if isinstance(exc, BadHttpMessage):
        return HttpError(400, "malformed request (" + re.sub(r"[^ -~]", "?", text)[:80] + ")")
    return HttpError(400, "malformed request")


class ConnectionServer(web.Server):
    """aiohttp's low-level server making `Connection`s and keeping their budget."""

    def __init__(self, handler: Any, limits: Limits, *, server_header: str):
        # auto_decompress=False: a request body is the client's bytes (the proxy forwards them as
        # sent; an API body in gzip is refused as invalid JSON, as before, not inflated unbounded).
        super().__init__(handler, handler_cancellation=True, keepalive_timeout=limits.header_timeout,
                         auto_decompress=False,
                         max_line_size=limits.max_header_bytes, max_field_size=limits.max_header_bytes,
                         max_headers=limits.max_headers, lingering_time=limits.linger, access_log=None)
        self.limits = limits
        self.server_header = server_header
        self.closing = False
        self.live: dict[Connection, None] = {}  # oldest first

    def __call__(self) -> RequestHandler:
        return Connection(self, loop=self._loop, **self._kwargs)

    def make_room(self) -> bool:
        """Whether a new connection may be served: evicts the oldest connection not handling a
        request when all slots are taken; False when every one is busy."""
        if len(self.live) < self.limits.max_connections:
            return True
        for conn in self.live:
            if not conn.busy:
                conn.evict()
                return True
        return False


class Connection(RequestHandler):
    """One client connection (see the module docstring for what it adds to aiohttp's)."""

    def __init__(self, manager: ConnectionServer, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.owner = manager
        self.busy = False  # a request is being handled
        self.refused = False  # answered 503 at once; never served
        self.head_bytes = 0  # bytes received towards a request head not yet complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        if owner.closing or not owner.make_room():
            self.refused = True
            error = HttpError(503, "too many connections; retry shortly", headers=(("Retry-After", "1"),))
            assert isinstance(transport, asyncio.Transport)
            transport.write(raw_reply(error, owner.server_header))
            transport.close()
            return
        super().connection_made(transport)
        owner.live[self] = None
        # The first head is due sooner than a keep-alive connection's next one.
        first = min(owner.limits.first_head_timeout, owner.limits.header_timeout)
        self._next_keepalive_close_time = self._loop.time() + first
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time, self._process_keepalive)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self.owner.live.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self.head_bytes = 0
        elif not self.busy:
            self.head_bytes += len(data)

    def request_started(self) -> None:
        self.busy = True
        self.head_bytes = 0

    def request_finished(self) -> None:
        self.busy = False

    def evict(self) -> None:
        """Make room for a new connection: this one is idle or still sending a head."""
        self.owner.live.pop(self, None)
        self.force_close()

    def _process_keepalive(self) -> None:
        """aiohttp closes an idle connection silently; one with half a head gets its 408 first."""
        waiting = self._waiter is not None and not self._waiter.done()
        due = self._loop.time() >= self._next_keepalive_close_time
        if waiting and due and self.head_bytes and self.transport is not None and not self._force_close:
            timeout = (self.owner.limits.first_head_timeout if self._request_count == 0
                       else self.owner.limits.header_timeout)
            error = HttpError(408, f"request head not received within {timeout:g} s")
            self.transport.write(raw_reply(error, self.owner.server_header))
        super()._process_keepalive()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A JSON answer in our words for a request aiohttp could not parse (or a handler bug)."""
        if request.writer.output_size > 0:
            raise ConnectionError("an error after the answer began: the connection is cut")
        if status == 400 or isinstance(exc, HttpProcessingError):
            error = parse_error(exc, message)
        else:
            log.error("error while handling a request from %s", request.remote, exc_info=exc)
            error = HttpError(500 if status != 504 else 504, "internal error; see the llmtray log")
        headers = {"Content-Type": "application/json", "Server": self.owner.server_header, "Connection": "close"}
        headers.update(error.headers)
        response = web.Response(status=error.status, body=json.dumps({"error": error.message}).encode(),
                                headers=headers)
        response.force_close()
        return response
