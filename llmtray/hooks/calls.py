"""One recorded call: what the caller's thread captures (cheap references and clock readings) and how
the sender's thread turns it into a usage event (token conversion, ids, timestamps, validation).

The split is what keeps the hook in microseconds: the caller only reads a few attributes of the
SDK's response object; `to_event` — dumping the usage model, applying the provider's token
convention through `llmtray.core.usage`, minting the uuid — runs off the caller's thread.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llmtray.core import usage as conventions
from llmtray.core.events import BLOCKED_TAG, MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, format_ts
from llmtray.hooks import sender
from llmtray.hooks.context import EMPTY, Attribution

log = logging.getLogger("llmtray.hooks")

USAGE_TAG = conventions.USAGE_TAG  # missing | partial | malformed | unreadable: the tokens are not the whole truth
STREAM_TAG = "llmtray.stream"  # "abandoned" | "interrupted"
MAX_TEXT = 200


@dataclass(frozen=True)
class Api:
    """One provider endpoint an instrumented resource calls: how to read its usage and stream."""

    operation: str
    tokens: Callable[[Mapping[str, Any] | None], dict[str, int]]
    observe: Callable[[Call, Any], None] | None = None  # per stream chunk / event
    split_stream_usage: bool = False  # Anthropic: input in message_start, output in message_delta


@dataclass
class HookConfig:
    """Per-client settings, shared with the client's copies (`with_options`), updated in place
    when the client is instrumented again."""

    provider: str
    defaults: Attribution
    enforce: bool


def plain(obj: Any) -> Any:
    """A JSON-like copy of an SDK (pydantic) usage object or of parsed JSON. The SDK serializer
    is used without its warnings (a provider may send odd values); if it chokes, the fields are
    copied by hand."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        try:
            return dump(warnings=False)
        except Exception:
            pass
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    fields = getattr(obj, "__dict__", None)
    if isinstance(fields, dict):
        out = {k: plain(v) for k, v in fields.items() if not k.startswith("_")}
        extra = getattr(obj, "__pydantic_extra__", None)
        if isinstance(extra, dict):
            out.update({str(k): plain(v) for k, v in extra.items()})
        return out
    return obj


def field(obj: Any, name: str) -> Any:
    """A field of an SDK (pydantic) object or a parsed-JSON namespace, None when absent. Reads the
    instance dict: `getattr` with a default costs microseconds on pydantic models for a name the
    type doesn't declare (an embeddings response has no `id`, a text delta no `response`)."""
    try:
        return obj.__dict__.get(name)
    except AttributeError:
        return getattr(obj, name, None)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value[:MAX_TEXT]
    return None


def _clean_tags(tags: Mapping[str, str], notes: Mapping[str, str]) -> dict[str, str]:
    """User tags cut to the event limits (notes always fit), so attribution can't cost an event."""
    out: dict[str, str] = {}
    room = MAX_TAGS - len(notes)
    for k, v in tags.items():
        if len(out) >= room:
            break
        key = k[:MAX_TAG_KEY]
        if key.strip():
            out[key] = v[:MAX_TAG_VALUE].replace("\x00", "")
    out.update(notes)
    return out


