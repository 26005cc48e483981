"""The ingest HTTP server: aiohttp's low-level server on an asyncio loop of its own thread.

Why asyncio on a thread of its own: the GUI thread never waits for ingest, the headless daemon
needs no Qt, thousands of idle keep-alive connections cost no threads, and the metering proxy
streams through its aiohttp client sessions (`upstream`) on the same loop. Blocking work stays
off the loop: commits happen on the writer thread (requests await a future), summaries and the
validation of large bodies run on one worker thread.

Why aiohttp's *low-level* server (`web.Server`) and not `web.Application`: the routes are four
fixed paths and a few prefixes, dispatched in `IngestServer._dispatch` (the one place routes are
registered); the router, middlewares and signals would cost time on every request and give us
nothing. aiohttp brings the parser (llhttp), chunked bodies, keep-alive, lingering close and
graceful shutdown; `connection.py` adds what it lacks for our promises (timeouts for heads,
a connection budget, JSON error bodies).

The seam for the metering proxy (or anything else served under a prefix)::

    server.mount("/proxy/", handler, token_required=False, max_body_bytes=64 * 2**20,
                 stream_body=True, on_close=client.aclose)

`handler` is `async def handler(request: messages.Request) -> messages.Response`, called on the
server's event loop for each request whose raw path starts with the prefix, after the
Origin/Host guard (and the bearer-token check if `token_required`). The request carries
`method`, raw `path` and `query` (not percent-decoded, so they can be forwarded verbatim),
`headers` (lower-case names, in order, repeats kept) and either the complete `body` or, with
`stream_body`, `stream` (larger than `max_body_bytes` → 413 before the handler runs, or an
error from the stream once the pieces pass it). Return `Response(status, headers, body)`;
`body` is bytes or an async iterator of byte chunks: each chunk is written as it arrives (SSE),
and the next is asked for only once the client's socket has room (backpressure). When the
client goes away mid-stream the handler is cancelled and the iterator's `aclose()` awaited
(closing an upstream stream inside it releases the upstream connection); the same happens after
normal completion, so a `finally:` in an async generator is the place to record the usage event.
Hop-by-hop headers are dropped: the server frames. An `HttpError` raised by the handler becomes
its status with a JSON body; any other exception becomes a 502 (logged, never a traceback to the
client); a `ConnectionError` from the body iterator cuts the client's connection. `on_close` is
awaited on the loop when the server stops; create loop-bound objects lazily inside the handler.
To store events, call `api.submit(events, "proxy")` and await `asyncio.wrap_future(...)`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from llmtray import __version__
from llmtray.ingest.api import SOURCE_HEADER, IngestAPI, check_content_type, decode_events, source_of
from llmtray.ingest.auth import Guard
from llmtray.ingest.connection import Connection, ConnectionServer, parse_error
from llmtray.ingest.messages import HOP_BY_HOP, Headers, Limits, Request, Response
from llmtray.ingest.reply import HttpError, Reply
from llmtray.ingest.writer import StoreFailed
from llmtray.otel.stored import request_stored, session_stored
from llmtray.otel.receiver import MAX_COMPRESSED_BYTES, PATHS as OTLP_PATHS, OtlpReceiver

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
Route = Callable[[web.BaseRequest, Request], Awaitable[Response]]
INLINE_DECODE_BYTES = 64 * 1024  # larger bodies are validated on the worker thread, keeping the loop responsive
SERVER = f"llmtray/{__version__}"


@dataclass(frozen=True)
class Mount:
    prefix: str
    handler: Handler
    token_required: bool
    max_body_bytes: int
    stream_body: bool
    on_close: Callable[[], Awaitable[None]] | None


def json_response(reply: Reply) -> Response:
    return Response(reply.status, [("Content-Type", "application/json"), *reply.headers], reply.encode())


class IngestServer:
    """Serves the ingest API on a bound socket from a loop thread; `start`/`stop` are called
    from any (non-loop) thread."""

    def __init__(self, api: IngestAPI, limits: Limits | None = None):
        self.api = api
        self.limits = limits or Limits()
        self._mounts: list[Mount] = []
        self._guard: Guard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtray-ingest-worker")
        self._mounted_in_flight = 0
        # Every route of the API, in one place (mounts are matched first, by prefix).
        self._routes: dict[str, dict[str, Route]] = {
            "/v1/events": {"POST": self._post_events},
            "/v1/health": {"GET": self._health},
            "/v1/summary": {"GET": self._summary},
            "/v1/enforce": {"GET": self._enforce},
            **{path: {"POST": self._otlp} for path in OTLP_PATHS},
        }
        self.otlp = OtlpReceiver(api.submit, self._worker, session_stored(api.db_path),
                                 request_stored(api.db_path))

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def mount(self, prefix: str, handler: Handler, *, token_required: bool = False,
              max_body_bytes: int | None = None, stream_body: bool = False,
              on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """Route every request under `prefix` (e.g. "/proxy/") to `handler`; see the module docstring."""
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"a mount prefix starts and ends with '/': {prefix!r}")
        self._mounts.append(Mount(prefix, handler, token_required, max_body_bytes or self.limits.max_body_bytes,
                                  stream_body, on_close))

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, sock: socket.socket, guard: Guard) -> None:
        """Serve on `sock` (bound and listening); returns once connections are being accepted."""
        self._guard = guard
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(sock, started))
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                failure.append(exc)
                log.exception("the ingest server stopped with an error")
            finally:
                started.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="llmtray-ingest-loop", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace period), close the rest."""
        loop, event = self._loop, self._stop_requested
        if loop is not None and event is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(event.set)
            self._thread.join()
        self._worker.shutdown(wait=True)

    async def _main(self, sock: socket.socket, started: threading.Event) -> None:
        self._stop_requested = asyncio.Event()
        limits = self.limits
        connections = ConnectionServer(self._handle, limits, server_header=SERVER)
        listener = await asyncio.get_running_loop().create_server(connections, sock=sock)
        started.set()
        await self._stop_requested.wait()
        listener.close()
        connections.closing = True
        connections.pre_shutdown()  # idle keep-alive connections close now, busy ones after their answer
        await connections.shutdown(limits.shutdown_grace)
        try:
            await asyncio.wait_for(listener.wait_closed(), limits.shutdown_grace)
        except TimeoutError:
            log.warning("some ingest connections did not close within %g s", limits.shutdown_grace)
        for mount in self._mounts:
            if mount.on_close is not None:
                try:
                    await mount.on_close()
                except Exception:  # noqa: BLE001 - one mount's cleanup must not block the others
                    log.exception("closing the %s handler failed", mount.prefix)

    # --- one request ----------------------------------------------------------------------------

    async def _handle(self, raw: web.BaseRequest) -> web.StreamResponse:
        conn = raw.protocol
        assert isinstance(conn, Connection)
        conn.request_started()
        mounted: list[bool] = []
        try:
            try:
                response = await self._dispatch(raw, mounted)
            except HttpError as exc:
                response = json_response(exc.reply())
            except HttpProcessingError as exc:  # a malformed body (chunk framing), found while reading it
                response = json_response(parse_error(exc).reply())
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception:  # noqa: BLE001 - never a traceback in a response
                log.exception("error while handling %s %s", raw.method, raw.raw_path[:200])
                response = json_response(HttpError(500, "internal error; see the llmtray log").reply())
            return await self._send(raw, response)
        finally:
            if mounted:
                self._mounted_in_flight -= 1
            conn.request_finished()

    async def _dispatch(self, raw: web.BaseRequest, mounted: list[bool]) -> Response:
        assert self._guard is not None
        request = _request(raw)
        self._guard.check_origin(request.headers, request.version)
        for mount in self._mounts:
            if request.path.startswith(mount.prefix):
                if self._mounted_in_flight >= self.limits.max_mounted_requests:
                    raise HttpError(503, f"too many {mount.prefix} requests in progress; retry shortly",
                                    headers=(("Retry-After", "1"),))
                self._mounted_in_flight += 1
                mounted.append(True)
                return await self._mounted(raw, request, mount)
        methods = self._routes.get(request.path)
        if methods is None:
            raise HttpError(404, f"no such endpoint {request.path[:100]!r}; "
                                 "the API has /v1/events, /v1/health, /v1/summary, /v1/enforce and "
                                 "OTLP's /v1/traces, /v1/logs, /v1/metrics")
        route = methods.get(request.method)
        if route is None:
            allowed = ", ".join(methods)
            raise HttpError(405, f"{request.method} is not allowed on {request.path}; use {allowed}",
                            headers=(("Allow", allowed),))
        return await route(raw, request)

    async def _mounted(self, raw: web.BaseRequest, request: Request, mount: Mount) -> Response:
        assert self._guard is not None
        if mount.token_required:
            self._guard.check_token(request.headers)
        if mount.stream_body:
            if raw.body_exists:  # else no body is sent on (a GET must not grow an empty chunked one)
                request = replace(request, stream=await self._body_stream(raw, mount.max_body_bytes),
                                  length=raw.content_length)
        else:
            request = replace(request, body=await self._read_body(raw, mount.max_body_bytes))
        try:
            return await mount.handler(request)
        except (HttpError, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - an upstream/handler failure is a bad gateway, not a crash
            log.exception("the %s handler failed on %s %s", mount.prefix, request.method, request.path)
            return json_response(HttpError(502, f"the {mount.prefix} handler failed; see the llmtray log").reply())

    # --- request bodies ---------------------------------------------------------------------------

    async def _expect(self, raw: web.BaseRequest, max_bytes: int) -> None:
        """Refuse a declared length over the limit (413) and answer `Expect: 100-continue`."""
        length = raw.content_length
        if length is not None and length > max_bytes:
            raise HttpError(413, _too_large(max_bytes))
        expect = raw.headers.get("Expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                raise HttpError(417, f"unsupported Expect: {expect[:40]!r}")
            if raw.version >= (1, 1) and raw.content.is_eof() is False and not raw.content.total_bytes:
                await raw.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _read_body(self, raw: web.BaseRequest, max_bytes: int) -> bytes:
        """The whole body (chunked decoded), within `max_bytes` (413) and the body timeout (408)."""
        if not raw.body_exists:
            return b""
        await self._expect(raw, max_bytes)
        pieces: list[bytes] = []
        got = 0
        timeout = self.limits.body_timeout
        try:
            async with asyncio.timeout(timeout):
                while piece := await raw.content.readany():
                    got += len(piece)
                    if got > max_bytes:
                        raise HttpError(413, _too_large(max_bytes))
                    pieces.append(piece)
        except TimeoutError:
            of = f" of {raw.content_length}" if raw.content_length is not None else ""
            raise HttpError(408, f"request body not received within {timeout:g} s (got {got}{of} bytes)") from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _body_stream(self, raw: web.BaseRequest, max_bytes: int) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (nothing held beyond what is being forwarded); each
        wait for the next piece is bounded by the body timeout."""
        await self._expect(raw, max_bytes)
        timeout = self.limits.body_timeout

        async def pieces() -> AsyncIterator[bytes]:
            got = 0
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        piece = await raw.content.readany()
                except TimeoutError:
                    raise HttpError(408, f"request body stalled for {timeout:g} s (got {got} bytes)") from None
                if not piece:
                    return
                got += len(piece)
                if got > max_bytes:
                    raise HttpError(413, _too_large(max_bytes))
                yield piece

        return pieces()

    # --- answers ----------------------------------------------------------------------------------

    async def _send(self, raw: web.BaseRequest, response: Response) -> web.StreamResponse:
        headers = [(name, value) for name, value in response.headers if name.lower() not in HOP_BY_HOP]
        headers.append(("Server", SERVER))
        body = response.body
        # An answer before the whole request body was read (413, 401 …): the connection can't be
        # reused, since the rest of the body would be taken for the next request. aiohttp still
        # drains it for `linger` seconds first, so the client reads this answer, not a reset.
        unread = raw.body_exists and not raw.content.is_eof()
        if raw.version < (1, 1) and (unread or not raw.keep_alive):
            # HTTP/1.0 closes unless the answer says keep-alive; aiohttp then says nothing, and a
            # client that asked for keep-alive would wait on the connection: say it (only 1.1
            # gets aiohttp's own "Connection: close" from force_close).
            headers.append(("Connection", "close"))
        if isinstance(body, (bytes, bytearray)):
            answer = web.Response(status=response.status, body=bytes(body), headers=headers)
            if unread:
                answer.force_close()
            return answer
        out = web.StreamResponse(status=response.status, headers=headers)
        if unread:
            out.force_close()
        declared = next((v for k, v in response.headers if k.lower() == "content-length"), None)
        try:
            if declared is not None and declared.strip().isdigit():
                out.content_length = int(declared)
            elif raw.version >= (1, 1):
                out.enable_chunked_encoding()
            else:
                out.force_close()  # HTTP/1.0 without a length: the end of the body is the close
            await out.prepare(raw)
            async for chunk in body:
                if chunk:
                    await out.write(chunk)  # waits while the client's socket is above its high-water mark
            await out.write_eof()
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        return out

    # --- the API routes ---------------------------------------------------------------------------

    async def _health(self, raw: web.BaseRequest, request: Request) -> Response:
        return json_response(self.api.health())

    async def _summary(self, raw: web.BaseRequest, request: Request) -> Response:
        assert self._guard is not None and self._loop is not None
        self._guard.check_token(request.headers)
        return json_response(await self._loop.run_in_executor(self._worker, self.api.summary))

    async def _enforce(self, raw: web.BaseRequest, request: Request) -> Response:
        assert self._guard is not None and self._loop is not None
        self._guard.check_token(request.headers)
        return json_response(await self._loop.run_in_executor(self._worker, self.api.enforce, request.query))

    async def _otlp(self, raw: web.BaseRequest, request: Request) -> Response:
        """OTLP/HTTP export (DESIGN §12): the receiver answers in OTLP's own encodings. The body is
        read as sent (the server never inflates uploads); the receiver decompresses with its caps."""
        assert self._guard is not None
        self._guard.check_token(request.headers)
        body = await self._read_body(raw, MAX_COMPRESSED_BYTES)
        reply = await self.otlp.export(request.path, request.headers.get("content-type"),
                                       request.headers.get("content-encoding"), body)
        return Response(reply.status, [("Content-Type", reply.content_type), *reply.headers], reply.body)

    async def _post_events(self, raw: web.BaseRequest, request: Request) -> Response:
        try:
            reply = await self._store_events(raw, request)
        except HttpError as exc:
            self.api.count(exc.status)
            raise
        self.api.count(reply.status, reply.body)
        return json_response(reply)

    async def _store_events(self, raw: web.BaseRequest, request: Request) -> Reply:
        assert self._guard is not None and self._loop is not None
        headers = request.headers
        self._guard.check_token(headers)
        check_content_type(headers.get("content-type"))
        source = source_of(headers.get(SOURCE_HEADER))
        body = await self._read_body(raw, self.limits.max_body_bytes)
        if len(body) > INLINE_DECODE_BYTES:
            events = await self._loop.run_in_executor(self._worker, decode_events, body)
        else:
            events = decode_events(body)
        if not events:
            return Reply(200, {"accepted": 0, "duplicates": 0})
        future = self.api.submit(events, source)
        try:
            await asyncio.wrap_future(future)
        except StoreFailed:
            pass  # `stored` turns it into a 503
        return self.api.stored(future)


def _request(raw: web.BaseRequest) -> Request:
    """aiohttp's request as handlers see it, refusing what aiohttp's parser lets through but we
    don't: a target that isn't a path (absolute-form would let a client name a host), and transfer
    codings other than plain `chunked` (request smuggling rests on such disagreements)."""
    target = raw.raw_path
    if not target.startswith("/"):
        raise HttpError(400, "the request target must be a path such as /v1/events")
    version = f"HTTP/{raw.version.major}.{raw.version.minor}"
    if version not in ("HTTP/1.1", "HTTP/1.0"):  # llhttp takes any HTTP/x.y
        raise HttpError(505, "only HTTP/1.1 and HTTP/1.0 are supported")
    headers = Headers([(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw.raw_headers])
    te = headers.get_all("transfer-encoding")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        if codings != ["chunked"] or version != "HTTP/1.1":
            raise HttpError(501, f"Transfer-Encoding {', '.join(te)!r} is not supported (only chunked)")
    path, _, query = target.partition("?")
    return Request(raw.method, path, query, version, headers, raw.remote or "unknown")


def _too_large(max_bytes: int) -> str:
    return f"request body larger than {max_bytes // (1024 * 1024)} MiB; split the batch"
