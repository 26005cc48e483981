"""The metering proxy: change one base URL, and every call through it is recorded.

`OPENAI_BASE_URL=http://127.0.0.1:8787/proxy/openai/v1` (or `ANTHROPIC_BASE_URL=…/proxy/anthropic`)
and nothing else changes: method, path, query, body and headers are forwarded as sent (auth
untouched; hop-by-hop and `X-LLMTray-*` headers dropped, the latter read for attribution), and the
answer comes back byte for byte, chunk by chunk as it arrives — SSE is never buffered. The bytes are
metered on the way through (`meter.ResponseMeter`): the usage event is submitted when the response
ends, is cut, or the client leaves.

Choices worth knowing:
- HTTP/1.1 with keep-alive pooling to upstreams, not HTTP/2, through one aiohttp session per
  upstream origin (`upstream`: httpx alone cost more CPU per call than the proxy's whole 1 ms
  budget on the build machine; aiohttp measured ~4x less, `bench/proxy.py` prints both). The
  SDKs themselves speak HTTP/1.1 to the proxy.
- Request bodies stream through as they arrive, except a recorded call's: the budget check and
  the event need its model, so it is read first, within `MAX_HELD_BYTES` for all calls together
  (`buffers`). `before_forwarding` is the one place a call can be refused before it is sent.
- The proxy's own work stays off the answer's path: a JSON answer with a Content-Length up to
  `INLINE_BODY_BYTES` is read whole and written in one go, and it is metered and recorded just
  after (`loop.call_soon`: the write has happened by then); a stream is metered as it passes and
  recorded after its last chunk has been written.
- Client gone mid-stream: the server cancels the handler at once (aiohttp's handler
  cancellation), the upstream request is closed, and the event is recorded like the SDK hooks
  record an abandoned stream — status `ok`, tag `llmtray.stream=abandoned`, usage as far as the
  stream had reported it (`llmtray.usage=partial` or `missing`). An upstream that fails mid-stream is an `error` event tagged `interrupted`, and the
  client's connection is cut too, so its SDK raises instead of seeing a clean end.
- Hard caps: a POST to a recorded endpoint is checked against exhausted `enforce = true` budgets
  (`core.budgets.exhausted_enforced_budget`: cached, recomputed after each commit) before anything
  is sent; a match is a 429 in the provider's error shape with `x-should-retry: false`, so SDKs
  don't retry a cap. The refusal's wording (spend, limit) is kept until the next commit, so a
  client hammering a cap costs no spend query per refused call.
- Blocks (`core.blocks`, DESIGN §15) are checked before budgets: a call a block's scope matches
  is a 429 naming the block, counted as an `error` event at zero cost tagged `llmtray.blocked`.
- Only loopback peers are served, even with `--allow-remote` (the proxy takes no token); the
  server's Origin/Host guard applies before this handler runs.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import ipaddress
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import ClientResponse

from llmtray.core import db as dbmod
from llmtray.config import Config
from llmtray.core.blocks import BlockWatch, read_only
from llmtray.core.budgets import (PERIOD_PHRASE, Budget, evaluate, exhausted_enforced_budget,
                                  invalidate_enforcement_cache)
from llmtray.core.commits import Committed
from llmtray.core.errors import EventValidationError
from llmtray.core.events import MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, UsageEvent, parse_event
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import Queries
from llmtray.core.store import AddResult
from llmtray.ingest.api import IngestAPI
from llmtray.ingest.codings import narrow_accept_encoding
from llmtray.ingest.meter import (Attribution, Call, Reading, RequestFacts, ResponseMeter, build_event,
                                  error_dialect, recorded_call, request_facts)
from llmtray.ingest.reply import HttpError
from llmtray.ingest import raw_headers
from llmtray.ingest.buffers import BodyBuffers, BuffersFull
from llmtray.ingest.messages import HOP_BY_HOP, Headers, Request, Response
from llmtray.ingest.upstream import (TimeoutException, Timeouts, UpstreamClient, UpstreamError, body_pieces)
from llmtray.ingest.upstreams import Upstream, error_body, upstreams

if TYPE_CHECKING:
    from llmtray.ingest.service import IngestService

log = logging.getLogger(__name__)

PREFIX = "/proxy/"
MAX_BODY_BYTES = 64 * 1024 * 1024  # requests with images or audio inline
MAX_HELD_BYTES = 128 * 1024 * 1024  # recorded calls' bodies held at once, all requests together
INLINE_PARSE_BYTES = 256 * 1024  # larger request bodies are parsed for their model off the event loop
# Events are handed to the writer in batches: one commit (and one wake-up of the writer thread,
# which shares the GIL with the relay) per batch instead of per call.
FLUSH_AFTER_S = 0.05
FLUSH_EVENTS = 256
# Like the SDKs' own default (600 s): the proxy must never give up before its client would.
DEFAULT_TIMEOUT = Timeouts(read=600.0, connect=10.0, write=600.0, pool=30.0)
# Answers with a Content-Length up to this are read whole, then written at once (not streamed).
INLINE_BODY_BYTES = 256 * 1024
_NOT_FORWARDED = HOP_BY_HOP | {"host", "expect", "proxy-authorization"}
_NOT_RETURNED = (HOP_BY_HOP - {"content-length"}) | {"date", "server"}  # the server writes its own
ATTRIBUTION_HEADERS = {"x-llmtray-feature": "feature", "x-llmtray-user": "user",
                       "x-llmtray-project": "project", "x-llmtray-env": "env"}
TAGS_HEADER = "x-llmtray-tags"
MAX_ATTRIBUTION = 200


class BadRequest(Exception):
    """A request the proxy refuses to forward; the message names the header or path part."""


class UpstreamCut(ConnectionError):
    """The upstream failed mid-response: the server closes the client's connection (a
    ConnectionError is how a stream ends without a traceback in the log), so the client sees
    a truncated body rather than a clean end."""


@dataclass(frozen=True)
class _Recorded:
    """A recorded call in flight: what its event needs besides the response."""

    provider: str
    call: Call
    facts: RequestFacts
    attribution: Attribution
    wall: float
    t0: float


class Proxy:
    """The `/proxy/<upstream>/…` handler; one per ingest server, used on its event loop."""

    def __init__(self, api: IngestAPI, targets: dict[str, Upstream], db_path: Path, config: Config):
        self.api = api
        self.upstreams = targets
        self.timeout = DEFAULT_TIMEOUT  # per request, so tests may shorten it on a running proxy
        self._db_path, self._config = db_path, config
        self._queries: Queries | None = None  # the loop thread's read connection, for budget checks
        self._refusals: dict[Budget, str] = {}  # a budget (as defined now) → its 429 text, until the next commit
        self.client = UpstreamClient(max_connections=256, keepalive_expiry=30.0)
        self.buffers = BodyBuffers(MAX_HELD_BYTES)  # public: tests shrink it
        self._events: list[UsageEvent] = []  # recorded, not yet handed to the writer
        self._flush_timer: asyncio.TimerHandle | None = None
        self._parser: ThreadPoolExecutor | None = None
        self.blocks = BlockWatch(read_only(db_path), on_error=lambda exc: log.warning(
            "proxy: blocks could not be read, the last known ones apply: %s", exc))

    @classmethod
    def install(cls, service: IngestService) -> Proxy:
        """Mount the proxy on `service` under /proxy/ and keep its budget check fresh."""
        proxy = cls(service.api, upstreams(service.config.upstreams), service.paths.db, service.config)
        service.mount(PREFIX, proxy.handle, token_required=False, max_body_bytes=MAX_BODY_BYTES,
                      stream_body=True, on_close=proxy.aclose)
        service.add_listener(proxy.committed)
        return proxy

    def committed(self, notice: Committed | None = None) -> None:
        """Writer listener (writer thread): spend changed, so cap checks and refusals are stale."""
        invalidate_enforcement_cache(notice)
        self._refusals.clear()

    async def aclose(self) -> None:
        """Hand over the last events, release the connection pool (on the server's loop, at stop)."""
        self._flush()
        await self.client.aclose()
        if self._queries is not None:
            self._queries.conn.close()
        self.blocks.close()
        if self._parser is not None:
            self._parser.shutdown(wait=True)

    # --- one request ----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        t0, wall = time.perf_counter(), time.time()
        if not _loopback_peer(request.client):
            return _error("openai", 403, f"the llmtray proxy serves this machine only, not {request.client}",
                          "forbidden")
        name, slash, rest = request.path[len(PREFIX):].partition("/")
        upstream = self.upstreams.get(name)
        if upstream is None:
            return self._unknown(name)
        path = slash + rest
        call = recorded_call(request.method, path)
        dialect = error_dialect(name, path, call)
        try:
            _check_path(path)
            attribution = read_attribution(request.headers)
            headers = forward_headers(request.headers)
        except BadRequest as exc:
            return _error(dialect, 400, f"llmtray proxy: {exc}", "invalid_request")
        recorded: _Recorded | None = None
        refused: list[HttpError] = []  # the client's body broke a limit while it was being forwarded
        body: bytes | AsyncIterator[bytes] | None = None
        with self.buffers.held() as held:
            if call is not None:  # the budget check and the event need the model: the body is read first
                try:
                    body = await held.read(request.stream)
                except BuffersFull as exc:
                    return _error(dialect, 503, f"llmtray proxy: {exc}", "overloaded", (("Retry-After", "1"),))
                facts = await self._facts(body, call)
                block = self.blocks.refusal(attribution.scope_values(name, facts.model))
                if block is not None:  # counted as a refused call; nothing goes upstream
                    self._queue(block.refused_event(name, facts.model, attribution.fields, attribution.tags), name)
                    return _error(dialect, 429, block.message, "blocked", (("x-should-retry", "false"),))
                refusal = self.before_forwarding(name, facts.model, attribution)
                if refusal is not None:
                    log.info("proxy: refused a %s call to %s: %s", facts.model or "?", name, refusal)
                    return _error(dialect, 429, refusal, "budget_exhausted", (("x-should-retry", "false"),))
                recorded = _Recorded(name, call, facts, attribution, wall, t0)
            elif request.stream is not None:
                body = _watched(request.stream, refused)
                if request.length is not None:
                    headers.append(("Content-Length", str(request.length)))  # streamed as it arrives, not chunked
            try:
                response = await self.client.send(request.method, upstream.origin,
                                                  upstream.target(path, request.query), headers, body, self.timeout)
            except TimeoutException as exc:
                message = f"llmtray proxy: {name} did not answer in time ({type(exc).__name__})"
                self._record(recorded, error=message)
                return _error(dialect, 504, message, "upstream_timeout")
            except UpstreamError as exc:
                if refused:  # not the upstream's fault: the client's 413 or 408
                    raise refused[0] from None
                message = f"llmtray proxy: could not reach {name} at {upstream.base}: {type(exc).__name__}: {exc}"
                self._record(recorded, error=message)
                return _error(dialect, 502, message, "upstream_unreachable")
        meter = None
        if recorded is not None:
            meter = ResponseMeter(status=response.status, content_type=response.headers.get("content-type"),
                                  content_encoding=response.headers.get("content-encoding"), t0=t0)
        out_headers = response_headers(response)
        length = response.headers.get("content-length")
        if (length is not None and length.isdigit() and int(length) <= INLINE_BODY_BYTES
                and request.method != "HEAD" and not (meter is not None and meter.sse)):
            pieces: list[bytes] = []
            try:
                async for piece in body_pieces(response):
                    pieces.append(piece)
            except UpstreamError as exc:  # cut: the client gets what came, then a cut connection
                return Response(response.status, out_headers, self._relay(response, meter, recorded, pieces, exc))
            finally:
                response.release()  # back to the pool when read to the end, else closed
            whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if meter is not None:
                asyncio.get_running_loop().call_soon(self._meter_whole, recorded, meter, whole)
            return Response(response.status, out_headers, whole)
        return Response(response.status, out_headers, self._relay(response, meter, recorded))

    def before_forwarding(self, provider: str, model: str | None, attribution: Attribution) -> str | None:
        """The checks a recorded call passes before anything is sent upstream: the refusal text
        (a 429 in the provider's shape) or None to go ahead."""
        return self._refusal(provider, model, attribution)

    def _meter_whole(self, recorded: _Recorded | None, meter: ResponseMeter, body: bytes) -> None:
        """Meter and record an answer that was written whole (runs once the write is done)."""
        if meter.decompresses:  # a small body may inflate hugely: never on the loop
            future = asyncio.get_running_loop().run_in_executor(self._parse_pool(), meter.feed, body)
            future.add_done_callback(lambda _: self._finish(recorded, meter))
            return
        meter.feed(body)
        self._finish(recorded, meter)

    def _finish(self, recorded: _Recorded | None, meter: ResponseMeter) -> None:
        self._record(recorded, meter=meter, reading=meter.finish())

    async def _feed(self, meter: ResponseMeter | None, chunk: bytes) -> None:
        if meter is None:
            return
        if meter.decompresses:
            await asyncio.get_running_loop().run_in_executor(self._parse_pool(), meter.feed, chunk)
        else:
            meter.feed(chunk)

    async def _relay(self, response: ClientResponse, meter: ResponseMeter | None, recorded: _Recorded | None,
                     received: Sequence[bytes] = (), failed: UpstreamError | None = None) -> AsyncIterator[bytes]:
        """The upstream body, chunk by chunk as it arrives (after `received`, if its reading
        already `failed`); records the call however it ends. A chunk is metered once the server
        asks for the next one, i.e. after it has been written: metering never delays a chunk.
        The server asks for the next only when the client's socket has room, and the upstream
        socket is paused while its unread bytes exceed `upstream.READ_BUFFER`: a slow client
        slows the upstream down instead of filling memory."""
        error: str | None = None
        stream_end: str | None = None
        complete = False
        unmetered: bytes | None = None
        try:
            for unmetered in received:
                yield unmetered
                await self._feed(meter, unmetered)
                unmetered = None
            if failed is not None:
                raise failed
            async for unmetered in body_pieces(response):
                yield unmetered
                await self._feed(meter, unmetered)
                unmetered = None
            complete = True
        except (GeneratorExit, asyncio.CancelledError):  # the client left, or the server is stopping
            if meter is not None and unmetered is not None and not meter.decompresses:
                meter.feed(unmetered)  # it may hold the end marker the client left after
            if meter is None or not meter.ended:  # leaving after the end marker is a complete call
                stream_end = "abandoned"
            raise
        except TimeoutException as exc:
            error = f"upstream stopped sending mid-response ({type(exc).__name__})"
            stream_end = "interrupted"
            raise UpstreamCut(error) from None
        except UpstreamError as exc:
            error = f"upstream response cut: {type(exc).__name__}: {exc}"
            stream_end = "interrupted"
            raise UpstreamCut(error) from None
        finally:
            if complete:
                response.release()
            else:
                response.close()
            if meter is not None:
                if complete:  # recorded after the server has written the last chunk
                    asyncio.get_running_loop().call_soon(self._finish, recorded, meter)
                else:
                    self._record(recorded, meter=meter, reading=meter.finish(), error=error, stream_end=stream_end)

    def _record(self, recorded: _Recorded | None, *, meter: ResponseMeter | None = None,
                reading: Reading | None = None, error: str | None = None, stream_end: str | None = None) -> None:
        """Queue the call's event for the writer (the response has already gone; nobody waits)."""
        if recorded is None:
            return
        event = build_event(provider=recorded.provider, call=recorded.call, facts=recorded.facts,
                            attribution=recorded.attribution, wall=recorded.wall,
                            latency_ms=(time.perf_counter() - recorded.t0) * 1000.0, reading=reading, meter=meter,
                            error=error, stream_end=stream_end)
        self._queue(event, recorded.provider)

    def _queue(self, event: dict[str, Any], provider: str) -> None:
        try:
            self._events.append(parse_event(event))
        except EventValidationError as exc:
            log.warning("proxy: the usage event of a %s call is invalid, not recorded: %s", provider, exc)
            return
        if len(self._events) >= FLUSH_EVENTS:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        events, self._events = self._events, []
        if not events:
            return
        try:
            future = self.api.submit(events, "proxy")
        except HttpError as exc:
            log.warning("proxy: %d usage event(s) dropped: %s", len(events), exc.message)
            return
        future.add_done_callback(_log_failure)

    # --- helpers ----------------------------------------------------------------------------

    def _parse_pool(self) -> ThreadPoolExecutor:
        """One thread for the proxy's CPU-heavy reading (large request bodies, decompression)."""
        if self._parser is None:
            self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtray-proxy-parse")
        return self._parser

    async def _facts(self, body: bytes, call: Call) -> RequestFacts:
        if len(body) <= INLINE_PARSE_BYTES:
            return request_facts(body, call)
        return await asyncio.get_running_loop().run_in_executor(self._parse_pool(), request_facts, body, call)

    def _refusal(self, provider: str, model: str | None, attribution: Attribution) -> str | None:
        """Why an exhausted enforced budget forbids this call, or None. Fails open: a database that
        can't be read must not stop the user's calls (the reason is logged)."""
        try:
            if self._queries is None:
                conn = dbmod.connect(self._db_path, timeout=5.0)
                conn.execute("PRAGMA query_only = ON")
                self._queries = Queries(conn, self._config.tz)
            budget = exhausted_enforced_budget(self._queries, attribution.scope_values(provider, model),
                                               week_start=self._config.week_start)
            if budget is None:
                return None
            message = self._refusals.get(budget)
            if message is None:
                message = self._refusals[budget] = self._refusal_message(budget)
            return message
        except sqlite3.Error as exc:
            log.warning("proxy: budgets could not be checked, the call goes ahead: %s", exc)
            return None

    def _refusal_message(self, budget: Budget) -> str:
        assert self._queries is not None
        status = evaluate(self._queries, budget, week_start=self._config.week_start, project=False)
        return (f"llmtray budget {budget.name!r} is exhausted: ${nanos_to_str(status.spent_nanos)} spent of its "
                f"${budget.limit_usd} limit {PERIOD_PHRASE[budget.period]} ({budget.scope.describe()}). "
                "The call was not sent; raise the limit or remove the budget with `llmtray budgets`.")

    def _unknown(self, name: str) -> Response:
        known = sorted(self.upstreams)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        body = {"error": f"unknown upstream {name[:60]!r}{hint}: use /proxy/<upstream>/… with one of "
                         f"{', '.join(known)}; add more under [proxy.upstreams] in config.toml",
                "upstreams": known}  # names only: any local caller may ask, and a base URL can be private
        return Response(404, [("Content-Type", "application/json")], json.dumps(body).encode())


# --- request and response headers -------------------------------------------------------------


def _connection_tokens(values: list[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def forward_headers(headers: Headers) -> list[tuple[str, str]]:
    """The caller's headers as the upstream should get them: byte for byte (see `raw_headers`),
    without hop-by-hop headers, X-LLMTray-* or codings we could not meter."""
    named = _connection_tokens(headers.get_all("connection"))
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name in _NOT_FORWARDED or name in named or name.startswith("x-llmtray-"):
            continue
        if name == "accept-encoding":
            narrowed = narrow_accept_encoding(value)
            if narrowed is None:
                continue
            value = narrowed
        out.append((name, raw_headers.text(value.encode("latin-1"))))
    return out


def response_headers(response: ClientResponse) -> list[tuple[str, str]]:
    """The upstream's headers for the client exactly as received (names with their case,
    repeats kept), minus this hop's own."""
    named = _connection_tokens(response.headers.getall("connection", []))
    out = []
    for raw_name, raw_value in response.raw_headers:
        name = raw_name.decode("latin-1")
        lower = name.lower()
        if lower not in _NOT_RETURNED and lower not in named:
            out.append((name, raw_headers.text(raw_value)))
    return out


def _display(header: str) -> str:
    return "X-LLMTray-" + header[len("x-llmtray-"):].title()


def _utf8(value: str) -> str:
    """Header values arrive as latin-1 text; UTF-8 senders (most) get their characters back."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def read_attribution(headers: Headers) -> Attribution:
    """Feature / user / project / env and tags from X-LLMTray-* headers. Mistakes are refused (400)
    rather than ignored: a dropped tag would let a call slip past a budget scoped by it."""
    attribution = Attribution()
    seen: set[str] = set()
    for name, value in headers:
        if not name.startswith("x-llmtray-"):
            continue
        if name in seen:
            raise BadRequest(f"{_display(name)} is given twice")
        seen.add(name)
        text = _utf8(value).strip()
        if name in ATTRIBUTION_HEADERS:
            if len(text) > MAX_ATTRIBUTION:
                raise BadRequest(f"{_display(name)} is {len(text)} characters long; at most {MAX_ATTRIBUTION}")
            if text:
                attribution.fields[ATTRIBUTION_HEADERS[name]] = text
        elif name == TAGS_HEADER:
            attribution.tags = parse_tags(text)
        else:
            raise BadRequest(f"unknown header {_display(name)}; the proxy reads X-LLMTray-Feature, -User, "
                             "-Project, -Env and -Tags")
    return attribution


def parse_tags(text: str) -> dict[str, str]:
    """`X-LLMTray-Tags: team=search, run=nightly` → {"team": "search", "run": "nightly"}."""
    tags: dict[str, str] = {}
    for i, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        where = f"X-LLMTray-Tags item {i} ({item.strip()[:40]!r})"
        if not eq or not key:
            raise BadRequest(f"{where} is not key=value (tags are written k=v,k=v)")
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise BadRequest(f"{where}: keys are at most {MAX_TAG_KEY} characters, values at most {MAX_TAG_VALUE}")
        if key in tags:
            raise BadRequest(f"{where}: tag {key!r} is given twice")
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"X-LLMTray-Tags has {len(tags)} tags; at most {MAX_TAGS}")
    return tags


# --- small things ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _loopback_peer(client: str) -> bool:
    try:
        ip = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


async def _watched(stream: AsyncIterator[bytes], refused: list[HttpError]) -> AsyncIterator[bytes]:
    """`stream`, noting the limit it broke (aiohttp reports a failing body as a failed send)."""
    try:
        async for piece in stream:
            yield piece
    except HttpError as exc:
        refused.append(exc)
        raise


def _check_path(path: str) -> None:
    """Dot segments would climb out of an upstream's base path (`/proxy/openrouter/../x`)."""
    for segment in path.split("/"):
        if segment.lower().replace("%2e", ".") in (".", ".."):
            raise BadRequest("path segments '.' and '..' are not forwarded")


def _error(dialect: str, status: int, message: str, code: str,
           headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, [("Content-Type", "application/json"), *headers], error_body(dialect, status, message, code))


def _log_failure(future: Future[AddResult]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("proxy: a usage event could not be stored: %s", exc)
