"""The usage event (DESIGN §3): one field table drives parsing, validation, export and the docs.

Every way into llmtray (HTTP API, hooks, proxy, importers) turns its input into a JSON-able dict
and calls `parse_event`, so one implementation decides what a valid event is. Validation never
stops at the first problem: the caller gets every error with its field, so a client can fix a
batch in one round trip.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from llmtray.core.errors import EventValidationError, FieldError

OPERATIONS = ("chat", "responses", "embeddings", "completion", "image", "audio", "other")
SERVICE_TIERS = ("default", "batch", "flex", "priority")
STATUSES = ("ok", "error")
SOURCES_FIXED = ("hook", "proxy", "otel", "api")  # plus "import:<format>"
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
ATTRIBUTION_FIELDS = ("feature", "user", "project", "env")
# Far above any real call or daily import line (the largest contexts are ~10^7 tokens), and low
# enough that one event's tokens × any price and a bucket's rollup sums stay inside SQLite's
# int64: 10^15 input tokens at $10/M is 10^16 nano-dollars, and 882 of those overflowed a sum.
MAX_TOKENS = 10**12
MAX_COST_USD = Decimal(10**7)
MAX_DURATION_MS = 1e12  # ~30 years: anything larger is a unit mistake
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 32, 64, 200
BLOCKED_TAG = "llmtray.blocked"  # on a call a block refused (value: the block's id), `core.blocks`
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
# `2026-01-02T10:00:00.123Z`: what hooks, the proxy and most exporters write. `fromisoformat`
# takes it as it is (UTC, at most microseconds), so the general path's normalising is skipped.
_RFC3339_UTC_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z")


@dataclass(slots=True)
class UsageEvent:
    """A validated, normalised usage event. `ts` is timezone-aware UTC; money is a Decimal here
    and becomes integer nano-dollars in the store.

    Treat it as immutable (`with_id` returns a copy). It is not `frozen` because a frozen
    dataclass sets each of its 26 fields through `object.__setattr__`: that alone was a third of
    validating an event on the ingest hot path."""

    provider: str
    model: str
    ts: datetime
    id: str | None = None
    operation: str = "chat"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 1
    cost_usd: Decimal | None = None
    service_tier: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: str = "ok"
    error: str | None = None
    stream: bool | None = None
    feature: str | None = None
    user: str | None = None
    project: str | None = None
    env: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON the API accepts: defaults left out, money as a decimal string."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == f.default or (f.name == "tags" and not value):
                continue
            if f.name == "ts":
                value = format_ts(value)
            elif f.name == "cost_usd":
                value = format(value, "f")
            elif f.name == "tags":
                value = dict(value)
            out[f.name] = value
        return out

    def with_id(self, event_id: str) -> UsageEvent:
        return replace(self, id=event_id)


EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageEvent))


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, microseconds only when present."""
    text = ts.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


# --- field parsers: each returns the clean value or raises _Bad(message) -------------------


class _Bad(Exception):
    pass


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_unicode(value: str, what: str) -> None:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no database or file can store
    as UTF-8: refuse them here, by field, instead of failing later in the writer."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Bad(f"{what}must be valid Unicode: lone surrogate {value[exc.start]!r} at position {exc.start}") from None


def _string(max_len: int, *, allow_empty: bool = False) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if not isinstance(value, str):
            raise _Bad(f"must be a string, got {_type_name(value)}")
        if "\x00" in value:
            raise _Bad("must not contain NUL characters")
        if not value.isascii():
            _check_unicode(value, "")
        if len(value) > max_len:
            raise _Bad(f"must be at most {max_len} characters, got {len(value)}")
        if not value.strip():
            if allow_empty:
                return None
            raise _Bad("must not be empty")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"must be a string, got {_type_name(value)}")
        if value not in options:
            raise _Bad(f"must be one of {', '.join(options)}; got {value[:40]!r}")
        return value

    return parse


