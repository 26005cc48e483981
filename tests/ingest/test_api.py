"""The transport-free API: body decoding, shapes, content types and sources, without a socket."""

from __future__ import annotations

import json

import pytest

from llmtray.ingest.api import MAX_EVENTS, check_content_type, decode_events, decode_json, event_items, source_of
from llmtray.ingest.reply import HttpError
from tests.ingest.conftest import event


def _error(fn, *args) -> HttpError:  # noqa: ANN001
    with pytest.raises(HttpError) as info:
        fn(*args)
    return info.value


def test_three_shapes_give_the_same_events():
    one = decode_events(json.dumps(event(1)).encode())
    array = decode_events(json.dumps([event(1)]).encode())
    wrapped = decode_events(json.dumps({"events": [event(1)]}).encode())
    assert one == array == wrapped
    assert one[0].id == "ev-1" and one[0].input_tokens == 1001


def test_invalid_batch_names_every_bad_index_and_field():
    body = json.dumps([event(0), event(1, input_tokens=-1), event(2, modle="x")]).encode()
    err = _error(decode_events, body)
    assert err.status == 400
    assert "2 of 3 event(s) invalid" in err.message
    fields = {(e["index"], e["field"]) for e in err.errors}
    assert fields == {(1, "input_tokens"), (2, "modle")}
    assert any("did you mean 'model'" in e["message"] for e in err.errors)


def test_single_event_errors_carry_index_zero():
    err = _error(decode_events, b'{"provider": "openai"}')
    assert err.errors == [{"index": 0, "field": "model", "message": "is required"}]


@pytest.mark.parametrize("body, needle", [
    (b'{"provider": NaN}', "NaN is not a JSON number"),
    (b'{"provider": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"latency_ms": 1e400}', "number 1e400 is out of range"),
    (b'{"latency_ms": ' + b"9" * 400 + b"}", "(400 digits) is out of range"),
    (b'{"model": "\xff\xfe"}', "not valid UTF-8 (byte 11"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"provider": "openai",', "invalid JSON: Expecting property name"),
    (b"\xef\xbb\xbf{}", "invalid JSON"),
])
def test_strict_json(body, needle):
    err = _error(decode_json, body)
    assert err.status == 400 and needle in err.message


def test_too_many_events_names_the_limit():
    err = _error(event_items, [{}] * (MAX_EVENTS + 1))
    assert err.status == 400
    assert f"{MAX_EVENTS + 1}" in err.message and f"limit is {MAX_EVENTS}" in err.message
    assert len(event_items([{}] * MAX_EVENTS)) == MAX_EVENTS


@pytest.mark.parametrize("data, needle", [
    ({"events": {"a": 1}}, "'events' must be an array"),
    ({"events": [], "extra": 1}, "unknown key 'extra'"),
    ("just a string", "expected an event object"),
    (42, "expected an event object"),
])
def test_wrong_shapes(data, needle):
    assert needle in _error(event_items, data).message


@pytest.mark.parametrize("value", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON;charset=\"UTF-8\""])
def test_json_content_types_pass(value):
    check_content_type(value)


@pytest.mark.parametrize("value", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/json; charset=latin-1", "multipart/form-data; boundary=x"])
def test_other_content_types_are_415(value):
    assert _error(check_content_type, value).status == 415


def test_sources():
    assert source_of(None) == "api"
    assert source_of(" Hook ") == "hook"
    err = _error(source_of, "proxy")
    assert err.status == 400 and "X-LLMTray-Source" in err.message
