"""The OTLP/HTTP receiver (DESIGN §12) without HTTP: bytes in, an OTLP answer out.

The server calls `OtlpReceiver.export` for `POST /v1/traces|logs|metrics` after its Origin/Host
guard and token check; everything OTLP-specific — decoding, the answer in the request's own
encoding, `partial_success`, `google.rpc.Status` error bodies, 503 + `Retry-After` (several Python
exporter versions don't retry 429, OTEL.md §1.2) — lives here, so the transport can change without
touching it.

Events go through the same validation (`core.events`) and writer (`IngestAPI.submit`) as
`POST /v1/events`, with `source: otel`; the answer comes only after the commit.

Why some bad records get `partial_success` and not a 400: an exporter drops a batch it got a 400
for, so one malformed span would lose every good call exported with it. A request whose call
records are *all* unreadable (or that is not OTLP at all) gets the 400, naming the first problem.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llmtray.core.events import UsageEvent, event_errors
from llmtray.ingest.reply import HttpError
from llmtray.ingest.writer import StoreFailed
from llmtray.otel.decode import TooLarge, UnsupportedEncoding, UnsupportedMedia, decode, media_type
from llmtray.otel.emitters import calls
from llmtray.otel.metrics import MetricsFallback
from llmtray.otel.records import LOG, METRIC, SPAN, OtlpDecodeError, RecentIds

log = logging.getLogger(__name__)

PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
INLINE_DECODE_BYTES = 64 * 1024  # larger bodies are decoded on the worker thread
MAX_COMPRESSED_BYTES = 16 * 2**20
RETRY_AFTER_S = "1"
_REMEMBERED_ANCESTORS = 100_000
_REJECTED_FIELD = {SPAN: ("rejected_spans", "rejectedSpans"), LOG: ("rejected_log_records", "rejectedLogRecords"),
                   METRIC: ("rejected_data_points", "rejectedDataPoints")}
# google.rpc.Code values for the Status body of an error answer.
_RPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 503: 14}


@dataclass(frozen=True)
class OtlpReply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What one export did (for tests and the activity log)."""

    records: int
    calls: int
    accepted: int
    duplicates: int
    rejected: list[str]


