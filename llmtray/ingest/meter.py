"""What the metering proxy learns from one call: which endpoint it was, and what the response says.

The endpoint (from the path) decides the operation and which token convention applies — the
shapes alone are ambiguous (Anthropic and OpenAI Responses both say `input_tokens`, with
opposite cache semantics). The response is read as it passes: a JSON body, a JSON array
(Gemini's stream without `alt=sse`) or server-sent events, compressed or not, in bounded memory.
Provider usage becomes token fields only through `llmtray.core.usage`, like the hooks.

Recorded calls: POSTs to the generating endpoints below. Listing models, counting tokens,
retrieving a stored response (which repeats its usage) and file uploads pass through unrecorded,
so nothing is counted twice and the request count means calls that cost money.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmtray.core import usage as conventions
from llmtray.core.anomalies import NO_ANSWER_TAG
from llmtray.core.events import MAX_TAGS, format_ts
from llmtray.ingest.codings import Decoder, UnreadableCoding
from llmtray.ingest.sse import Clip, SseParser

FULL_JSON_BYTES = 4 << 20  # JSON bodies up to this size are parsed whole; larger ones by head and tail
SCAN_BYTES = 256 * 1024  # head and tail kept of a larger body
MAX_ERROR = 500
# Tags that say an event's numbers are not the whole truth (the same names the SDK hooks use).
USAGE_TAG = conventions.USAGE_TAG  # missing | partial | malformed | unreadable: the tokens are not the whole truth
STREAM_TAG = "llmtray.stream"  # abandoned (the client left) | interrupted (the upstream failed)

# An SSE event worth decoding: it carries usage or an error. Everything else (text deltas) is
# only scanned by this regex, so a long stream costs one C-level search per event.
_WORTH_DECODING = re.compile(rb'"(?:usage|usageMetadata|error)"\s*:\s*[{"]|"type"\s*:\s*"error"')
_KEY_VALUE = re.compile(r'(?<!\\)"(usage|usageMetadata|model|modelVersion|id|responseId|service_tier)"\s*:\s*')


@dataclass(frozen=True)
class Endpoint:
    """A recorded endpoint: the event's operation and the usage convention of its responses."""

    operation: str
    tokens: Callable[[Mapping[str, Any] | None], dict[str, int]]
    dialect: str  # error shape and SDK family: "openai", "anthropic" or "google"
    split_usage: bool = False  # Anthropic streams: input in message_start, output in message_delta


CHAT = Endpoint("chat", conventions.openai_chat, "openai")
COMPLETION = Endpoint("completion", conventions.openai_chat, "openai")
RESPONSES = Endpoint("responses", conventions.openai_responses, "openai")
EMBEDDINGS = Endpoint("embeddings", conventions.openai_responses, "openai")
IMAGE = Endpoint("image", conventions.openai_responses, "openai")
AUDIO = Endpoint("audio", conventions.openai_responses, "openai")
MESSAGES = Endpoint("chat", conventions.anthropic, "anthropic", split_usage=True)
GEMINI = Endpoint("chat", conventions.gemini, "google")
GEMINI_EMBED = Endpoint("embeddings", conventions.gemini, "google")

_SUFFIXES: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", CHAT),
    ("/completions", COMPLETION),
    ("/responses", RESPONSES),
    ("/embeddings", EMBEDDINGS),
    ("/messages", MESSAGES),
    ("/images/generations", IMAGE),
    ("/images/edits", IMAGE),
    ("/audio/transcriptions", AUDIO),
    ("/audio/translations", AUDIO),
    ("/audio/speech", AUDIO),
)
_GEMINI_PATH = re.compile(r"/(?:models|tunedModels)/([^/:]+):(\w+)$")
_GEMINI_METHODS = {"generateContent": GEMINI, "streamGenerateContent": GEMINI,
                   "embedContent": GEMINI_EMBED, "batchEmbedContents": GEMINI_EMBED}


@dataclass(frozen=True)
class Call:
    """What the request says about a recorded call, known before it is forwarded."""

    endpoint: Endpoint
    path_model: str | None = None  # Gemini names the model in the path
    path_stream: bool = False


