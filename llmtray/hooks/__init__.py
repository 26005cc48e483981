"""SDK hooks: record what your application's LLM calls cost, safe to leave on in production.

    import llmtray.hooks as lt
    client = lt.instrument(openai.OpenAI())
    with lt.tags(feature="summarize", user="u42"):
        client.chat.completions.create(...)

The hooks never raise into your call (except `BudgetExceeded`, or its subclass `Blocked` when a
llmtray block covers the call, when you ask for enforcement),
never block it on I/O, and lose nothing when the tray isn't running: events wait in a spool file
and are delivered once it is back. This package imports no Qt, no Peewee and no provider SDK.
"""

from __future__ import annotations

from typing import Any

from llmtray.hooks import sender as _sender
from llmtray.hooks.context import propagate, tags
from llmtray.hooks.enforce import Blocked, BudgetExceeded
from llmtray.hooks.generic import record
from llmtray.hooks.instrument import instrument
from llmtray.hooks.wire import httpx_hooks

__all__ = [
    "Blocked",
    "BudgetExceeded",
    "flush",
    "httpx_hooks",
    "instrument",
    "propagate",
    "record",
    "stats",
    "tags",
]


def flush(timeout: float = 5.0) -> bool:
    """Deliver queued and spooled events now (short scripts, serverless handlers, tests).
    True when everything was delivered; False when the tray didn't answer — the events stay
    spooled for later. Normal programs needn't call it: exit flushes for up to two seconds."""
    return _sender.get().flush(timeout)


def stats() -> dict[str, Any]:
    """Counters of this process's sender: queued, sent, duplicates, spooled, pending_in_spool,
    dead_lettered, dropped (oldest events dropped past the spool bound), failed_attempts,
    last_error. All zero before the first event (asking starts nothing)."""
    return _sender.current_stats()