class OtlpReceiver:
    """Turns export requests into stored usage events through `submit` (the ingest API's)."""

    def __init__(self, submit: Callable[[list[Any], str], Any], executor: Executor | None = None,
                 session_known: Callable[[str], bool] | None = None,
                 request_known: Callable[[str, str, str], bool] | None = None):
        self._submit = submit
        self._executor = executor
        self._request_known = request_known
        self._metrics = MetricsFallback(session_known or (lambda session: False))
        # Span ids known to be ancestors of counted call spans: a parent span is exported after
        # its children, often in a later batch, and must not be counted on top of them.
        self._ancestors = RecentIds(_REMEMBERED_ANCESTORS)
        self.last: Outcome | None = None

    async def export(self, path: str, content_type: str | None, content_encoding: str | None,
                     body: bytes) -> OtlpReply:
        signal = PATHS[path]
        try:
            media = media_type(content_type)
        except UnsupportedMedia as exc:
            return _error(415, str(exc), "json")
        try:
            if len(body) > MAX_COMPRESSED_BYTES:
                raise TooLarge(f"the body is {len(body):,} bytes; the limit is {MAX_COMPRESSED_BYTES:,}")
            if len(body) > INLINE_DECODE_BYTES and self._executor is not None:
                loop = asyncio.get_running_loop()
                exported = await loop.run_in_executor(self._executor, decode, signal, content_type,
                                                      content_encoding, body)
            else:
                exported = decode(signal, content_type, content_encoding, body)
        except TooLarge as exc:
            return _error(413, str(exc), media)
        except UnsupportedEncoding as exc:
            return _error(415, str(exc), media)
        except OtlpDecodeError as exc:
            return _error(400, f"not a valid OTLP {signal} request: {exc}", media)
        if exported.signal == METRIC:
            if self._executor is not None:
                loop = asyncio.get_running_loop()
                found, problems = await loop.run_in_executor(self._executor, self._metrics.events, exported.records)
            else:
                found, problems = self._metrics.events(exported.records)
            candidates = [(f"metric interval {e['tags']['otel_profile']} {e['model']!r}", e) for e in found]
        else:
            mapped, problems = calls(exported.records, self._ancestors)
            self._metrics.services_with_requests.update(
                str(m.record.resource.get("service.name", "")) for m in mapped)
            candidates = [(m.record.where, m.event) for m in mapped]
        now = datetime.now(UTC)
        events, ids = [], set()
        for where, candidate in candidates:
            event, errors = event_errors(candidate, now=now)
            if errors:
                problems.append(f"{where}: " + "; ".join(f"{e.field}: {e.message}" for e in errors))
            elif event is not None and (event.id is None or event.id not in ids):
                ids.add(event.id)
                events.append(event)
        if problems and not events:
            return _error(400, f"{len(problems)} call record(s) could not be read, nothing stored: {problems[0]}",
                          media)
        accepted = duplicates = 0
        if self._request_known is not None and any(_by_request(e) for e in events):
            loop = asyncio.get_running_loop()
            kept = await loop.run_in_executor(self._executor, self._not_stored_elsewhere, events)
            duplicates, events = len(events) - len(kept), kept
        if events:
            try:
                future = self._submit(events, "otel")
            except HttpError as exc:  # writer behind or stopping: retryable
                return _error(503, exc.message, media, (("Retry-After", RETRY_AFTER_S),))
            try:
                result = await asyncio.wrap_future(future)
            except StoreFailed as exc:
                return _error(503, str(exc), media, (("Retry-After", RETRY_AFTER_S),))
            accepted, duplicates = result.accepted, duplicates + result.duplicates
        self.last = Outcome(exported.count, len(candidates), accepted, duplicates, problems)
        if problems:
            log.warning("OTLP %s: %d call record(s) rejected: %s", signal, len(problems), problems[0])
        message = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        return _success(exported.signal, media, len(problems), message)

    def _not_stored_elsewhere(self, events: list[UsageEvent]) -> list[UsageEvent]:
        """`events` without the Claude Code calls already stored from its log files (blocking)."""
        assert self._request_known is not None
        return [e for e in events if not (_by_request(e) and self._request_known(
            e.provider, e.tags["session"], e.request_id or ""))]


def _by_request(event: UsageEvent) -> bool:
    """A Claude Code call whose files the agents' tailer may have stored under `message.id`."""
    return bool(event.request_id and event.tags.get("session")
                and event.tags.get("otel_profile", "").startswith("claude-code-") and event.provider == "anthropic")


def _success(signal: str, media: str, rejected: int, message: str) -> OtlpReply:
    """200 with an Export…ServiceResponse in the request's encoding; `partial_success` only when
    something was rejected or there is a warning (the spec says leave it unset otherwise)."""
    pb_field, json_field = _REJECTED_FIELD[signal]
    if media == "json":
        body: dict[str, Any] = {}
        if rejected or message:
            partial: dict[str, Any] = {"errorMessage": message}
            if rejected:
                partial[json_field] = str(rejected)  # int64 is a string in OTLP/JSON
            body["partialSuccess"] = partial
        return OtlpReply(200, "application/json", json.dumps(body).encode())
    response = _response_class(signal)()
    if rejected or message:
        setattr(response.partial_success, pb_field, rejected)
        response.partial_success.error_message = message
    return OtlpReply(200, "application/x-protobuf", response.SerializeToString())


def _response_class(signal: str) -> Any:
    if signal == SPAN:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        return ExportTraceServiceResponse
    if signal == LOG:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        return ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    return ExportMetricsServiceResponse


def _error(status: int, message: str, media: str, headers: tuple[tuple[str, str], ...] = ()) -> OtlpReply:
    """A 4xx/5xx with a `google.rpc.Status` body in the request's encoding (OTLP §Failures)."""
    code = _RPC_CODE.get(status, 2)
    if media == "json":
        return OtlpReply(status, "application/json", json.dumps({"code": code, "message": message}).encode(), headers)
    return OtlpReply(status, "application/x-protobuf", status_protobuf(code, message), headers)


def status_protobuf(code: int, message: str) -> bytes:
    """`google.rpc.Status{code, message}` by hand: opentelemetry-proto doesn't ship it, and two
    fields aren't worth a dependency (field 1 varint, field 2 length-delimited UTF-8)."""
    text = message.encode("utf-8")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