class Call:
    """A call in flight or finished; queued as is and built into an event by the sender."""

    __slots__ = ("api", "config", "context", "wall", "t0", "latency_ms", "ttft_ms", "stream",
                 "requested_model", "response", "model", "request_id", "usage", "usage_start", "tier",
                 "error", "notes", "_once", "__weakref__")

    def __init__(self, api: Api, config: HookConfig, context: Attribution, requested_model: Any, stream: bool):
        self.api = api
        self.config = config
        self.context = context
        self.requested_model = requested_model
        self.stream = stream
        self.wall = time.time()
        self.t0 = time.perf_counter()
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None
        self.response: Any = None
        self.model: Any = None
        self.request_id: Any = None
        self.usage: Any = None
        self.usage_start: Any = None
        self.tier: Any = None
        self.error: str | None = None
        self.notes: dict[str, str] | None = None
        self._once = [True]

    def note(self, key: str, value: str) -> None:
        if self.notes is None:
            self.notes = {}
        self.notes[key] = value

    def took_response(self, result: Any) -> None:
        """Keep the complete response object; its fields are read on the sender's thread."""
        self.response = result

    def _read_response(self) -> None:
        result, self.response = self.response, None
        self.model = field(result, "model")
        self.request_id = field(result, "id")
        self.usage = field(result, "usage")
        self.tier = field(result, "service_tier")

    def failed(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        self.error = f"{type(exc).__name__}: {message}"[:500]
        if self.request_id is None:
            self.request_id = getattr(exc, "request_id", None)

    def finish(self, stream_end: str | None = None, exc: BaseException | None = None) -> None:
        """Stop the clock and queue the call — once, whichever of end, close, error or garbage
        collection gets here first (`list.pop` is atomic, a flag test-and-set would not be).
        `stream_end` ("abandoned", "interrupted") and `exc` only apply to the first caller."""
        try:
            self._once.pop()
        except IndexError:
            return
        self.latency_ms = (time.perf_counter() - self.t0) * 1000.0
        if stream_end is not None:
            self.note(STREAM_TAG, stream_end)
        if exc is not None:
            self.failed(exc)
        if self.stream:
            _open_streams.pop(id(self), None)
        sender.submit(self)

    # --- built on the sender's thread ------------------------------------------------------

    def to_event(self) -> dict[str, Any]:
        if self.response is not None:
            self._read_response()
        notes = dict(self.notes or {})
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "ts": format_ts(datetime.fromtimestamp(self.wall, UTC)),
            "provider": self.config.provider,
            "model": _text(self.model) or _text(self.requested_model) or "unknown",
            "operation": self.api.operation,
            "stream": self.stream,
        }
        if self.error is not None:
            event["status"] = "error"
            event["error"] = self.error
        if self.error is None or self.ttft_ms is not None:  # a stream cut off mid-way used what it reported
            event.update(self._tokens(notes))
        if BLOCKED_TAG in notes:  # refused before it was sent: it cost nothing, known model or not
            event["cost_usd"] = "0"
        tier = conventions.service_tier(self.tier)
        if tier is None:  # Anthropic reports the tier inside usage (message_start's, for streams)
            tier = conventions.service_tier(field(self.usage, "service_tier")) or \
                conventions.service_tier(field(self.usage_start, "service_tier"))
        if tier:
            event["service_tier"] = tier
        if self.latency_ms is not None:
            event["latency_ms"] = round(self.latency_ms, 3)
        if self.ttft_ms is not None:
            event["ttft_ms"] = round(self.ttft_ms, 3)
        request_id = _text(self.request_id)
        if request_id:
            event["request_id"] = request_id
        attribution = self.config.defaults.merged(self.context) if self.context is not EMPTY else self.config.defaults
        for name in ("feature", "user", "project", "env"):
            value = _text(getattr(attribution, name))
            if value:
                event[name] = value
        tags = _clean_tags(attribution.tags, notes)
        if tags:
            event["tags"] = tags
        return event

    def _tokens(self, notes: dict[str, str]) -> dict[str, Any]:
        """Token fields (DESIGN §3 convention) and a reported cost, or notes saying what's missing."""
        usage = plain(self.usage)
        if self.api.split_stream_usage and self.stream:
            start = plain(self.usage_start)
            if isinstance(start, dict) and isinstance(usage, dict):
                usage = {**start, **{k: v for k, v in usage.items() if v is not None}}
            elif isinstance(start, dict):
                usage = {**start, "output_tokens": 0}  # message_start's output count is a placeholder
                notes[USAGE_TAG] = "partial"
        if usage is None:
            notes.setdefault(USAGE_TAG, "missing")
            return {}
        if not isinstance(usage, Mapping):
            notes[USAGE_TAG] = "malformed"
            notes["llmtray.usage_error"] = f"usage is {type(usage).__name__}, not an object"[:MAX_TAG_VALUE]
            return {}
        try:
            out: dict[str, Any] = {k: v for k, v in self.api.tokens(usage).items() if v}
        except conventions.UsageFormatError as exc:
            notes[USAGE_TAG] = "malformed"
            notes["llmtray.usage_error"] = str(exc)[:MAX_TAG_VALUE]
            return {}
        cost = usage.get("cost")  # OpenRouter (and other gateways) report what they charged
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and 0 <= cost < float("inf"):
            out["cost_usd"] = cost
        elif cost is not None:
            notes["llmtray.cost"] = "malformed"
        return out


# Streams not finished yet, finished at exit as abandoned (the call holds no reference to its
# stream, so this keeps nothing alive that the user dropped).
_open_streams: dict[int, Call] = {}


def track_open(call: Call) -> None:
    _open_streams[id(call)] = call


def _finish_open_streams() -> None:
    for call in list(_open_streams.values()):
        call.finish("abandoned")


sender.add_exit_hook(_finish_open_streams)
