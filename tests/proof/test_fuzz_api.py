"""Hypothesis against `POST /v1/events` over a real socket, one generated request per example.

Each example is built together with the answer DESIGN §5 calls for — the guard's 403s and 400s,
404/405, 401, 415, a bad `X-LLMTray-Source`, 413, the body's 400 naming the bad event's index
and field, or 200 — following the order in which the server checks them, so the status is
predicted exactly, not picked from a list. After every example: the answer is JSON without
Python internals, a pipelined `GET /v1/health` behind it is answered unless the server said
`Connection: close` (framing never desynchronises), a fresh connection's health check answers,
and the event table grew by exactly the `accepted` of a 200 (all with the declared source).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from llmtray.ingest.service import IngestService
from tests.ingest.conftest import make_service
from tests.proof.conftest import LIMITS, Mode, assert_no_traceback, rarely, threads_stopped
from tests.proof.rawhttp import HEALTH, Exchange, exchange, health

DOCUMENTED = {200, 400, 401, 403, 404, 405, 413, 415, 501, 503}
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestService]:
    with threads_stopped():
        service = make_service(tmp_path_factory.mktemp("fuzz-api"), LIMITS)
        yield service
        service.stop()


# --- events ------------------------------------------------------------------------------------

TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ID_POOL = [f"dup-{i}" for i in range(12)]
TOKEN_FIELDS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
                "reasoning_tokens"]  # shared across examples and batches: duplicates happen


def text(max_size: int, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(TEXT, min_size=min_size, max_size=max_size).filter(lambda s: s.strip() or min_size == 0)


def timestamps() -> st.SearchStrategy[Any]:
    past = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2025, 12, 31))
    offsets = st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "z"])
    return st.one_of(
        st.builds(lambda d, o: d.strftime("%Y-%m-%dT%H:%M:%S.%f") + o, past, offsets),
        st.builds(lambda d, o: d.strftime("%Y-%m-%d %H:%M:%S") + o, past, offsets),
        st.integers(0, int(NOW.timestamp()) - 1),
        st.floats(0, NOW.timestamp() - 1),
    )


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "provider": draw(st.sampled_from(["openai", "anthropic", "google", "OpenAI", " mistral ", "x.ai_2-b"])),
        "model": draw(text(200)),
    }
    optional: dict[str, Any] = {}
    if draw(st.booleans()):
        optional["id"] = draw(st.one_of(st.sampled_from(ID_POOL), st.uuids().map(str), text(128)))
    given = set(draw(st.lists(st.sampled_from(TOKEN_FIELDS), unique=True)))

    def count(name: str, at_most: int) -> int:  # a field left out counts as 0
        return draw(st.integers(0, at_most)) if name in given else 0

    inp = count("input_tokens", 10**9)
    read = count("cache_read_tokens", inp)
    write = count("cache_write_tokens", inp - read)
    out = count("output_tokens", 10**7)
    counts = {"input_tokens": inp, "cache_read_tokens": read, "cache_write_tokens": write,
              "cache_write_1h_tokens": count("cache_write_1h_tokens", write), "output_tokens": out,
              "reasoning_tokens": count("reasoning_tokens", out)}
    choices: dict[str, st.SearchStrategy[Any]] = {
        "ts": timestamps(),
        "operation": st.sampled_from(["chat", "responses", "embeddings", "completion", "image", "audio", "other"]),
        "requests": st.integers(1, 10**6),
        "cost_usd": st.one_of(st.decimals(0, 10**6, places=9).map(lambda d: format(d, "f")),
                              st.floats(0, 10**6), st.integers(0, 10**6)),
        "service_tier": st.sampled_from(["default", "batch", "flex", "priority"]),
        "latency_ms": st.floats(0, 1e9),
        "ttft_ms": st.integers(0, 10**6),
        "stream": st.booleans(),
        "feature": text(200, 0), "user": text(200, 0), "project": text(200, 0), "env": text(200, 0),
        "tags": st.dictionaries(text(64), st.text(TEXT, max_size=200), max_size=32),
        "request_id": text(200),
    }
    for name, strategy in choices.items():
        if draw(st.integers(0, 3)) == 0:
            optional[name] = draw(strategy)
    optional.update((name, value) for name, value in counts.items() if name in given)
    if draw(st.integers(0, 5)) == 0:
        optional.update(status="error", error=draw(text(500)))
    if draw(st.integers(0, 7)) == 0:
        optional[draw(st.sampled_from(sorted(choices)))] = None  # null means "not given"
    event.update(optional)
    keys = draw(st.permutations(list(event)))
    return {k: event[k] for k in keys}


# (name, mutate(event) -> event, the field the 400 must name)
MUTATIONS: list[tuple[str, Any, str]] = [
    ("unknown field", lambda e: {**e, "promt_tokens": 3}, "promt_tokens"),
    ("no provider", lambda e: {k: v for k, v in e.items() if k != "provider"}, "provider"),
    ("null model", lambda e: {**e, "model": None}, "model"),
    ("provider with a space", lambda e: {**e, "provider": "open ai"}, "provider"),
    ("negative tokens", lambda e: {**e, "input_tokens": -1}, "input_tokens"),
    ("fractional tokens", lambda e: {**e, "output_tokens": 1.5}, "output_tokens"),
    ("boolean tokens", lambda e: {**e, "output_tokens": True}, "output_tokens"),
    ("tokens as a string", lambda e: {**e, "reasoning_tokens": "12"}, "reasoning_tokens"),
    ("10^16 tokens", lambda e: {**e, "input_tokens": 10**16}, "input_tokens"),
    ("cache beyond input", lambda e: {**e, "input_tokens": 5, "cache_read_tokens": 6, "cache_write_tokens": 0},
     "input_tokens"),
    ("1h writes beyond writes", lambda e: {**e, "input_tokens": 10, "cache_read_tokens": 0, "cache_write_tokens": 1,
                                           "cache_write_1h_tokens": 2}, "cache_write_1h_tokens"),
    ("reasoning beyond output", lambda e: {**e, "output_tokens": 1, "reasoning_tokens": 2}, "reasoning_tokens"),
    # 0 requests is only for a cost line item with cost_usd (#17): without one it is refused
    ("zero requests", lambda e: {k: v for k, v in e.items() if k != "cost_usd"} | {"requests": 0}, "requests"),
    ("negative cost", lambda e: {**e, "cost_usd": "-0.01"}, "cost_usd"),
    ("cost not a number", lambda e: {**e, "cost_usd": "1,5"}, "cost_usd"),
    ("unknown operation", lambda e: {**e, "operation": "chat.completions"}, "operation"),
    ("unknown tier", lambda e: {**e, "service_tier": "scale"}, "service_tier"),
    ("unknown status", lambda e: {**e, "status": "failed"}, "status"),
    ("error with status ok", lambda e: {**e, "status": "ok", "error": "boom"}, "error"),
    ("stream as text", lambda e: {**e, "stream": "yes"}, "stream"),
    ("feature of 201 characters", lambda e: {**e, "feature": "f" * 201}, "feature"),
    ("tags as a list", lambda e: {**e, "tags": ["a=b"]}, "tags"),
    ("33 tags", lambda e: {**e, "tags": {f"k{i}": "v" for i in range(33)}}, "tags"),
    ("tag value a number", lambda e: {**e, "tags": {"a": 1}}, "tags"),
    ("tag key of 65", lambda e: {**e, "tags": {"k" * 65: "v"}}, "tags"),
    ("NUL in the model", lambda e: {**e, "model": "gpt\x00"}, "model"),
    ("model of 201", lambda e: {**e, "model": "m" * 201}, "model"),
    ("id of 129", lambda e: {**e, "id": "i" * 129}, "id"),
    ("an hour ahead", lambda e: {**e, "ts": (NOW + timedelta(hours=1)).isoformat()}, "ts"),
    ("no UTC offset", lambda e: {**e, "ts": "2025-01-01T00:00:00"}, "ts"),
    ("milliseconds", lambda e: {**e, "ts": 1.7e12}, "ts"),
    ("negative latency", lambda e: {**e, "latency_ms": -1}, "latency_ms"),
    ("lone surrogate in the model", lambda e: {**e, "model": "gpt-\ud800"}, "model"),
    ("lone surrogate in a tag key", lambda e: {**e, "tags": {"\udfff": "x"}}, "tags"),
    ("year 1 with an offset", lambda e: {**e, "ts": "0001-01-01T00:00:00+01:00"}, "ts"),
    ("year 9999 with an offset", lambda e: {**e, "ts": "9999-12-31T23:59:59-01:00"}, "ts"),
    ("not an object", lambda e: "event", ""),
    ("an array", lambda e: [e], ""),
]


@dataclass
class Body:
    data: bytes
    expect: int  # 200 or 400
    events: int = 0  # a 200's events: accepted + duplicates
    bad: tuple[int, str] | None = None  # index and field a 400 must name
    why: str = ""


def shape(events: list[Any], draw: st.DrawFn) -> Any:
    """One event, an array, or {"events": [...]} (DESIGN §5's three shapes)."""
    form = draw(st.sampled_from(["array", "wrapped", "single"] if len(events) == 1 else ["array", "wrapped"]))
    return events[0] if form == "single" else (events if form == "array" else {"events": events})


def serialise(value: Any, draw: st.DrawFn) -> bytes:
    """JSON in one of several layouts; a lone surrogate can only travel as a `\\ud800` escape."""
    layout = {"indent": draw(st.sampled_from([None, 0, 2])), "separators": draw(st.sampled_from([None, (",", ":")]))}
    try:
        return json.dumps(value, ensure_ascii=draw(st.booleans()), **layout).encode()
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, **layout).encode()


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    kind = draw(st.sampled_from(["valid", "valid", "valid", "invalid", "invalid", "big", "json", "bytes", "encoded"]))
    if kind in ("valid", "encoded"):
        events = draw(st.lists(valid_event(), min_size=0, max_size=8))
        data = serialise(shape(events, draw) if events else draw(st.sampled_from([[], {"events": []}])), draw)
        body = Body(data, 200, len(events), why=f"{len(events)} valid event(s)")
        if kind == "encoded":
            encoding = draw(st.sampled_from(["utf-8-sig", "utf-16", "utf-32", "latin-1"]))
            text_ = data.decode()
            try:
                encoded = text_.encode(encoding)
            except UnicodeEncodeError:
                encoded = data
            if encoded != data:
                body = Body(encoded, 400, why=f"valid events encoded as {encoding}")
        return body
    if kind == "invalid":
        events = draw(st.lists(valid_event(), min_size=1, max_size=6))
        index = draw(st.integers(0, len(events) - 1))
        name, mutate, field_ = draw(st.sampled_from(MUTATIONS))
        events[index] = mutate(events[index])
        note(f"mutation {name!r} at index {index}")
        # a lone non-object is another refusal (see "json"), and a lone array is a batch
        value = shape(events, draw) if isinstance(events[index], dict) else events
        return Body(serialise(value, draw), 400, bad=(index, field_), why=f"{name} at index {index}")
    if kind == "big":  # > 64 KiB: validated on the worker thread, not the loop
        template = {"provider": "openai", "model": draw(text(40)), "input_tokens": draw(st.integers(0, 10**6)),
                    "ts": draw(timestamps()), "feature": draw(text(30, 0))}
        n, run = draw(st.integers(600, 3000)), draw(st.uuids())
        data = json.dumps([{**template, "id": f"big-{run}-{i}"} for i in range(n)]).encode()
        return Body(data, 200, n, why=f"{n} valid events, {len(data) // 1024} KiB")
    if kind == "json":
        leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                  | st.text())
        keys = st.sampled_from(["events", "provider", "model", "x"]) | st.text(max_size=8)
        value = draw(st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                                  | st.dictionaries(keys, kids, max_size=4), max_leaves=12))
        empty = value == [] or value == {"events": []}
        return Body(json.dumps(value).encode(), 200 if empty else 400, why=f"arbitrary JSON {value!r:.80}")
    data = draw(st.binary(max_size=300))
    try:
        empty = json.loads(data.decode("utf-8")) in ([], {"events": []})
    except ValueError:
        empty = False
    return Body(data, 200 if empty else 400, why="arbitrary bytes")


