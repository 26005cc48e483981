"""Decoding OTLP bodies: both encodings give the same records; hostile bodies fail clearly."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from llmtray.otel import decode as d
from llmtray.otel.records import OtlpDecodeError
from tests.otel import payloads as p


def _json(payload: dict) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize("make", [p.claude_code_log, p.codex_log, p.gemini_cli_logs, p.openai_v2_span,
                                  p.ai_sdk_spans, p.openinference_spans, p.pydantic_ai_spans])
def test_protobuf_and_json_give_the_same_records(make) -> None:  # noqa: ANN001
    payload = make()
    signal = "traces" if "resourceSpans" in payload else "logs"
    from_json = d.decode(signal, "application/json", None, _json(payload)).records
    from_pb = d.decode(signal, "application/x-protobuf", None, p.to_protobuf(payload)).records
    assert from_json == from_pb and from_json


def test_hex_ids_are_kept_as_hex() -> None:
    [record] = d.decode("traces", "application/json", None, _json(p.openai_v2_span())).records
    assert record.trace_id == p.TRACE and record.span_id == "b1b1b1b1b1b1b1b1"


def test_base64_looking_ids_are_refused_not_misread() -> None:
    payload = p.openai_v2_span()
    payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "W47/95gDgQPSabYzgT/GDA=="
    with pytest.raises(OtlpDecodeError, match="traceId must be 32 hex digits"):
        d.decode("traces", "application/json", None, _json(payload))


def test_enum_names_int64_strings_and_snake_case_are_read() -> None:
    payload = p.openai_v2_span()
    s = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["kind"] = "SPAN_KIND_CLIENT"
    s["status"] = {"code": "STATUS_CODE_ERROR"}
    s["start_time_unix_nano"] = s.pop("startTimeUnixNano")
    [record] = d.decode("traces", "application/json", None, _json(payload)).records
    assert record.kind == 3 and record.status_code == 2 and record.start_ns == p.T0


def test_content_type_parameters_ignored_and_grpc_named() -> None:
    assert d.media_type("application/json; charset=utf-8") == "json"
    with pytest.raises(d.UnsupportedMedia, match="gRPC is not served"):
        d.media_type("application/grpc+proto")
    with pytest.raises(d.UnsupportedMedia, match="text/plain"):
        d.media_type("text/plain")


def test_gzip_and_deflate() -> None:
    raw = _json(p.codex_log())
    assert d.decompress(gzip.compress(raw), "gzip") == raw
    assert d.decompress(zlib.compress(raw), "deflate") == raw
    with pytest.raises(d.UnsupportedEncoding):
        d.decompress(raw, "br")
    with pytest.raises(d.UnsupportedEncoding):
        d.decompress(raw, "gzip, gzip")
    with pytest.raises(OtlpDecodeError, match="not valid gzip"):
        d.decompress(b"not gzip at all", "gzip")
    with pytest.raises(OtlpDecodeError, match="truncated"):
        d.decompress(gzip.compress(raw)[:-12], "gzip")


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (40 * 2**20), compresslevel=9)  # 40 KB that inflate to 40 MiB
    with pytest.raises(d.TooLarge, match="inflates to more than"):
        d.decompress(bomb, "gzip", limit=1 * 2**20)


@pytest.mark.parametrize(("body", "media", "message"), [
    (b"\xff\xfe garbage", "application/x-protobuf", "not a protobuf"),
    (b"{not json", "application/json", "invalid JSON"),
    (b'{"events": [{"provider": "openai"}]}', "application/json", "expected 'resourceSpans'"),
    (b"[1, 2]", "application/json", "is an object"),
    (b'{"resourceSpans": {"x": 1}}', "application/json", "must be an array"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "a", "value": {"intValue": '
     b'"99999999999999999999999"}}]}]}]}]}', "application/json", "integer"),
])
def test_not_otlp_is_a_decode_error(body: bytes, media: str, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        d.decode("traces", media, None, body)


def test_empty_request_is_fine() -> None:
    assert d.decode("traces", "application/json", None, b"{}").records == []
    assert d.decode("logs", "application/x-protobuf", None, b"").records == []


def test_ten_thousand_attributes_refused() -> None:
    payload = p.openai_v2_span()
    payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = p.attrs(
        {f"k{i}": i for i in range(10_000)})
    with pytest.raises(OtlpDecodeError, match="10,000 attributes"):
        d.decode("traces", "application/json", None, _json(payload))
    with pytest.raises(OtlpDecodeError, match="attributes"):
        d.decode("traces", "application/x-protobuf", None, p.to_protobuf(payload))


def test_deeply_nested_values_refused() -> None:
    value: dict = {"stringValue": "x"}
    for _ in range(50):
        value = {"arrayValue": {"values": [value]}}
    payload = p.traces("x", [p.span("s", "0102030405060708", {"deep": value})])
    with pytest.raises(OtlpDecodeError, match="nested too deeply"):
        d.decode("traces", "application/json", None, _json(payload))
