"""Decode OTLP/HTTP bodies (protobuf or JSON, optionally gzip) into neutral `Record`s.

Protobuf goes through `opentelemetry-proto` (upb: ~1 ms for 1,000 spans). JSON is walked by hand
over `json.loads` output instead of `google.protobuf.json_format`, which reads hex trace ids as
base64 and returns garbage without an error (OTEL.md §1.3), rejects unknown fields that OTLP says
to ignore, and is 200× slower. The walker accepts what real emitters write: `intValue` as a number
or a string (OTel JS writes numbers), enum names where integers belong, lowerCamelCase keys with
the proto field names as a fallback.

Limits are enforced here, before anything is stored: the body after decompression, the number of
records, and the attributes per record, so a hostile or broken exporter gets a clear 4xx instead
of costing memory.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterable
from typing import Any

from llmtray.otel.records import LOG, METRIC, SPAN, Export, OtlpDecodeError, Record

MAX_BODY_BYTES = 32 * 2**20  # after decompression; OTLP recommends a limit, 64 MiB at most
MAX_RECORDS = 100_000
MAX_ATTRIBUTES = 1_000  # per record (resource and scope included); real GenAI spans carry < 100
MAX_DEPTH = 8  # nested array/kvlist values
INT64 = 2**63

SIGNALS = {"traces": SPAN, "logs": LOG, "metrics": METRIC}
_HEX = re.compile(r"^[0-9a-fA-F]*$")


class TooLarge(OtlpDecodeError):
    """The body exceeds `MAX_BODY_BYTES` once decompressed (a 413, not a 400)."""


class UnsupportedEncoding(OtlpDecodeError):
    """A Content-Encoding other than gzip, deflate or identity (a 415)."""


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body with its Content-Encoding undone, never more than `limit` bytes of output.

    Inflating in bounded steps means a 100 MB gzip bomb costs `limit` bytes of memory and stops
    there; `zlib.decompress` would allocate all of it first."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > 1:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r}: one layer of gzip or deflate is accepted")
    if not codings:
        if len(body) > limit:
            raise TooLarge(f"the body is {len(body):,} bytes; the limit is {limit:,}")
        return body
    coding = codings[0]
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {coding!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    try:
        data = body
        while data:
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise TooLarge(f"the body inflates to more than {limit:,} bytes (the limit)")
            data = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error as exc:
        raise OtlpDecodeError(f"the body is not valid {coding} data: {exc}") from None
    if len(out) > limit:
        raise TooLarge(f"the body inflates to more than {limit:,} bytes (the limit)")
    if not inflater.eof:
        raise OtlpDecodeError(f"the {coding} data is truncated")
    return bytes(out)


# --- protobuf -----------------------------------------------------------------------------------


def _pb_value(value: Any, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        if depth >= MAX_DEPTH:
            raise OtlpDecodeError("an attribute value is nested too deeply")
        if kind == "array_value":
            return [_pb_value(v, depth + 1) for v in value.array_value.values]
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _pb_attrs(items: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in items}


def _decode_protobuf(signal: str, body: bytes) -> list[Record]:
    from google.protobuf.message import DecodeError

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    cls = {SPAN: ExportTraceServiceRequest, LOG: ExportLogsServiceRequest, METRIC: ExportMetricsServiceRequest}[signal]
    try:
        request = cls.FromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OtlpDecodeError(f"the body is not a protobuf {cls.__name__}: {exc}") from None
    records: list[Record] = []
    if signal == SPAN:
        for rs in request.resource_spans:
            resource = _pb_attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    _check_count(records)
                    records.append(Record(
                        SPAN, resource, ss.scope.name, s.name, _pb_attrs(s.attributes), s.trace_id.hex(),
                        s.span_id.hex(), s.parent_span_id.hex(), s.start_time_unix_nano, s.end_time_unix_nano,
                        s.status.code, s.status.message, s.kind))
    elif signal == LOG:
        for rl in request.resource_logs:
            resource = _pb_attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    _check_count(records)
                    attrs = _pb_attrs(r.attributes)
                    body_value = _pb_value(r.body) if r.HasField("body") else None
                    time = r.time_unix_nano or r.observed_time_unix_nano
                    records.append(Record(
                        LOG, resource, sl.scope.name, _event_name(r.event_name, attrs, body_value), attrs,
                        r.trace_id.hex(), r.span_id.hex(), "", time, time))
    else:
        for rm in request.resource_metrics:
            resource = _pb_attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind not in ("sum", "gauge", "histogram"):
                        continue  # exponential histograms and summaries: no emitter reports usage in them
                    data = getattr(m, kind)
                    temporality = getattr(data, "aggregation_temporality", 0)
                    for p in data.data_points:
                        _check_count(records)
                        if kind == "histogram":
                            value: int | float = p.sum
                            extra = {"value": value, "count": p.count, "temporality": temporality, "kind": kind}
                        else:
                            value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            extra = {"value": value, "temporality": temporality, "kind": kind}
                        records.append(Record(
                            METRIC, resource, sm.scope.name, m.name, _pb_attrs(p.attributes),
                            start_ns=p.start_time_unix_nano, end_ns=p.time_unix_nano, extra=extra))
    for record in records:
        _check_attrs(record)
    return records


def _event_name(field: str, attrs: dict[str, Any], body: Any) -> str:
    """A log record's event name: the `eventName` field, else the `event.name` attribute (what
    Claude Code, Codex and Gemini CLI set), else a string body (Claude Code repeats it there)."""
    name = field or attrs.get("event.name")
    if not name and isinstance(body, str) and len(body) <= 200:
        name = body
    return name if isinstance(name, str) else ""


def _check_count(records: list[Record]) -> None:
    if len(records) >= MAX_RECORDS:
        raise OtlpDecodeError(f"more than {MAX_RECORDS:,} records in one request; send smaller batches")


def _check_attrs(record: Record) -> None:
    count = len(record.attrs) + len(record.resource)
    if count > MAX_ATTRIBUTES:
        raise OtlpDecodeError(f"{record.where} carries {count:,} attributes (with its resource); "
                              f"the limit is {MAX_ATTRIBUTES:,}")


# --- JSON ---------------------------------------------------------------------------------------

_CONTAINERS = {
    SPAN: ("resourceSpans", ("scopeSpans", "instrumentationLibrarySpans"), "spans"),
    LOG: ("resourceLogs", ("scopeLogs", "instrumentationLibraryLogs"), "logRecords"),
    METRIC: ("resourceMetrics", ("scopeMetrics", "instrumentationLibraryMetrics"), "metrics"),
}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def _get(obj: dict[str, Any], camel: str) -> Any:
    """A field by its OTLP/JSON name, or by the proto field name some emitters write."""
    value = obj.get(camel)
    if value is None:
        value = obj.get(_SNAKE.sub("_", camel).lower())
    return value


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = _get(obj, key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{where}.{key} must be an array")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"{where} must be an object")
    return value


def _int(value: Any, where: str) -> int:
    """An int64 in either JSON form (number or decimal string)."""
    if isinstance(value, bool):
        raise OtlpDecodeError(f"{where} must be an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        number = int(value)
    else:
        raise OtlpDecodeError(f"{where} must be an integer, got {str(value)[:40]!r}")
    if not -INT64 <= number < 2**64:
        raise OtlpDecodeError(f"{where} {number} is outside the 64-bit range")
    return number


def _hex_id(value: Any, size: int, where: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _HEX.match(value) or len(value) != 2 * size:
        raise OtlpDecodeError(f"{where} must be {2 * size} hex digits (OTLP/JSON ids are hex, not base64), "
                              f"got {str(value)[:40]!r}")
    return value.lower()


_ENUMS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
          "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5, "STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1,
          "STATUS_CODE_ERROR": 2, "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": 1,
          "AGGREGATION_TEMPORALITY_CUMULATIVE": 2}


def _enum(value: Any, where: str) -> int:
    """OTLP/JSON enums are integers; third-party fixtures write the names: accept both."""
    if isinstance(value, str) and value in _ENUMS:
        return _ENUMS[value]
    return 0 if value is None else _int(value, where)


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"{where} must be an AnyValue object such as {{\"stringValue\": \"…\"}}")
    if depth >= MAX_DEPTH:
        raise OtlpDecodeError(f"{where} is nested too deeply")
    for key, item in value.items():
        if key in ("stringValue", "string_value"):
            if not isinstance(item, str):
                raise OtlpDecodeError(f"{where}.stringValue must be a string")
            return item
        if key in ("intValue", "int_value"):
            return _int(item, f"{where}.intValue")
        if key in ("doubleValue", "double_value"):
            if isinstance(item, str) and item in ("NaN", "Infinity", "-Infinity"):
                return float(item)
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise OtlpDecodeError(f"{where}.doubleValue must be a number")
            return float(item)
        if key in ("boolValue", "bool_value"):
            if not isinstance(item, bool):
                raise OtlpDecodeError(f"{where}.boolValue must be true or false")
            return item
        if key in ("arrayValue", "array_value"):
            return [_json_value(v, f"{where}[{i}]", depth + 1)
                    for i, v in enumerate(_list(_obj(item, where), "values", where))]
        if key in ("kvlistValue", "kvlist_value"):
            return _json_attrs(_list(_obj(item, where), "values", where), where, depth + 1)
        if key in ("bytesValue", "bytes_value"):
            try:
                return base64.b64decode(item, validate=True)
            except (ValueError, TypeError):
                raise OtlpDecodeError(f"{where}.bytesValue must be base64") from None
    return None  # {} is an empty value; unknown keys are ignored


def _json_attrs(items: list[Any], where: str, depth: int = 0) -> dict[str, Any]:
    if len(items) > MAX_ATTRIBUTES:
        raise OtlpDecodeError(f"{where} carries {len(items):,} attributes; the limit is {MAX_ATTRIBUTES:,}")
    out: dict[str, Any] = {}
    for i, kv in enumerate(items):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise OtlpDecodeError(f"{where}.attributes[{i}] must be {{\"key\": \"…\", \"value\": {{…}}}}")
        value = kv.get("value")
        out[kv["key"]] = None if value is None else _json_value(value, f"{where}.attributes[{kv['key']!r}]", depth)
    return out


def _decode_json(signal: str, body: bytes) -> list[Record]:
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise OtlpDecodeError(f"the body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise OtlpDecodeError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise OtlpDecodeError("invalid JSON: nested too deeply") from None
    top, scopes_keys, items_key = _CONTAINERS[signal]
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"an OTLP/JSON export request is an object with {top!r}")
    if data and _get(data, top) is None:
        raise OtlpDecodeError(f"not an OTLP {signal} export request: expected {top!r}, "
                              f"got keys {', '.join(sorted(map(str, data))[:5])}")
    records: list[Record] = []
    for r_i, res_block in enumerate(_list(data, top, "")):
        where = f"{top}[{r_i}]"
        res_block = _obj(res_block, where)
        resource = _json_attrs(_list(_obj(_get(res_block, "resource"), f"{where}.resource"), "attributes", where),
                               f"{where}.resource")
        scopes: list[Any] = []
        for key in scopes_keys:
            scopes += _list(res_block, key, where)
        for s_i, scope_block in enumerate(scopes):
            s_where = f"{where}.{scopes_keys[0]}[{s_i}]"
            scope_block = _obj(scope_block, s_where)
            scope = _obj(_get(scope_block, "scope") or _get(scope_block, "instrumentationLibrary"), s_where)
            scope_name = scope.get("name") if isinstance(scope.get("name"), str) else ""
            for i, item in enumerate(_list(scope_block, items_key, s_where)):
                i_where = f"{s_where}.{items_key}[{i}]"
                item = _obj(item, i_where)
                if signal == METRIC:
                    records.extend(_json_metric(resource, scope_name, item, i_where))
                else:
                    records.append(_json_item(signal, resource, scope_name, item, i_where))
                _check_count(records)
    for record in records:
        _check_attrs(record)
    return records


def _json_item(signal: str, resource: dict[str, Any], scope: str, item: dict[str, Any], where: str) -> Record:
    attrs = _json_attrs(_list(item, "attributes", where), where)
    trace_id = _hex_id(_get(item, "traceId"), 16, f"{where}.traceId")
    span_id = _hex_id(_get(item, "spanId"), 8, f"{where}.spanId")
    if signal == SPAN:
        status = _obj(_get(item, "status"), f"{where}.status")
        name = item.get("name")
        message = status.get("message")
        return Record(
            SPAN, resource, scope, name if isinstance(name, str) else "", attrs, trace_id, span_id,
            _hex_id(_get(item, "parentSpanId"), 8, f"{where}.parentSpanId"),
            _int(_get(item, "startTimeUnixNano") or 0, f"{where}.startTimeUnixNano"),
            _int(_get(item, "endTimeUnixNano") or 0, f"{where}.endTimeUnixNano"),
            _enum(status.get("code"), f"{where}.status.code"), message if isinstance(message, str) else "",
            _enum(item.get("kind"), f"{where}.kind"))
    body_raw = item.get("body")
    body = None if body_raw is None else _json_value(body_raw, f"{where}.body")
    time = _int(_get(item, "timeUnixNano") or _get(item, "observedTimeUnixNano") or 0, f"{where}.timeUnixNano")
    event_name = _get(item, "eventName")
    return Record(LOG, resource, scope, _event_name(event_name if isinstance(event_name, str) else "", attrs, body),
                  attrs, trace_id, span_id, "", time, time)


def _json_metric(resource: dict[str, Any], scope: str, metric: dict[str, Any], where: str) -> list[Record]:
    name = metric.get("name") if isinstance(metric.get("name"), str) else ""
    for kind in ("sum", "gauge", "histogram"):
        data = metric.get(kind)
        if data is None:
            continue
        data = _obj(data, f"{where}.{kind}")
        temporality = _enum(_get(data, "aggregationTemporality"), f"{where}.{kind}.aggregationTemporality")
        out = []
        for i, p in enumerate(_list(data, "dataPoints", f"{where}.{kind}")):
            p_where = f"{where}.{kind}.dataPoints[{i}]"
            p = _obj(p, p_where)
            extra: dict[str, Any] = {"temporality": temporality, "kind": kind}
            if kind == "histogram":
                extra["value"] = _number(_get(p, "sum"), f"{p_where}.sum")
                extra["count"] = _int(_get(p, "count") or 0, f"{p_where}.count")
            elif _get(p, "asInt") is not None:
                extra["value"] = _int(_get(p, "asInt"), f"{p_where}.asInt")
            else:
                extra["value"] = _number(_get(p, "asDouble"), f"{p_where}.asDouble")
            out.append(Record(
                METRIC, resource, scope, name, _json_attrs(_list(p, "attributes", p_where), p_where),
                start_ns=_int(_get(p, "startTimeUnixNano") or 0, f"{p_where}.startTimeUnixNano"),
                end_ns=_int(_get(p, "timeUnixNano") or 0, f"{p_where}.timeUnixNano"), extra=extra))
        return out
    return []


def _number(raw: Any, where: str) -> float:
    if raw is None:
        return 0.0
    if isinstance(raw, str) and raw in ("NaN", "Infinity", "-Infinity"):
        return float(raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise OtlpDecodeError(f"{where} must be a number")
    return float(raw)


# --- entry point --------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """`protobuf` or `json` from a Content-Type (parameters ignored), else `UnsupportedMedia`."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "application/x-protobuf":
        return "protobuf"
    if media == "application/json":
        return "json"
    if media.startswith("application/grpc"):
        raise UnsupportedMedia(
            f"Content-Type {media!r}: gRPC is not served here. Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "
            "(or http/json); `llmtray otel-env` prints the exact settings")
    raise UnsupportedMedia(f"unsupported Content-Type {content_type!r}: send application/x-protobuf or "
                           "application/json (OTLP/HTTP)")


class UnsupportedMedia(OtlpDecodeError):
    """Neither OTLP/HTTP encoding (a 415)."""


def decode(signal: str, content_type: str | None, content_encoding: str | None, body: bytes) -> Export:
    """The records of one export request; `OtlpDecodeError` (or a subclass) says what is wrong."""
    kind = SIGNALS[signal]
    media = media_type(content_type)
    raw = decompress(body, content_encoding)
    records = _decode_protobuf(kind, raw) if media == "protobuf" else _decode_json(kind, raw)
    return Export(kind, records)