# --- requests ---------------------------------------------------------------------------------

@dataclass
class Plan:
    """A request and the answer it must get."""

    exchange: Exchange
    expect: int
    why: str
    body: Body
    source: str = "api"

    def __repr__(self) -> str:
        """Short enough for Hypothesis to print (a body runs to megabytes): the request line,
        the body's size and head, and the answer expected and why."""
        ex = self.exchange
        return (f"Plan({ex.method} {ex.target[:80]!r} {ex.version}, {len(ex.headers)} headers, "
                f"body {len(self.body.data)} B {self.body.data[:200]!r}, expect {self.expect}: {self.why[:200]})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints dataclasses field by field unless this says otherwise."""
        printer.text(repr(self))


HOSTS = [("127.0.0.1:{port}", True), ("localhost", True), ("[::1]:{port}", True), ("LOCALHOST:1", True),
         ("app.localhost", True), ("evil.example:8787", False), ("127.0.0.1.nip.io", False),
         ("0.0.0.0:{port}", False), ("2130706433", False), ("localhost.evil.example", False)]
GOOD_TOKEN = ["Bearer {t}", "bearer {t}", "BEARER  {t}", "Bearer {t} "]
BAD_TOKEN = [None, "Bearer {t}x", "Bearer {short}", "Basic dXNlcjpwYXNz", "Bearer", "Token {t}", "Bearer {T}"]
CONTENT_TYPES = [("application/json", True), ("Application/JSON; charset=UTF-8", True),
                 ('application/json;charset="utf-8"', True), ("application/json; charset=utf8", True),
                 (None, False), ("text/plain", False), ("application/json; charset=latin-1", False),
                 ("application/jsonx", False), ("multipart/form-data; boundary=x", False)]
SOURCES = [(None, "api"), ("hook", "hook"), (" Otel ", "otel"), ("API", "api"), ("proxy", None),
           ("import:csv", None), ("", None), ("hooks", None)]
HOP_BY_HOP = [("Connection", "keep-alive"), ("Connection", "close"), ("Connection", "keep-alive, X-Hop"),
              ("X-Hop", "1"), ("Keep-Alive", "timeout=5, max=100"), ("TE", "trailers"), ("Upgrade", "h2c"),
              ("Proxy-Connection", "keep-alive"), ("Trailer", "X-Checksum"), ("HTTP2-Settings", "AAMAAABkAAQ")]
ROUTES = [("POST", "/v1/events", None), ("POST", "/v1/events?debug=1", None), ("GET", "/v1/events", 405),
          ("PUT", "/v1/events", 405), ("POST", "/v1/health", 405), ("POST", "/v1/event", 404),
          ("POST", "/v1/events/", 404), ("POST", "/V1/EVENTS", 404)]
HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                       max_size=60).map(str.strip)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Most requests are well-formed (so bodies get judged); each header goes wrong now and then."""
    body = draw(bodies())
    version = "HTTP/1.0" if rarely(draw, 6) else "HTTP/1.1"
    method, target, route_status = draw(st.sampled_from(ROUTES)) if rarely(draw, 10) else ROUTES[0]
    checks: list[tuple[bool, int, str]] = []  # (fails?, status, why) in the order the server checks

    chunks = None
    if rarely(draw, 4):
        chunks = draw(st.lists(st.integers(1, 4096), max_size=6))
        checks.append((version == "HTTP/1.0", 501, "chunked in HTTP/1.0"))

    origin = draw(st.sampled_from(["https://evil.example", "null", "http://127.0.0.1:8787", ""])) \
        if rarely(draw, 10) else None
    fetch_site = draw(st.sampled_from(["none", "same-origin", "Same-Origin", "cross-site", "same-site"])) \
        if rarely(draw, 5) else None
    host_count = draw(st.sampled_from([0, 2])) if rarely(draw, 12) else 1
    host, loopback = draw(st.sampled_from(HOSTS if rarely(draw, 4) else HOSTS[:5]))
    # aiohttp's parser refuses a missing or repeated Host before the server sees the request
    checks.insert(0, (host_count == 2, 400, "two Host headers"))
    checks.insert(1, (host_count == 0 and version == "HTTP/1.1", 400, "no Host"))
    checks.append((origin is not None, 403, "Origin"))
    checks.append((fetch_site is not None and fetch_site.lower() not in ("none", "same-origin"), 403, "Sec-Fetch-Site"))
    checks.append((host_count == 1 and not loopback, 403, f"Host {host}"))
    checks.append((route_status is not None, route_status or 0, f"{method} {target}"))

    if rarely(draw, 8):
        auth = draw(st.sampled_from(BAD_TOKEN))
        checks.append((True, 401, f"Authorization {auth}"))
    else:
        auth = draw(st.sampled_from(GOOD_TOKEN))
    content_type, json_ok = draw(st.sampled_from(CONTENT_TYPES)) if rarely(draw, 5) else CONTENT_TYPES[0]
    checks.append((not json_ok, 415, f"Content-Type {content_type}"))
    source_header, source = draw(st.sampled_from(SOURCES)) if rarely(draw, 3) else SOURCES[0]
    checks.append((source is None, 400, f"X-LLMTray-Source {source_header!r}"))
    huge = chunks is None and rarely(draw, 20)
    checks.append((huge, 413, "Content-Length over 8 MiB"))

    named = [("Host", host)] * host_count
    named += [("Origin", origin)] if origin is not None else []
    named += [("Sec-Fetch-Site", fetch_site)] if fetch_site is not None else []
    named += [("Authorization", auth)] if auth is not None else []
    named += [("Content-Type", content_type)] if content_type is not None else []
    named += [("X-LLMTray-Source", source_header)] if source_header is not None else []
    named += draw(st.lists(st.sampled_from(HOP_BY_HOP), max_size=3, unique=True))
    named += draw(st.lists(st.tuples(st.from_regex(r"\AX-F-[A-Za-z0-9-]{1,16}\Z"), HEADER_VALUE), max_size=4))
    if version == "HTTP/1.1" and chunks is None and rarely(draw, 6):
        named.append(("Expect", "100-continue"))
    headers = draw(st.permutations(named))

    expect, why = body.expect, body.why
    for fails, status, reason in checks:
        if fails:
            expect, why = status, reason
            break
    ex = Exchange(method, target, version, list(headers), body.data, chunks,
                  declared_length=9 * 1024 * 1024 if huge else None)
    return Plan(ex, expect, why, body, source or "api")


# --- the test ---------------------------------------------------------------------------------

def _fill(ex: Exchange, port: int, token: str) -> Exchange:
    """Put the live port and token into the Host and Authorization templates."""
    values = {"port": port, "t": token, "short": token[:-1], "T": token.upper()}
    return replace(ex, headers=[(k, v.format(**values) if k in ("Host", "Authorization") else v)
                                for k, v in ex.headers])


def _closes(ex: Exchange) -> bool:
    """Whether the request asks to close the connection after it: a client then sends nothing
    more (RFC 9112 §9.6), and llhttp refuses bytes that follow such a request."""
    tokens = {t.strip().lower() for k, v in ex.headers if k.lower() == "connection" for t in v.split(",")}
    return "close" in tokens or (ex.version == "HTTP/1.0" and "keep-alive" not in tokens)


def test_post_events_fuzz(fuzz_service: IngestService, mode: Mode):
    port, token, db = fuzz_service.port, fuzz_service.token, Path(fuzz_service.paths.db)
    conn = sqlite3.connect(db)
    seen = {"examples": 0, "accepted": 0, "statuses": {}}

    @settings(max_examples=int(mode.pick(130, 1300)), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(plan=plans())
    def run(plan: Plan) -> None:
        note(f"expect {plan.expect} because {plan.why}")
        ex = _fill(plan.exchange, port, token)
        rows = conn.execute("SELECT count(*) FROM event").fetchone()[0]
        by_source = conn.execute("SELECT count(*) FROM event WHERE source = ?", (plan.source,)).fetchone()[0]
        pipelined = not (ex.declared_length or _closes(ex))
        reply, after = exchange(port, ex.encode(), then=HEALTH if pipelined else b"")
        note(f"got {reply.status} {reply.body[:300]!r}")
        assert reply.status == plan.expect, plan.why
        assert reply.status in DOCUMENTED
        assert reply.headers.get("content-type") == "application/json"
        assert_no_traceback(reply.body.decode("utf-8", "replace"))
        answer = reply.json()
        added = conn.execute("SELECT count(*) FROM event").fetchone()[0] - rows
        if reply.status == 200:
            assert set(answer) == {"accepted", "duplicates"}
            assert answer["accepted"] + answer["duplicates"] == plan.body.events
            assert added == answer["accepted"]  # committed before the answer, and nothing else
            assert conn.execute("SELECT count(*) FROM event WHERE source = ?",
                                (plan.source,)).fetchone()[0] - by_source == added
            seen["accepted"] += added
        else:
            assert set(answer) <= {"error", "errors"} and answer["error"]
            assert added == 0
            if plan.expect == 400 and plan.body.bad and reply.status == 400 and plan.why == plan.body.why:
                index, field_ = plan.body.bad
                assert any(e["index"] == index and e["field"] == field_ for e in answer["errors"]), answer
        if pipelined and "close" not in reply.headers.get("connection", ""):
            assert after is not None and after.status == 200, "a pipelined request after a kept-alive one was lost"
        assert health(port) == 200
        seen["examples"] += 1
        seen["statuses"][reply.status] = seen["statuses"].get(reply.status, 0) + 1

    try:
        run()
    finally:
        conn.close()
    print(f"\n{seen['examples']} examples, statuses {dict(sorted(seen['statuses'].items()))}, "
          f"{seen['accepted']} events accepted")
    assert {200, 400}.issubset(seen["statuses"])  # bodies were judged, not only headers
