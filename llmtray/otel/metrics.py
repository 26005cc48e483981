"""Usage from OTLP metrics — only where no per-request record exists for it (OTEL.md §6 rule 7).

Metrics repeat what the per-request records say (Claude Code's `token.usage` counts the same calls
as its `api_request` logs), so they are a fallback, never added on top: a metric interval is
counted only when no per-request record of the same session is stored — from OTLP logs or spans,
or from the coding agents' own log files — and never for a service that sent per-request records
to this process. Someone who only enabled Claude Code's metrics exporter (what the Grafana guides
set up) still sees their spend.

Each interval of a series becomes one event (requests = the calls the interval covered where the
emitter says, else 1), with an id from the series and the interval, so an exporter's retry is
stored once. Cumulative series are turned into deltas per series (key: resource + scope + name +
point attributes + start time); a value that falls, or a new start time, is a reset. The first
point of a cumulative series that began before this receiver started is a baseline only: its
value includes usage from before, which can't be told apart from what was already counted.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from llmtray.otel.emitters import provider_id
from llmtray.otel.records import Record

DELTA, CUMULATIVE = 1, 2
CLAUDE_TOKENS, CLAUDE_COST = "claude_code.token.usage", "claude_code.cost.usage"
GEMINI_TOKENS = "gemini_cli.token.usage"
GENAI_TOKENS = "gen_ai.client.token.usage"
_MAX_SERIES = 50_000


@dataclass
class _Interval:
    """The usage of one (service, session, model) over one export interval."""

    profile: str
    service: str
    session: str | None
    model: str
    provider: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]
    tokens: dict[str, int] = field(default_factory=dict)
    cost: Decimal | None = None
    requests: int = 0


class MetricsFallback:
    """Turns metric data points into interval events, remembering cumulative series between exports."""

    def __init__(self, session_known: Callable[[str], bool], started_ns: int | None = None):
        self._session_known = session_known
        self._started_ns = time.time_ns() if started_ns is None else started_ns
        self._last: dict[tuple[Any, ...], tuple[int, float]] = {}  # series → (start, last value)
        self.services_with_requests: set[str] = set()

    def events(self, records: list[Record]) -> tuple[list[dict[str, Any]], list[str]]:
        """The fallback events in one metrics export, and a message per data point that is unusable."""
        intervals: dict[tuple[Any, ...], _Interval] = {}
        problems: list[str] = []
        for record in records:
            profile = _profile(record)
            if profile is None:
                continue
            service = str(record.resource.get("service.name", ""))
            if service in self.services_with_requests:
                continue
            value = self._delta(record)
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                problems.append(f"{record.where}: value {value!r} is not a usage amount")
                continue
            attrs = {**record.resource, **record.attrs}
            model = str(attrs.get("model") or attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
                        or "")
            if not model:
                problems.append(f"{record.where}: no model attribute")
                continue
            session = attrs.get("session.id")
            session = str(session) if session not in (None, "") else None
            provider = {"claude-code-metrics": "anthropic", "gemini-cli-metrics": "google"}.get(profile) or \
                provider_id(str(attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system") or ""), model)
            key = (profile, service, session, model, provider, record.start_ns, record.end_ns)
            interval = intervals.get(key)
            if interval is None:
                interval = intervals[key] = _Interval(profile, service, session, model, provider, record.start_ns,
                                                      record.end_ns, record.resource)
            _add(interval, record, value)
        sessions_known: dict[str, bool] = {}
        out = []
        for interval in intervals.values():
            if interval.session is not None:
                if interval.session not in sessions_known:
                    sessions_known[interval.session] = self._session_known(interval.session)
                if sessions_known[interval.session]:
                    continue  # the per-request records of this session are the truth
            event = _event(interval)
            if event is not None:
                out.append(event)
        return out, problems

    def _delta(self, record: Record) -> float | None:
        """The usage this point adds: as is for delta series, the rise since the last point for
        cumulative ones (None when there is nothing to add yet)."""
        value = float(record.extra.get("value") or 0)
        if record.extra.get("kind") == "gauge":
            return None  # a gauge is a reading, not usage
        if record.extra.get("temporality") != CUMULATIVE:
            return value
        key = (tuple(sorted((k, str(v)) for k, v in record.resource.items())), record.scope, record.name,
               tuple(sorted((k, str(v)) for k, v in record.attrs.items())))
        previous = self._last.get(key)
        if len(self._last) >= _MAX_SERIES and previous is None:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (record.start_ns, value)
        if previous is None:
            return value if record.start_ns >= self._started_ns else None
        start, last = previous
        if start != record.start_ns or value < last:
            return value  # the series was reset (a new process, a counter restart)
        return value - last or None


def _profile(record: Record) -> str | None:
    service = str(record.resource.get("service.name", "")).lower()
    if record.name == CLAUDE_TOKENS or record.name == CLAUDE_COST:
        return "claude-code-metrics"
    if record.name == GEMINI_TOKENS:
        return "gemini-cli-metrics"
    if record.name == GENAI_TOKENS and service != "gemini-cli":  # Gemini CLI's twin of its own metric
        return "genai-metrics"
    return None


def _add(interval: _Interval, record: Record, value: float) -> None:
    if record.name == CLAUDE_COST:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        interval.cost = (interval.cost or Decimal(0)) + amount
        return
    kind = str(record.attrs.get("type") or record.attrs.get("gen_ai.token.type") or "")
    interval.tokens[kind] = interval.tokens.get(kind, 0) + round(value)
    if record.name == GENAI_TOKENS and kind == "input":
        interval.requests += int(record.extra.get("count") or 0)


def _event(interval: _Interval) -> dict[str, Any] | None:
    t = interval.tokens
    if interval.profile == "claude-code-metrics":
        # Anthropic's convention: input excludes cache reads and writes.
        cache_read, cache_write = t.get("cacheRead", 0), t.get("cacheCreation", 0)
        tokens = {"input_tokens": t.get("input", 0) + cache_read + cache_write, "cache_read_tokens": cache_read,
                  "cache_write_tokens": cache_write, "output_tokens": t.get("output", 0)}
    elif interval.profile == "gemini-cli-metrics":
        thoughts = t.get("thought", 0)
        tokens = {"input_tokens": t.get("input", 0) + t.get("tool", 0), "cache_read_tokens": t.get("cache", 0),
                  "output_tokens": t.get("output", 0) + thoughts, "reasoning_tokens": thoughts}
    else:
        tokens = {"input_tokens": t.get("input", 0), "output_tokens": t.get("output", 0)}
    if not any(tokens.values()) and not interval.cost:
        return None
    parts = (interval.profile, interval.service, interval.session, interval.model, interval.start_ns, interval.end_ns)
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()
    event: dict[str, Any] = {
        "id": f"otel:{interval.profile}:{digest}", "provider": interval.provider, "model": interval.model[:200],
        "ts": datetime.fromtimestamp((interval.end_ns or time.time_ns()) // 1000 / 1e6, UTC).isoformat()
        .replace("+00:00", "Z"),
        "requests": max(1, interval.requests), **tokens,
        "tags": {"otel_profile": interval.profile},
    }
    if interval.cost is not None:
        event["cost_usd"] = str(interval.cost)
    if interval.service:
        event["project"] = interval.service[:200]
    if interval.session:
        event["tags"]["session"] = interval.session[:200]
    return event