def _int(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"must be an integer, got {_type_name(value)}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _Bad("must be a finite integer")
            if not value.is_integer():
                raise _Bad(f"must be an integer, got {value!r}")
            value = int(value)
        if value < minimum:
            raise _Bad(f"must be ≥ {minimum}, got {value}")
        if value > MAX_TOKENS:
            raise _Bad(f"must be ≤ {MAX_TOKENS}, got {value}")
        return value

    return parse


def _float_nonneg(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"must be a number, got {_type_name(value)}")
    if isinstance(value, int) and value > MAX_DURATION_MS:  # 10**400 would overflow float()
        raise _Bad(f"must be ≤ {MAX_DURATION_MS:.0e} ms")
    if not math.isfinite(value):
        raise _Bad("must be a finite number")
    if value < 0:
        raise _Bad(f"must be ≥ 0, got {value}")
    if value > MAX_DURATION_MS:
        raise _Bad(f"must be ≤ {MAX_DURATION_MS:.0e} ms")
    return float(value)


def _cost(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(f"must be a decimal string or a number, got {_type_name(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("must be a finite amount")
        value = repr(value)  # the shortest text that round-trips: 0.1 stays 0.1
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(f"is not a decimal amount: {str(value)[:40]!r}") from None
    if not d.is_finite():
        raise _Bad("must be a finite amount")
    if d < 0:
        raise _Bad(f"must be ≥ 0, got {value}")
    if d > MAX_COST_USD:
        raise _Bad(f"must be ≤ {MAX_COST_USD} USD, got {value}")
    return d


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {_type_name(value)}")
    return value


def _provider(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, got {_type_name(value)}")
    clean = value.strip().lower()
    if not _PROVIDER_RE.match(clean):
        raise _Bad(
            "must be a provider id like 'openai' or 'anthropic' "
            f"(lowercase letters, digits, '.', '_' or '-', at most 64); got {value[:40]!r}"
        )
    return clean


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Bad(f"must be an object of string values, got {_type_name(value)}")
    if len(value) > MAX_TAGS:
        raise _Bad(f"must have at most {MAX_TAGS} entries, got {len(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip() or len(k) > MAX_TAG_KEY or "\x00" in k:
            raise _Bad(f"key {str(k)[:40]!r} must be a non-empty string of at most {MAX_TAG_KEY} characters")
        if not isinstance(v, str):
            raise _Bad(f"value of {k!r} must be a string, got {_type_name(v)}")
        if len(v) > MAX_TAG_VALUE or "\x00" in v:
            raise _Bad(f"value of {k!r} must be at most {MAX_TAG_VALUE} characters without NUL")
        _check_unicode(k, "key ")
        _check_unicode(v, f"value of key {k.encode('utf-8', 'backslashreplace').decode()!r} ")
        out[k] = v
    return out


def parse_ts(value: Any, now: datetime) -> datetime:
    """RFC 3339 with an offset, or Unix seconds; at most 5 minutes ahead of `now`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(f"must be an RFC 3339 string or Unix seconds, got {_type_name(value)}")
    if isinstance(value, str):
        if _RFC3339_UTC_RE.fullmatch(value):  # the usual shape: no normalising needed
            try:
                ts = datetime.fromisoformat(value)
            except ValueError:
                pass  # e.g. February 30th: the general path below words the error
            else:
                if ts > now + FUTURE_TOLERANCE:
                    raise _Bad(f"{format_ts(ts)} is more than 5 minutes in the future (now {format_ts(now)})")
                return ts
        text = value.strip()
        m = _RFC3339_RE.match(text)
        if not m:
            if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", text):
                raise _Bad(f"needs a UTC offset such as 'Z' or '+02:00': {text[:40]!r}")
            raise _Bad(f"is not an RFC 3339 timestamp: {text[:40]!r}")
        frac = m.group(1)  # ".123…", found by the match itself (no second regex pass: hot path)
        if frac is not None and len(frac) > 7:  # Python parses at most microseconds
            text = text[:m.start(1)] + frac[:7] + text[m.end(1):]
        try:
            ts = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T").replace(" ", "T"))
        except ValueError as exc:
            raise _Bad(f"is not a valid date/time: {exc}") from None
    else:
        # compare before math.isfinite: an int like 10**400 would overflow converting to float
        if (isinstance(value, int) and value > 10**11) or (isinstance(value, float) and value > 1e11):
            shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:20] + "…"
            raise _Bad(f"{shown} is in the far future; Unix seconds expected (milliseconds?)")
        if not math.isfinite(value):
            raise _Bad("must be a finite number of Unix seconds")
        if value < 0:
            raise _Bad(f"must be ≥ 0 Unix seconds, got {value!r}")
        ts = datetime.fromtimestamp(value, UTC)
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise _Bad(f"{str(value)[:40]} is outside the supported date range") from None
    if ts > now + FUTURE_TOLERANCE:
        raise _Bad(f"{format_ts(ts)} is more than 5 minutes in the future (now {format_ts(now)})")
    return ts


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": _string(128),
    "provider": _provider,
    "model": _string(200),
    "operation": _choice(OPERATIONS),
    **{name: _int(0) for name in TOKEN_FIELDS},
    "requests": _int(0),  # 0 only with cost_usd: a cost export's line item, money without calls
    "cost_usd": _cost,
    "service_tier": _choice(SERVICE_TIERS),
    "latency_ms": _float_nonneg,
    "ttft_ms": _float_nonneg,
    "status": _choice(STATUSES),
    "error": _string(500),
    "stream": _bool,
    **{name: _string(200, allow_empty=True) for name in ATTRIBUTION_FIELDS},
    "tags": _tags,
    "request_id": _string(200),
}


def _closest(name: str) -> str:
    match = difflib.get_close_matches(name, EVENT_FIELDS, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def event_errors(data: Any, *, now: datetime, index: int | None = None) -> tuple[UsageEvent | None, list[FieldError]]:
    """Validate one JSON-able event; returns (event, []) or (None, every error found).

    This runs for every event that enters llmtray, so the common case is kept cheap: plain
    in-range token counts are taken without a parser call, and the cross-field rules only run
    when a field they compare is present."""
    if not isinstance(data, dict):
        return None, [FieldError("", f"an event must be a JSON object, got {_type_name(data)}", index)]
    errors: list[FieldError] = []
    clean: dict[str, Any] = {}
    parsers, plain_counts = _PARSERS, _PLAIN_COUNTS
    for key, value in data.items():
        if key in plain_counts and type(value) is int and 0 <= value <= MAX_TOKENS:
            clean[key] = value
            continue
        parser = parsers.get(key) if isinstance(key, str) else None
        if parser is None and key != "ts":
            errors.append(FieldError(str(key), f"unknown field{_closest(str(key))}", index))
            continue
        if value is None:
            continue  # null means "not given" for every optional field
        try:
            clean[key] = parse_ts(value, now) if parser is None else parser(value)
        except _Bad as bad:
            errors.append(FieldError(key, str(bad), index))
    if "provider" not in clean or "model" not in clean:
        for required in ("provider", "model"):
            if data.get(required) is None:
                errors.append(FieldError(required, "is required", index))
    if not _SUBSET_FIELDS.isdisjoint(clean):
        _check_subsets(clean, errors, index)
    if clean.get("requests") == 0 and "cost_usd" not in clean:
        errors.append(FieldError("requests", "must be ≥ 1, got 0 (0 is only for a cost line item with cost_usd)",
                                 index))
    if "error" in clean:
        if clean.get("status", "error") == "ok":
            errors.append(FieldError("error", "is only allowed with status 'error'", index))
        else:
            clean["status"] = "error"
    if errors:
        return None, errors
    if "ts" not in clean:
        clean["ts"] = now.astimezone(UTC)
    return UsageEvent(**clean), []


# Token counts that need no parser when they are plain ints in range (the usual case).
_PLAIN_COUNTS = frozenset(TOKEN_FIELDS)
# Fields that the subset rules compare; input_tokens alone can't break a rule.
_SUBSET_FIELDS = frozenset(("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens"))


def _check_subsets(clean: dict[str, Any], errors: list[FieldError], index: int | None) -> None:
    """The subset rules of DESIGN §3: caches within input, 1h writes within writes, reasoning within output."""
    inp = clean.get("input_tokens", 0)
    cache = clean.get("cache_read_tokens", 0) + clean.get("cache_write_tokens", 0)
    if cache > inp:
        errors.append(FieldError(
            "input_tokens",
            f"must include cache tokens: cache_read_tokens + cache_write_tokens = {cache} > input_tokens = {inp}",
            index,
        ))
    if clean.get("cache_write_1h_tokens", 0) > clean.get("cache_write_tokens", 0):
        errors.append(FieldError(
            "cache_write_1h_tokens",
            f"must be ≤ cache_write_tokens ({clean.get('cache_write_tokens', 0)})",
            index,
        ))
    if clean.get("reasoning_tokens", 0) > clean.get("output_tokens", 0):
        errors.append(FieldError(
            "reasoning_tokens", f"must be ≤ output_tokens ({clean.get('output_tokens', 0)})", index
        ))


def parse_event(data: Any, *, now: datetime | None = None) -> UsageEvent:
    """Validate one event or raise `EventValidationError` listing every problem."""
    event, errors = event_errors(data, now=now or datetime.now(UTC))
    if errors:
        raise EventValidationError(errors)
    assert event is not None
    return event


def parse_batch(items: list[Any], *, now: datetime | None = None) -> list[UsageEvent]:
    """Validate a batch atomically: all events, or an error naming each bad index and field."""
    now = now or datetime.now(UTC)
    events: list[UsageEvent] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        event, errs = event_errors(item, now=now, index=i)
        if errs:
            errors.extend(errs)
        elif event is not None:
            events.append(event)
    if errors:
        raise EventValidationError(errors)
    return events