def recorded_call(method: str, path: str) -> Call | None:
    """The recorded endpoint a request goes to (path relative to the upstream base), or None."""
    if method != "POST":
        return None
    m = _GEMINI_PATH.search(path)
    if m is not None:
        endpoint = _GEMINI_METHODS.get(m.group(2))
        return Call(endpoint, m.group(1), m.group(2) == "streamGenerateContent") if endpoint else None
    for suffix, endpoint in _SUFFIXES:
        if path.endswith(suffix):
            return Call(endpoint)
    return None


def error_dialect(upstream: str, path: str, call: Call | None) -> str:
    """Which provider's error shape a refusal or gateway error should take for this request."""
    if call is not None:
        return call.endpoint.dialect
    if upstream == "anthropic":
        return "anthropic"
    if upstream == "google" and "/openai/" not in path:
        return "google"
    return "openai"


@dataclass(frozen=True)
class RequestFacts:
    """From the request body: the model asked for and whether a stream was asked for."""

    model: str | None = None
    stream: bool = False


def request_facts(body: bytes, call: Call) -> RequestFacts:
    """Model and stream flag from a JSON request body (anything else: only what the path says)."""
    model, stream = call.path_model, call.path_stream
    if body[:1] in (b"{", b" ", b"\n", b"\r", b"\t"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("model"), str) and data["model"].strip():
                model = data["model"]
            stream = stream or data.get("stream") is True
    return RequestFacts(model, stream)


