"""The ingest HTTP server: an asyncio loop on its own thread, routing to the API and to mounts.

Why asyncio on a thread of its own: the GUI thread never waits for ingest, the headless daemon
needs no Qt, thousands of idle keep-alive connections cost no threads, and the metering proxy
streams through its own pooled upstream client (`upstream_client`) on the same loop. Blocking work
stays off the loop: commits happen on the writer thread (requests await a future), summaries
and the validation of large bodies run on one worker thread.

The seam for the metering proxy (or anything else served under a prefix)::

    server.mount("/proxy/", handler, token_required=False, max_body_bytes=32 * 2**20,
                 on_close=client.aclose)

`handler` is `async def handler(request: wire.Request) -> wire.Response`, called on the
server's event loop for each request whose raw path starts with the prefix, after the
Origin/Host guard (and the bearer-token check if `token_required`). The request carries
`method`, raw `path` and `query` (not percent-decoded, so they can be forwarded verbatim),
`headers` (lower-case names, in order, repeats kept) and the complete `body` (chunked uploads
are decoded; larger than `max_body_bytes` → 413 before the handler runs). Return
`Response(status, headers, body)`; `body` is bytes or an async iterator of byte chunks: each
chunk is written and flushed as it arrives (SSE), with backpressure. When the client goes away
mid-stream, iteration stops and the iterator's `aclose()` is awaited (closing an upstream stream
inside it releases the upstream connection); the same happens after normal completion, so a
`finally:` in an async generator is the place to record the usage event. Hop-by-hop headers
(Connection, Transfer-Encoding, Content-Length of a stream …) are dropped: the server frames.
An `HttpError` raised by the handler becomes its status with a JSON body; any other exception
becomes a 502 (logged, never a traceback to the client). `on_close` is awaited on the loop when
the server stops (close the AsyncClient there); create loop-bound objects lazily inside the
handler. To store events, call `api.submit(events, "proxy")` and await
`asyncio.wrap_future(...)` on the result.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from llmtray.ingest.api import IngestAPI, check_content_type, decode_events, source_of, SOURCE_HEADER
from llmtray.ingest.auth import Guard
from llmtray.ingest.reply import HttpError, Reply
from llmtray.ingest.wire import ClientGone, Connection, Limits, Request, Response
from llmtray.ingest.writer import StoreFailed
from llmtray.otel.metrics import session_stored
from llmtray.otel.receiver import MAX_COMPRESSED_BYTES, PATHS as OTLP_PATHS, OtlpReceiver

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
INLINE_DECODE_BYTES = 64 * 1024  # larger bodies are validated on the worker thread, keeping the loop responsive
STREAM_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Mount:
    prefix: str
    handler: Handler
    token_required: bool
    max_body_bytes: int
    on_close: Callable[[], Awaitable[None]] | None


def json_response(reply: Reply) -> Response:
    return Response(reply.status, [("Content-Type", "application/json"), *reply.headers], reply.encode())


def _keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for v in request.headers.get_all("connection") for t in v.split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


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
        self._connections: dict[Connection, asyncio.Task[None]] = {}
        self._closing = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtray-ingest-worker")
        self._routes: dict[str, dict[str, Callable[[Connection, Request], Awaitable[Response]]]] = {
            "/v1/events": {"POST": self._post_events},
            "/v1/health": {"GET": self._health},
            "/v1/summary": {"GET": self._summary},
            "/v1/enforce": {"GET": self._enforce},
            **{path: {"POST": self._otlp} for path in OTLP_PATHS},
        }
        self.otlp = OtlpReceiver(api.submit, self._worker, session_stored(api.db_path))

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def mount(self, prefix: str, handler: Handler, *, token_required: bool = False,
              max_body_bytes: int | None = None, on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """Route every request under `prefix` (e.g. "/proxy/") to `handler`; see the module docstring."""
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"a mount prefix starts and ends with '/': {prefix!r}")
        self._mounts.append(Mount(prefix, handler, token_required, max_body_bytes or self.limits.max_body_bytes,
                                  on_close))

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
        server = await asyncio.start_server(self._serve, sock=sock, limit=STREAM_LIMIT)
        started.set()
        await self._stop_requested.wait()
        server.close()
        self._closing = True
        for conn, task in list(self._connections.items()):
            if conn.idle:  # waiting for a next request that won't be served
                task.cancel()
        busy = list(self._connections.values())
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self.limits.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
        for mount in self._mounts:
            if mount.on_close is not None:
                try:
                    await mount.on_close()
                except Exception:  # noqa: BLE001 - one mount's cleanup must not block the others
                    log.exception("closing the %s handler failed", mount.prefix)

    # --- connections ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer, self.limits)
        if self._closing or len(self._connections) >= self.limits.max_connections:
            reply = HttpError(503, "too many connections; retry shortly", headers=(("Retry-After", "1"),)).reply()
            try:
                await conn.send(json_response(reply), keep_alive=False)
            except (ClientGone, ConnectionError):
                pass
            await conn.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            while not self._closing:
                try:
                    request = await conn.read_head()
                except HttpError as exc:  # unparseable head: answer, then close (framing is lost)
                    await conn.send(json_response(exc.reply()), keep_alive=False)
                    conn.mark_broken()
                    break
                if request is None or not await self._handle(conn, request):
                    break
        except (ClientGone, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - a bug in one connection must not take the server down
            log.exception("unexpected error on an ingest connection")
        finally:
            try:
                await conn.close(linger=conn.body_pending)
            finally:
                del self._connections[conn]

    async def _handle(self, conn: Connection, request: Request) -> bool:
        """Answer one request; returns whether the connection can serve another."""
        try:
            response = await self._dispatch(conn, request)
        except HttpError as exc:
            response = json_response(exc.reply())
        except (ClientGone, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - never a traceback in a response
            log.exception("error while handling %s %s", request.method, request.path)
            response = json_response(HttpError(500, "internal error; see the llmtray log").reply())
        keep_alive = _keep_alive(request) and not self._closing and not conn.body_pending
        return await conn.send(response, keep_alive=keep_alive, http10=request.version == "HTTP/1.0")

    async def _dispatch(self, conn: Connection, request: Request) -> Response:
        assert self._guard is not None
        self._guard.check_origin(request.headers, request.version)
        for mount in self._mounts:
            if request.path.startswith(mount.prefix):
                return await self._mounted(conn, request, mount)
        methods = self._routes.get(request.path)
        if methods is None:
            raise HttpError(404, f"no such endpoint {request.path[:100]!r}; "
                                 "the API has /v1/events, /v1/health, /v1/summary, /v1/enforce and "
                                 "OTLP's /v1/traces, /v1/logs, /v1/metrics")
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(methods)
            raise HttpError(405, f"{request.method} is not allowed on {request.path}; use {allowed}",
                            headers=(("Allow", allowed),))
        return await handler(conn, request)

    async def _mounted(self, conn: Connection, request: Request, mount: Mount) -> Response:
        assert self._guard is not None
        if mount.token_required:
            self._guard.check_token(request.headers)
        body = await conn.read_body(request, mount.max_body_bytes)
        try:
            return await mount.handler(replace(request, body=body))
        except (HttpError, ClientGone, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - an upstream/handler failure is a bad gateway, not a crash
            log.exception("the %s handler failed on %s %s", mount.prefix, request.method, request.path)
            return json_response(HttpError(502, f"the {mount.prefix} handler failed; see the llmtray log").reply())

    # --- the API routes ---------------------------------------------------------------------------

    async def _health(self, conn: Connection, request: Request) -> Response:
        return json_response(self.api.health())

    async def _summary(self, conn: Connection, request: Request) -> Response:
        assert self._guard is not None and self._loop is not None
        self._guard.check_token(request.headers)
        return json_response(await self._loop.run_in_executor(self._worker, self.api.summary))

    async def _enforce(self, conn: Connection, request: Request) -> Response:
        assert self._guard is not None and self._loop is not None
        self._guard.check_token(request.headers)
        return json_response(await self._loop.run_in_executor(self._worker, self.api.enforce, request.query))

    async def _otlp(self, conn: Connection, request: Request) -> Response:
        """OTLP/HTTP export (DESIGN §12): the receiver answers in OTLP's own encodings."""
        assert self._guard is not None
        self._guard.check_token(request.headers)
        body = await conn.read_body(request, MAX_COMPRESSED_BYTES)
        reply = await self.otlp.export(request.path, request.headers.get("content-type"),
                                       request.headers.get("content-encoding"), body)
        return Response(reply.status, [("Content-Type", reply.content_type), *reply.headers], reply.body)

    async def _post_events(self, conn: Connection, request: Request) -> Response:
        try:
            reply = await self._store_events(conn, request)
        except HttpError as exc:
            self.api.count(exc.status)
            raise
        self.api.count(reply.status, reply.body)
        return json_response(reply)

    async def _store_events(self, conn: Connection, request: Request) -> Reply:
        assert self._guard is not None and self._loop is not None
        headers = request.headers
        self._guard.check_token(headers)
        check_content_type(headers.get("content-type"))
        source = source_of(headers.get(SOURCE_HEADER))
        body = await conn.read_body(request, self.limits.max_body_bytes)
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
