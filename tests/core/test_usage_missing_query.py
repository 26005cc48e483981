"""`Queries.usage_missing`: the calls unpriced for want of usage, found from their tag — and no
event read at all when no call carries it (the usual database; bench/team.py measured the
read at 450 ms on PostgreSQL at 1M events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmtray.core.events import parse_event
from llmtray.core.queries import Filters, Queries
from llmtray.core.store import Store
from llmtray.core.usage import USAGE_TAG

pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def call(i: int, model: str, **tags: str) -> object:
    return parse_event({"id": f"c{i}", "provider": "openai", "model": model, "ts": (NOW - timedelta(hours=i)).isoformat(),
                        "input_tokens": 10, "tags": {"plan": "pro", **tags}}, now=NOW)


def test_calls_without_usage_are_named_by_model_and_filtered(store: Store):
    store.add([call(0, "mystery-1", **{USAGE_TAG: "missing"}), call(1, "mystery-1", **{USAGE_TAG: "malformed"}),
               call(2, "mystery-3", **{USAGE_TAG: "unreadable"}), call(3, "mystery-2", **{USAGE_TAG: "partial"}),
               call(4, "mystery-2"), call(5, "gpt-4o-mini")], "api")
    q = Queries(store.conn)
    # "partial" is not a missing usage; a priced call never counts
    assert q.usage_missing() == [("openai", "mystery-1", 2), ("openai", "mystery-3", 1)]
    assert q.usage_missing(Filters(model=("mystery-3",))) == [("openai", "mystery-3", 1)]
    assert q.usage_missing(Filters(model=("gpt-4o-mini",))) == []


@pytest.mark.sqlite_only  # SQLite says which statements ran; the answer itself is checked on both above
def test_no_event_is_read_when_no_call_lacks_usage(store: Store):
    store.add([call(i, "mystery-1") for i in range(50)], "api")
    conn = store.conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        assert Queries(conn).usage_missing(Filters(tags=(("plan", "pro"),))) == []
    finally:
        conn.set_trace_callback(None)
    assert statements and not any("event" in s for s in statements)