def _text(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


class Reading:
    """What the response has told so far: model, id, usage, tier, reported cost, an error."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.request_id: str | None = None
        self.usage: Any = None
        self.usage_start: Any = None  # Anthropic message_start
        self.tier: Any = None
        self.error: str | None = None

    def take(self, obj: Any) -> None:
        """Learn from one JSON document or one stream event (any provider's shape)."""
        if isinstance(obj, list):  # Gemini streamed as a JSON array
            for item in obj:
                self.take(item)
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start" and isinstance(obj.get("message"), dict):
            message = obj["message"]
            self._ids(message)
            self.usage_start = message.get("usage")
            return
        if kind == "message_delta":
            if obj.get("usage") is not None:
                self.usage = obj["usage"]
            return
        if isinstance(obj.get("response"), dict):  # Responses stream events carry the response
            self.take(obj["response"])
            return
        self._ids(obj)
        if obj.get("usage") is not None:
            self.usage = obj["usage"]
        if obj.get("usageMetadata") is not None:
            self.usage = obj["usageMetadata"]
        if obj.get("service_tier") is not None:
            self.tier = obj["service_tier"]
        error = obj.get("error")
        if kind == "error" or error:
            self.error = _error_message(error if error else obj)

    def _ids(self, obj: Mapping[str, Any]) -> None:
        self.model = _text(obj.get("model")) or _text(obj.get("modelVersion")) or self.model
        self.request_id = _text(obj.get("id")) or _text(obj.get("responseId")) or self.request_id


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
        return json.dumps(error, ensure_ascii=False)[:MAX_ERROR]
    return str(error)[:MAX_ERROR]


def error_text(body: bytes) -> str:
    """The message of a provider's error body (any of the three shapes), else its text."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list) and data:  # Gemini sometimes wraps its error in an array
        data = data[0]
    if isinstance(data, dict) and data.get("error"):
        return _error_message(data["error"])
    return body.decode("utf-8", "replace").strip()[:MAX_ERROR]


_END_EVENTS = frozenset({"message_stop", "response.completed", "response.incomplete", "response.failed"})


class ResponseMeter:
    """Fed the raw chunks of one response as they are relayed; never raises into the relay."""

    def __init__(self, *, status: int, content_type: str | None, content_encoding: str | None, t0: float):
        self.status = status
        self.t0 = t0
        self.ttft_ms: float | None = None
        self.bytes = 0
        self.reading = Reading()
        self.note: str | None = None  # why the usage could not be read, if it couldn't
        # The stream's own end marker was seen: a client that hangs up after it (SDKs close as
        # soon as they read it, often before the upstream's final bytes) got the whole answer.
        self.ended = False
        media = (content_type or "").split(";", 1)[0].strip().lower()
        self.sse = media == "text/event-stream"
        json_body = media in ("", "application/json") or media.endswith("+json")
        self._parser = SseParser() if self.sse and status < 300 else None
        self._body: Clip | None = None  # a JSON body, or an error body for its message
        if status >= 300:
            self._body = Clip(MAX_ERROR * 4)
        elif json_body and not self.sse:
            self._body = Clip(FULL_JSON_BYTES // 2)
        self._decoder: Decoder | None
        try:
            self._decoder = Decoder(content_encoding)
        except UnreadableCoding as exc:
            self._decoder = None
            self.note = f"content-encoding {exc.args[0]!s:.40} is not readable"

    @property
    def decompresses(self) -> bool:
        """Whether feeding inflates compressed bytes: the proxy then feeds off the event loop,
        since even a capped decompression takes long enough to stall every other request."""
        return self._decoder is not None and self._decoder.active

    def feed(self, chunk: bytes) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000.0
        self.bytes += len(chunk)
        if self._decoder is None:
            return
        try:
            for piece in self._decoder.decode(chunk):
                if self._parser is not None:
                    for event in self._parser.feed(piece):
                        self._event(event.event, event.data, event.clipped)
                elif self._body is not None:
                    self._body.add(piece)
        except Exception as exc:  # noqa: BLE001 - metering must never break the relay
            self._decoder = None
            self.note = f"response body unreadable: {type(exc).__name__}: {exc}"[:MAX_ERROR]

    def _event(self, name: str, data: bytes, clipped: bool) -> None:
        if name in _END_EVENTS or data.strip() == b"[DONE]":
            self.ended = True
        first = self.reading.model is None and self.reading.request_id is None
        if not (first or name == "error" or _WORTH_DECODING.search(data)):
            return
        if clipped:
            self.reading.take(_scan(data))
            return
        try:
            self.reading.take(json.loads(data))
        except (ValueError, RecursionError):
            pass  # `[DONE]`, a keep-alive, a non-JSON event

    def finish(self) -> Reading:
        """The body ended (or was cut): read what is pending and return the reading."""
        if self._decoder is None:
            return self.reading
        body = self._body
        try:
            if self._parser is not None:
                for event in self._parser.finish():
                    self._event(event.event, event.data, event.clipped)
            elif body is None:
                pass  # audio, images as bytes: nothing to read
            elif self.status >= 300:
                self.reading.error = error_text(bytes(body.head) if body.clipped else body.whole())
            elif body.clipped:
                self.reading.take(_scan(bytes(body.head)))
                self.reading.take(_scan(bytes(body.tail)))
            elif body.size:
                self.reading.take(json.loads(body.whole()))
        except (ValueError, RecursionError) as exc:
            self.note = f"response body is not JSON: {exc}"[:MAX_ERROR]
        return self.reading


def _scan(data: bytes) -> dict[str, Any]:
    """The top-level values we need from a JSON text we only hold part of (head or tail): each
    key's last occurrence whose value decodes on its own. Keys inside strings are escaped, so
    an unescaped `"usage":` is a real key."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for m in _KEY_VALUE.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, m.end())
        except ValueError:
            continue
        key = m.group(1)
        if key in ("usage", "usageMetadata") and not isinstance(value, dict):
            continue
        if key in ("model", "id") and key in found:
            continue  # the first model/id is the response's own; later ones are nested
        found[key] = value
    return found


@dataclass
class Attribution:
    """`feature`, `user`, `project`, `env` and tags from the X-LLMTray-* headers."""

    fields: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def scope_values(self, provider: str, model: str | None) -> dict[str, Any]:
        """The values an enforced budget's scope is matched against."""
        return {"provider": provider, "model": model, **self.fields, "tags": self.tags}


def build_event(*, provider: str, call: Call, facts: RequestFacts, attribution: Attribution, wall: float,
                latency_ms: float, reading: Reading | None = None, meter: ResponseMeter | None = None,
                error: str | None = None, stream_end: str | None = None) -> dict[str, Any]:
    """The usage event (DESIGN §3 JSON) for one proxied call."""
    reading = reading or Reading()
    notes: dict[str, str] = {}
    streamed = facts.stream or (meter is not None and meter.sse)
    event: dict[str, Any] = {
        "id": _event_id(provider, reading.request_id),
        "ts": format_ts(datetime.fromtimestamp(wall, UTC)),
        "provider": provider,
        "model": reading.model or _text(facts.model) or "unknown",
        "operation": call.endpoint.operation,
        "stream": streamed,
        "latency_ms": round(latency_ms, 3),
        **attribution.fields,
    }
    if streamed and meter is not None and meter.ttft_ms is not None:
        event["ttft_ms"] = round(meter.ttft_ms, 3)
    if error is None and meter is not None and meter.status >= 300:
        error = f"HTTP {meter.status}: {reading.error or 'no error message'}"
    elif error is None and reading.error:  # a 2xx whose body or stream reports a failure
        error = f"provider error: {reading.error}"
    if error:
        event["status"] = "error"
        event["error"] = error[:MAX_ERROR]
    if meter is not None and meter.note:
        notes[USAGE_TAG] = "unreadable"
        notes["llmtray.usage_error"] = meter.note[:200]
    elif meter is not None and meter.status < 300:
        event.update(_tokens(call.endpoint, reading, streamed, notes))
    if stream_end:
        notes[STREAM_TAG] = stream_end
    if meter is None and error:  # no answer at all: not a call the provider saw (anomalies skip it)
        notes[NO_ANSWER_TAG[0]] = NO_ANSWER_TAG[1]
    tier = conventions.service_tier(reading.tier)
    if tier is None:  # Anthropic reports its tier inside usage
        for usage in (reading.usage, reading.usage_start):
            if isinstance(usage, Mapping) and (tier := conventions.service_tier(usage.get("service_tier"))):
                break
    if tier:
        event["service_tier"] = tier
    if reading.request_id:
        event["request_id"] = reading.request_id
    tags = dict(attribution.tags)
    if NO_ANSWER_TAG[0] in notes:  # must survive a caller's full set of tags: anomalies rely on it
        tags = dict([NO_ANSWER_TAG, *list(tags.items())[:MAX_TAGS - 1]])
    for key, value in notes.items():  # notes fill the room the user's tags leave
        if len(tags) < MAX_TAGS:
            tags[key] = value
    if tags:
        event["tags"] = tags
    return event


def _event_id(provider: str, request_id: str | None) -> str:
    """An Anthropic message keeps its own id (`anthropic:<msg_…>`), as Claude Code's transcripts
    and OTLP records of it do (`agents.claude`): a session sent through the proxy *and* read from
    its log files is then one call, not two. Other calls get a fresh id (their response ids are
    not what the other paths key by)."""
    if provider == "anthropic" and request_id and request_id.startswith("msg_"):
        return f"anthropic:{request_id}"[:128]
    return str(uuid.uuid4())


def _tokens(endpoint: Endpoint, reading: Reading, streamed: bool, notes: dict[str, str]) -> dict[str, Any]:
    usage, start = reading.usage, reading.usage_start
    if endpoint.split_usage and isinstance(start, Mapping):
        if isinstance(usage, Mapping):
            usage = {**start, **{k: v for k, v in usage.items() if v is not None}}
        else:  # the stream ended before message_delta: input is known, output is not
            usage = {**start, "output_tokens": 0}
            notes[USAGE_TAG] = "partial"
    if usage is None:
        notes.setdefault(USAGE_TAG, "missing")
        return {}
    if not isinstance(usage, Mapping):
        notes[USAGE_TAG] = "malformed"
        return {}
    try:
        out: dict[str, Any] = {k: v for k, v in endpoint.tokens(usage).items() if v}
    except conventions.UsageFormatError as exc:
        notes[USAGE_TAG] = "malformed"
        notes["llmtray.usage_error"] = str(exc)[:200]
        return {}
    cost = usage.get("cost")  # OpenRouter reports what it charged
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
        out["cost_usd"] = cost
    return out
