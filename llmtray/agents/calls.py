"""What every agent's parser hands the scanner: one call as an event, or why a line was skipped.

Parsers build the event as DESIGN §3 JSON (so it goes through the same validation as every other
event) with a deterministic `id`; the scanner merges copies of one id, prices and stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Token fields whose per-field maximum is kept when one call is logged several times (streaming
# snapshots, resume copies): the largest copy is the finished one; summing copies over-counts.
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "cache_write_1h_tokens", "reasoning_tokens")
_PROVIDER_CHARS = re.compile(r"[^a-z0-9._-]+")


class Skip(Exception):
    """A line that should carry usage but can't be read; the message is the reason shown to the user."""


@dataclass
class Call:
    """One call found in a log: its event (JSON, `id` set) and where it was read, for error messages."""

    event: dict[str, Any]
    path: str
    line: int
    # Other ids the same call may have been stored under by another path (the proxy or OTLP
    # keying Claude's call by its `requestId` rather than its message id): found there, it is
    # a duplicate.
    aliases: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.event["id"]


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Two copies of one call: the copy with the larger total (the finished one: its time,
    model and tags) with each token count at its largest, so a partial snapshot or a resume
    copy never wins over the finished call and copies never add up."""
    return raise_counts(new if sum(tokens_of(new)) >= sum(tokens_of(old)) else old, old, new)


def raise_counts(base: dict[str, Any], *copies: dict[str, Any]) -> dict[str, Any]:
    """`base` with each token count at its largest over `copies` (input kept ≥ its cache parts)."""
    merged = dict(base)
    for key in TOKEN_KEYS:
        top = max(c.get(key, 0) for c in copies)
        if top:
            merged[key] = top
    merged["input_tokens"] = max(merged.get("input_tokens", 0),
                                 merged.get("cache_read_tokens", 0) + merged.get("cache_write_tokens", 0))
    return merged


def usage_event(event_id: str, ts: Any, provider: str, model: str, *, input_tokens: int, output_tokens: int,
                cache_read: int = 0, cache_write: int = 0, cache_write_1h: int = 0, reasoning: int = 0,
                project: str | None = None, tags: dict[str, str], **more: Any) -> dict[str, Any]:
    """One call as event JSON (DESIGN §3: `input_tokens` includes the cache parts, `output_tokens`
    the reasoning), zero and empty fields left out; `more`: other event fields (service_tier, …)."""
    event: dict[str, Any] = {"id": event_id[:128], "ts": ts, "provider": provider, "model": model,
                             "input_tokens": input_tokens, "output_tokens": output_tokens}
    for key, value in (("cache_read_tokens", cache_read), ("cache_write_tokens", cache_write),
                       ("cache_write_1h_tokens", cache_write_1h), ("reasoning_tokens", reasoning),
                       ("project", project), *more.items()):
        if value:
            event[key] = value
    event["tags"] = tags
    return event


def tokens_of(event: dict[str, Any]) -> tuple[int, ...]:
    return tuple(event.get(key, 0) for key in TOKEN_KEYS)


def counts(obj: dict[str, Any], where: str, *names: str) -> tuple[int, ...]:
    """Token counts of one usage object: non-negative integers (absent or null is 0), else `Skip`
    naming the field (`where.name`). Runs for every usage line: the common case costs no call."""
    values = tuple(obj.get(name) or 0 for name in names)
    for name, value in zip(names, values):
        if type(value) is not int or value < 0:
            raise Skip(f"{where}.{name} is not a token count ({str(value)[:40]!r})")
    return values


def text(value: Any) -> str | None:
    """A non-empty string field, or None."""
    return value if isinstance(value, str) and value.strip() else None


def project_of(cwd: Any) -> str | None:
    """The last component of a working directory, POSIX or Windows (DESIGN §11: `project`)."""
    return _last_part(cwd) if isinstance(cwd, str) else None


@lru_cache(maxsize=4096)  # one session repeats its cwd on every line
def _last_part(cwd: str) -> str | None:
    parts = [p for p in re.split(r"[\\/]", cwd) if p]
    return parts[-1][:200] if parts else None


def provider_id(value: Any, default: str) -> str:
    """An agent's provider name as an llmtray provider id (lowercase, no odd characters)."""
    name = text(value)
    if name is None:
        return default
    clean = _PROVIDER_CHARS.sub("-", name.strip().lower()).strip("-")[:64]
    return clean or default
