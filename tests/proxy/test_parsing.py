"""The side readers the relay feeds: SSE split anywhere, line ends of every kind, oversized events
kept in bounded memory, compressed bodies in any chunking — usage comes out the same every time."""

from __future__ import annotations

import json
import time
import zlib

import pytest

from llmtray.ingest.codings import Decoder, narrow_accept_encoding
from llmtray.ingest.meter import ResponseMeter
from llmtray.ingest.sse import SseEvent, SseParser
from tests.proxy.stub import USAGE

STREAM = (b"event: message_start\ndata: {\"type\": \"message_start\"}\n\n"
          b": a comment\r\n"
          b"event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
          b"data: line one\rdata: line two\r\r"
          b"data:no-space\n\n"
          b"id: 7\nretry: 100\n\n"  # no data: nothing dispatched
          b"data: [DONE]\n\n")
EXPECTED = [SseEvent("message_start", b'{"type": "message_start"}'), SseEvent("ping", b'{"type": "ping"}'),
            SseEvent("message", b"line one\nline two"), SseEvent("message", b"no-space"),
            SseEvent("message", b"[DONE]")]


def parse(chunks: list[bytes], parser: SseParser | None = None) -> list[SseEvent]:
    parser = parser or SseParser()
    events = [e for c in chunks for e in parser.feed(c)]
    return events + parser.finish()


def test_events_are_the_same_however_the_stream_is_split():
    assert parse([STREAM]) == EXPECTED
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut
    assert parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_a_last_event_without_its_blank_line_is_still_read():
    assert parse([b"data: {\"usage\": 1}"]) == [SseEvent("message", b'{"usage": 1}')]


def test_an_oversized_event_keeps_head_and_tail_only():
    big = b"data: " + b"x" * 3_000_000 + b"\n\n"
    events = parse([big[i:i + 65536] for i in range(0, len(big), 65536)], SseParser(max_event_bytes=1 << 20))
    [event] = events
    assert event.clipped and len(event.data) <= 1 << 20
    assert event.data.startswith(b"xxx") and event.data.endswith(b"xxx")


def _meter(content_type: str = "text/event-stream", encoding: str | None = None) -> ResponseMeter:
    return ResponseMeter(status=200, content_type=content_type, content_encoding=encoding, t0=time.perf_counter())


def test_usage_is_read_from_a_huge_response_completed_event():
    """Responses' final event repeats the whole output: megabytes, usage at its very end."""
    done = {"type": "response.completed", "response": {
        "id": "resp_1", "model": "gpt-4.1-2025-04-14", "output": [{"type": "message", "content": [
            {"type": "output_text", "text": "word " * 600_000}]}], "usage": USAGE["responses"]}}
    body = (b"event: response.created\ndata: " + json.dumps({"type": "response.created", "response": {
        "id": "resp_1", "model": "gpt-4.1-2025-04-14", "usage": None}}).encode() + b"\n\n"
            + b"event: response.completed\ndata: " + json.dumps(done).encode() + b"\n\n")
    meter = _meter()
    for i in range(0, len(body), 32768):
        meter.feed(body[i:i + 32768])
    reading = meter.finish()
    assert reading.usage == USAGE["responses"] and reading.model == "gpt-4.1-2025-04-14"
    assert meter.note is None


@pytest.mark.parametrize("wbits, encoding", [(31, "gzip"), (15, "deflate"), (-15, "deflate")],
                         ids=["gzip", "deflate-zlib", "deflate-raw"])
def test_compressed_bodies_are_read_in_any_chunking(wbits, encoding):
    body = json.dumps({"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18", "usage": USAGE["chat"]}).encode()
    packer = zlib.compressobj(wbits=wbits)
    packed = packer.compress(body) + packer.flush()
    for size in (1, 7, len(packed)):
        decoder = Decoder(encoding)
        assert b"".join(p for i in range(0, len(packed), size) for p in decoder.decode(packed[i:i + size])) == body
    meter = _meter("application/json", encoding)
    for i in range(len(packed)):
        meter.feed(packed[i:i + 1])
    assert meter.finish().usage == USAGE["chat"]


def test_a_compression_bomb_is_decoded_in_bounded_pieces():
    packed = zlib.compress(b"\0" * 50_000_000, wbits=31)  # ~50 KB that inflate to 50 MB
    pieces = list(Decoder("gzip").decode(packed))
    assert sum(map(len, pieces)) == 50_000_000 and max(map(len, pieces)) <= 1 << 20


@pytest.mark.parametrize("given, forwarded", [
    ("gzip, deflate, br, zstd", "gzip, deflate"),
    ("br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip;q=0.8"),
    ("br", None),
    ("identity", "identity"),
])
def test_accept_encoding_is_narrowed_to_what_the_meter_reads(given, forwarded):
    assert narrow_accept_encoding(given) == forwarded
