"""Hypothesis against the metering proxy's header handling, through the real server to a local
stub upstream (`tests.proxy.stub`), one generated request per example.

The generator knows what it sent: X-LLMTray-* attribution (any case, UTF-8 or Latin-1 bytes,
blank values, empty tag items) with an injected mistake now and then (an unknown X-LLMTray-*
name, a header twice, a value too long, a tag without `=`, a tag twice, too many tags),
hop-by-hop headers (including ones named by `Connection`), the caller's own headers with
repeats, and a browser Origin once in a while. So it knows the answer: 403 for a web page,
400 for a mistake (nothing forwarded), otherwise the upstream's 200 with exactly the caller's
end-to-end headers arriving in order and byte for byte, none of the hop's own, and — for a
call that costs money — one stored event carrying that attribution.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from llmtray.ingest.service import IngestService
from tests.proof.conftest import Mode, assert_no_traceback, proxying_service, rarely
from tests.proof.rawhttp import Exchange, exchange, health
from tests.proxy.stub import StubUpstream

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "claude-sonnet-4-0", "max_tokens": 9,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
# (method, target, body, recorded, expected status without header faults)
ROUTES = [("POST", "/proxy/openai/v1/chat/completions", CHAT, True, 200),
          ("POST", "/proxy/anthropic/v1/messages", MESSAGES, True, 200),
          ("GET", "/proxy/openai/v1/models", b"", False, 200),
          ("POST", "/proxy/opnai/v1/chat/completions", CHAT, False, 404)]
ATTRIBUTION = ["Feature", "User", "Project", "Env"]
HOP = [("Connection", "keep-alive"), ("Connection", "keep-alive, X-Hop-A"), ("X-Hop-A", "secret-hop"),
       ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
       ("Proxy-Authorization", "Basic cHJveHk6cGFzcw=="), ("Trailer", "X-Checksum"), ("Expect", "100-continue")]
# this hop's own headers: never forwarded (nor any header a Connection header names)
HOP_NAMES = {"connection", "keep-alive", "te", "upgrade", "proxy-connection", "proxy-authorization", "trailer",
             "expect", "host", "transfer-encoding", "content-length"}
WORD = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_.:/@+"), min_size=1, max_size=12)
LATIN1 = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_characters="\x7f,="),
                 min_size=1, max_size=20).filter(lambda s: not s[0].isspace() and not s[-1].isspace())


STUB_SCENARIOS = ("fail-", "stall-", "cut", "gated", "endless", "br")  # models that make the stub act up
# no lone surrogates or NULs: the stub echoes the model, and no provider answers with those
MODEL_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(MODEL_TEXT, max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(MODEL_TEXT, max_size=8), kids,
                                                                              max_size=4),
                    max_leaves=15)


@st.composite
def chat_bodies(draw: st.DrawFn) -> bytes:
    """What a caller may post to a recorded endpoint: JSON objects of any shape (the model a long
    or odd string, `stream` not a boolean, deep extras), or bytes that aren't JSON at all. The
    proxy reads what it can for the event and forwards every byte as it came."""
    if rarely(draw, 4):
        return b"x" + draw(st.binary(max_size=2000))
    body: dict[str, object] = draw(st.dictionaries(st.text(MODEL_TEXT, max_size=8), JSON, max_size=5))
    if draw(st.booleans()):
        body["model"] = draw(st.one_of(st.text(MODEL_TEXT, min_size=1, max_size=300), st.just("m" * 300)).filter(
            lambda m: not m.startswith(STUB_SCENARIOS)))
    else:
        body.pop("model", None)
    if draw(st.booleans()):
        body["stream"] = draw(st.sampled_from([True, False, "yes", 1, None, []]))
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IngestService, StubUpstream]]:
    with proxying_service(tmp_path_factory.mktemp("fuzz-proxy")) as served:
        yield served


# Headers that may appear once only; aiohttp's parser refuses a repeat (request smuggling and
# cache poisoning rest on two readers picking different copies).
SINGLETON = {"user-agent", "content-type", "host"}


def wire(text: str, latin1: bool) -> str:
    """A header value as its bytes go on the wire (held as a Latin-1 string): UTF-8 unless asked."""
    return text.encode("latin-1" if latin1 else "utf-8").decode("latin-1")


def read_back(sent: str) -> str:
    """What the proxy makes of header bytes: UTF-8 if they are UTF-8, else Latin-1 (DESIGN: UTF-8 senders)."""
    raw = sent.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class Call:
    exchange: Exchange
    expect: int
    why: str
    recorded: bool
    fields: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    end_to_end: list[tuple[str, str]] = field(default_factory=list)  # must reach the upstream, in order
    dropped: set[str] = field(default_factory=set)  # names that must not

    @property
    def upstream_target(self) -> str:
        """/proxy/<upstream>/rest → /rest (the stub is every upstream's base URL)."""
        return "/" + self.exchange.target.split("/", 3)[3]


@st.composite
def calls(draw: st.DrawFn) -> Call:
    method, target, body, recorded, expect = draw(st.sampled_from(ROUTES))
    why = f"{method} {target}"
    if body == CHAT and rarely(draw, 3):
        body = draw(chat_bodies())
    headers: list[tuple[str, str]] = [("Host", draw(st.sampled_from(["127.0.0.1", "localhost:8787", "[::1]"])))]
    fields: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(ATTRIBUTION), unique=True)):
        latin1 = draw(st.booleans())
        value = draw(LATIN1 if latin1 else st.lists(WORD, min_size=1, max_size=4).map(" ".join))
        if draw(st.integers(0, 9)) == 0:
            value = "   "  # blank: not an attribution
        sent = wire(value, latin1)
        header = draw(st.sampled_from([f"X-LLMTray-{name}", f"x-llmtray-{name.lower()}", f"X-LLMTRAY-{name.upper()}"]))
        headers.append((header, sent))
        if read_back(sent).strip():
            fields[name.lower()] = read_back(sent).strip()
    tags: dict[str, str] = {}
    if draw(st.booleans()):
        keys = draw(st.lists(WORD, max_size=8, unique=True))
        tags = {k: draw(st.lists(WORD, max_size=3).map(" ".join)) for k in keys}
        items = [f"{k}={v}" for k, v in tags.items()] + [""] * draw(st.integers(0, 2))  # empty items are skipped
        headers.append(("X-LLMTray-Tags", wire(",".join(draw(st.permutations(items))), False)))

    fault = draw(st.sampled_from(["unknown header", "twice", "too long", "not k=v", "empty key", "tag twice",
                                  "33 tags", "long tag key", "source header"])) if rarely(draw, 4) else None
    if fault == "unknown header":
        headers.append(("X-LLMTray-Team", "search"))
    elif fault == "twice":
        headers += [("X-LLMTray-Env", "dev"), ("x-llmtray-env", "prod")]
    elif fault == "too long":
        headers.append(("X-LLMTray-User", "é" * 201 if draw(st.booleans()) else "u" * 201))
    elif fault in ("not k=v", "empty key", "tag twice", "33 tags", "long tag key"):
        bad = {"not k=v": "team", "empty key": "=x", "tag twice": "a=1, a=2",
               "33 tags": ",".join(f"k{i}=v" for i in range(33)), "long tag key": "k" * 65 + "=v"}[fault]
        headers = [h for h in headers if h[0] != "X-LLMTray-Tags"] + [("X-LLMTray-Tags", bad)]
    elif fault == "source header":
        headers.append(("X-LLMTray-Source", "hook"))
    if fault is not None and expect == 200:
        expect, why, recorded = 400, f"attribution mistake: {fault}", False

    hop = draw(st.lists(st.sampled_from(HOP), max_size=4, unique=True))
    if ("Expect", "100-continue") in hop and method == "GET":
        hop.remove(("Expect", "100-continue"))
    custom = draw(st.lists(st.tuples(st.sampled_from(["X-C-Trace", "X-C-Run", "OpenAI-Organization",
                                                      "anthropic-version", "User-Agent", "Authorization"]),
                                     LATIN1), max_size=5))
    origin = rarely(draw, 12)
    if origin:
        headers.append(draw(st.sampled_from([("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")])))
        expect, why, recorded = 403, "a browser page", False
    ordered = draw(st.permutations(headers + hop + custom))
    names = [k.lower() for k, _ in ordered]
    if any(names.count(n) > 1 for n in SINGLETON):  # RFC 9110: one value only; refused by the parser, first
        expect, why, recorded = 400, "a singleton header given twice", False
    if method == "POST":
        ordered.append(("Content-Type", "application/json"))
    dropped = HOP_NAMES | {t.strip().lower() for k, v in ordered if k == "Connection" for t in v.split(",")}
    end_to_end = [(k, v) for k, v in ordered if k.lower() not in dropped and not k.lower().startswith("x-llmtray-")]
    return Call(Exchange(method, target, "HTTP/1.1", ordered, body), expect, why, recorded and expect == 200,
                fields, tags if expect == 200 else {}, end_to_end, dropped)


