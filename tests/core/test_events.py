"""The event contract: every malformed shape gets its exact error; valid events round-trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtray.core.errors import EventValidationError
from llmtray.core.events import (
    OPERATIONS,
    SERVICE_TIERS,
    UsageEvent,
    format_ts,
    parse_batch,
    parse_event,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OK = {"provider": "openai", "model": "gpt-4o-mini"}


def errors_of(data, now=NOW) -> list[tuple[str, str]]:
    with pytest.raises(EventValidationError) as info:
        parse_event(data, now=now)
    return [(e.field, e.message) for e in info.value.errors]


MALFORMED = [
    ([1, 2], [("", "an event must be a JSON object, got array")]),
    ("event", [("", "an event must be a JSON object, got string")]),
    (None, [("", "an event must be a JSON object, got null")]),
    ({}, [("provider", "is required"), ("model", "is required")]),
    ({"model": "m"}, [("provider", "is required")]),
    ({"provider": "openai"}, [("model", "is required")]),
    ({**OK, "modle": "x"}, [("modle", "unknown field (did you mean 'model'?)")]),
    ({**OK, "input_token": 5}, [("input_token", "unknown field (did you mean 'input_tokens'?)")]),
    ({**OK, "zzzz": 1}, [("zzzz", "unknown field")]),
    ({**OK, "provider": 5}, [("provider", "must be a string, got number")]),
    ({**OK, "provider": "Open AI"}, [("provider", "must be a provider id like 'openai' or 'anthropic' (lowercase letters, digits, '.', '_' or '-', at most 64); got 'Open AI'")]),
    ({**OK, "model": ""}, [("model", "must not be empty")]),
    ({**OK, "model": "m" * 201}, [("model", "must be at most 200 characters, got 201")]),
    ({**OK, "model": "a\x00b"}, [("model", "must not contain NUL characters")]),
    ({**OK, "input_tokens": -1}, [("input_tokens", "must be ≥ 0, got -1")]),
    ({**OK, "input_tokens": "12"}, [("input_tokens", "must be an integer, got string")]),
    ({**OK, "input_tokens": 1.5}, [("input_tokens", "must be an integer, got 1.5")]),
    ({**OK, "input_tokens": True}, [("input_tokens", "must be an integer, got boolean")]),
    ({**OK, "output_tokens": float("nan")}, [("output_tokens", "must be a finite integer")]),
    ({**OK, "output_tokens": float("inf")}, [("output_tokens", "must be a finite integer")]),
    ({**OK, "output_tokens": 10**16}, [("output_tokens", f"must be ≤ {10**12}, got {10**16}")]),
    ({**OK, "requests": 0}, [("requests", "must be ≥ 1, got 0 (0 is only for a cost line item with cost_usd)")]),
    ({**OK, "input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 5},
     [("input_tokens", "must include cache tokens: cache_read_tokens + cache_write_tokens = 13 > input_tokens = 10")]),
    ({**OK, "input_tokens": 10, "cache_write_tokens": 2, "cache_write_1h_tokens": 3},
     [("cache_write_1h_tokens", "must be ≤ cache_write_tokens (2)")]),
    ({**OK, "output_tokens": 1, "reasoning_tokens": 2}, [("reasoning_tokens", "must be ≤ output_tokens (1)")]),
    ({**OK, "cost_usd": -0.01}, [("cost_usd", "must be ≥ 0, got -0.01")]),
    ({**OK, "cost_usd": "1,50"}, [("cost_usd", "is not a decimal amount: '1,50'")]),
    ({**OK, "cost_usd": "NaN"}, [("cost_usd", "must be a finite amount")]),
    ({**OK, "cost_usd": float("inf")}, [("cost_usd", "must be a finite amount")]),
    ({**OK, "cost_usd": [1]}, [("cost_usd", "must be a decimal string or a number, got array")]),
    ({**OK, "operation": "chat.completions"},
     [("operation", "must be one of " + ", ".join(OPERATIONS) + "; got 'chat.completions'")]),
    ({**OK, "service_tier": "scale"}, [("service_tier", "must be one of " + ", ".join(SERVICE_TIERS) + "; got 'scale'")]),
    ({**OK, "status": "failed"}, [("status", "must be one of ok, error; got 'failed'")]),
    ({**OK, "status": "ok", "error": "boom"}, [("error", "is only allowed with status 'error'")]),
    ({**OK, "error": "e" * 501}, [("error", "must be at most 500 characters, got 501")]),
    ({**OK, "stream": "true"}, [("stream", "must be true or false, got string")]),
    ({**OK, "latency_ms": -5}, [("latency_ms", "must be ≥ 0, got -5")]),
    ({**OK, "ttft_ms": "fast"}, [("ttft_ms", "must be a number, got string")]),
    ({**OK, "feature": "f" * 201}, [("feature", "must be at most 200 characters, got 201")]),
    ({**OK, "user": 42}, [("user", "must be a string, got number")]),
    ({**OK, "tags": ["a"]}, [("tags", "must be an object of string values, got array")]),
    ({**OK, "tags": {"k": 1}}, [("tags", "value of 'k' must be a string, got number")]),
    ({**OK, "tags": {f"k{i}": "v" for i in range(33)}}, [("tags", "must have at most 32 entries, got 33")]),
    ({**OK, "tags": {"k" * 65: "v"}}, [("tags", f"key {('k' * 40)!r} must be a non-empty string of at most 64 characters")]),
    ({**OK, "tags": {"k": "v" * 201}}, [("tags", "value of 'k' must be at most 200 characters without NUL")]),
    ({**OK, "id": "i" * 129}, [("id", "must be at most 128 characters, got 129")]),
    ({**OK, "request_id": 7}, [("request_id", "must be a string, got number")]),
    ({**OK, "ts": "2026-03-01T10:00:00"}, [("ts", "needs a UTC offset such as 'Z' or '+02:00': '2026-03-01T10:00:00'")]),
    ({**OK, "ts": "yesterday"}, [("ts", "is not an RFC 3339 timestamp: 'yesterday'")]),
    ({**OK, "ts": "2026-02-30T10:00:00Z"}, [("ts", "is not a valid date/time: day is out of range for month")]),
    ({**OK, "ts": "2026-03-01T12:06:00Z"},
     [("ts", "2026-03-01T12:06:00Z is more than 5 minutes in the future (now 2026-03-01T12:00:00Z)")]),
    ({**OK, "ts": 1772366400000}, [("ts", "1772366400000 is in the far future; Unix seconds expected (milliseconds?)")]),
    ({**OK, "ts": -1}, [("ts", "must be ≥ 0 Unix seconds, got -1")]),
    ({**OK, "ts": True}, [("ts", "must be an RFC 3339 string or Unix seconds, got boolean")]),
    ({**OK, "ts": 10**400}, [("ts", "10000000000000000000… is in the far future; Unix seconds expected (milliseconds?)")]),
    ({**OK, "latency_ms": 10**400}, [("latency_ms", "must be ≤ 1e+12 ms")]),
    ({**OK, "model": "gpt-\ud800"}, [("model", "must be valid Unicode: lone surrogate '\\ud800' at position 4")]),
    ({**OK, "tags": {"k": "v\udc00"}}, [("tags", "value of key 'k' must be valid Unicode: lone surrogate '\\udc00' at position 1")]),
    ({**OK, "ts": "9999-12-31T23:59:59-01:00"}, [("ts", "9999-12-31T23:59:59-01:00 is outside the supported date range")]),
    # several problems at once: all of them are reported
    ({"provider": "openai", "model": 1, "input_tokens": -2, "colour": "red"},
     [("model", "must be a string, got number"), ("input_tokens", "must be ≥ 0, got -2"), ("colour", "unknown field")]),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_event_gets_exact_errors(data, expected):
    assert errors_of(data) == expected


def test_table_is_big_enough():
    assert len(MALFORMED) >= 30


def test_minimal_event_gets_defaults():
    e = parse_event(OK, now=NOW)
    assert (e.ts, e.operation, e.requests, e.status, e.input_tokens) == (NOW, "chat", 1, "ok", 0)
    assert e.cost_usd is None and dict(e.tags) == {}


def test_timestamps_normalised_to_utc():
    e = parse_event({**OK, "ts": "2026-03-01T13:30:00.123456789+01:30"}, now=NOW)
    assert e.ts == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert parse_event({**OK, "ts": 1772366400.5}, now=NOW).ts == datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    # just inside the 5 minute tolerance
    assert parse_event({**OK, "ts": "2026-03-01T12:04:59Z"}, now=NOW).ts.minute == 4


def test_error_implies_status_error_and_provider_is_lowercased():
    e = parse_event({"provider": " OpenAI ", "model": "m", "error": "rate limited"}, now=NOW)
    assert (e.provider, e.status, e.error) == ("openai", "error", "rate limited")


def test_cost_keeps_decimal_exactly():
    assert parse_event({**OK, "cost_usd": 0.1}, now=NOW).cost_usd == Decimal("0.1")
    assert parse_event({**OK, "cost_usd": "0.000000001"}, now=NOW).cost_usd == Decimal("0.000000001")


def test_null_means_not_given():
    e = parse_event({**OK, "feature": None, "cost_usd": None, "ts": None}, now=NOW)
    assert e.feature is None and e.cost_usd is None and e.ts == NOW


def test_batch_reports_each_bad_index_and_nothing_partial():
    items = [OK, {**OK, "input_tokens": -1}, OK, {"model": "x"}]
    with pytest.raises(EventValidationError) as info:
        parse_batch(items, now=NOW)
    assert [(e.index, e.field) for e in info.value.errors] == [(1, "input_tokens"), (3, "provider")]
    assert info.value.errors[0].as_dict() == {"index": 1, "field": "input_tokens", "message": "must be ≥ 0, got -1"}
    assert len(parse_batch([OK, OK], now=NOW)) == 2


# --- round trip ---------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)


@st.composite
def events(draw) -> UsageEvent:
    inp = draw(st.integers(0, 10**9))
    cache_read = draw(st.integers(0, inp))
    cache_write = draw(st.integers(0, inp - cache_read))
    out = draw(st.integers(0, 10**9))
    ts = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 3, 1, 12), timezones=st.just(UTC)))
    return UsageEvent(
        provider=draw(st.sampled_from(["openai", "anthropic", "google", "x.y-z_1"])),
        model=draw(_text),
        ts=ts,
        id=draw(st.none() | _text),
        operation=draw(st.sampled_from(OPERATIONS)),
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(0, cache_write)),
        reasoning_tokens=draw(st.integers(0, out)),
        requests=draw(st.integers(1, 10**6)),
        cost_usd=draw(st.none() | st.decimals(0, 10**6, places=9, allow_nan=False)),
        service_tier=draw(st.none() | st.sampled_from(SERVICE_TIERS)),
        latency_ms=draw(st.none() | st.floats(0, 1e7)),
        ttft_ms=draw(st.none() | st.floats(0, 1e7)),
        stream=draw(st.none() | st.booleans()),
        feature=draw(st.none() | _text),
        user=draw(st.none() | _text),
        tags=draw(st.dictionaries(_text, st.text(max_size=20).filter(lambda s: "\x00" not in s), max_size=5)),
        request_id=draw(st.none() | _text),
    )


@settings(max_examples=300, deadline=None)
@given(events())
def test_round_trip_through_json(event: UsageEvent):
    import json

    wire = json.loads(json.dumps(event.to_json()))
    assert parse_event(wire, now=NOW) == event


def test_format_ts_is_rfc3339_utc():
    assert format_ts(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=7)) == "2026-01-02T03:04:05.000007Z"


def test_a_cost_line_item_carries_no_requests():
    """#17 item 16: a cost export's line is money, not a call; with cost_usd, requests may be 0."""
    e = parse_event({**OK, "requests": 0, "cost_usd": "1.25"}, now=NOW)
    assert (e.requests, e.cost_usd) == (0, Decimal("1.25"))