def _proxy_events(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM event WHERE source = 'proxy'").fetchone()[0]


def _wait_events(conn: sqlite3.Connection, n: int) -> int:
    """The proxy stores after answering (batched every 50 ms): wait for `n`, or give up at 10 s."""
    deadline = time.monotonic() + 10
    while (count := _proxy_events(conn)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_proxy_header_fuzz(proxied: tuple[IngestService, StubUpstream], mode: Mode):
    service, stub = proxied
    conn = sqlite3.connect(Path(service.paths.db))
    conn.row_factory = sqlite3.Row
    recorded = {"n": 0, "statuses": {}}

    @settings(max_examples=int(mode.pick(70, 700)), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(call=calls())
    def run(call: Call) -> None:
        note(f"expect {call.expect} because {call.why}")
        forwarded = len(stub.received)
        reply, _ = exchange(service.port, call.exchange.encode())
        note(f"got {reply.status} {reply.body[:300]!r}")
        assert reply.status == call.expect, call.why
        assert_no_traceback(reply.body.decode("utf-8", "replace"))
        if call.expect == 200:
            got = stub.received[-1]
            assert len(stub.received) == forwarded + 1
            assert (got.method, got.target) == (call.exchange.method, call.upstream_target)
            assert got.body == call.exchange.body  # every byte, as it came
            names = got.names()
            sent = {k.lower() for k, _ in call.exchange.headers}
            assert not names & sent & call.dropped - {"host", "content-length"}
            assert not any(n.startswith("x-llmtray-") for n in names)
            arrived = [(k.lower(), v) for k, v in got.headers if k.lower() in {n.lower() for n, _ in call.end_to_end}]
            assert arrived == [(k.lower(), v) for k, v in call.end_to_end]  # in order, byte for byte, repeats kept
        else:
            assert len(stub.received) == forwarded  # refused before anything was sent
        if call.recorded:
            recorded["n"] += 1
        assert _wait_events(conn, recorded["n"]) == recorded["n"]
        if call.recorded:
            row = conn.execute("SELECT * FROM event WHERE source = 'proxy' ORDER BY id DESC LIMIT 1").fetchone()
            assert {k: row[k] for k in ("feature", "user", "project", "env") if row[k]} == call.fields
            stored_tags = json.loads(row["tags"] or "{}")
            assert {k: v for k, v in stored_tags.items() if k in call.tags} == call.tags
            assert all(k in call.tags or k.startswith("llmtray.") for k in stored_tags)
        assert health(service.port) == 200
        recorded["statuses"][reply.status] = recorded["statuses"].get(reply.status, 0) + 1

    try:
        run()
        time.sleep(0.2)  # a stray event would be stored within the proxy's 50 ms batching
        assert _proxy_events(conn) == recorded["n"]
    finally:
        conn.close()
    print(f"\nproxy fuzz: statuses {dict(sorted(recorded['statuses'].items()))}, {recorded['n']} calls recorded")
    assert recorded["n"] > 0
