"""A model filter over the events themselves (the events page, guards, usage) picks the model and
its dated snapshots, nothing else — matched against the name dictionary first (bench/team.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmtray.core.events import parse_event
from llmtray.core.queries import Filters, Queries
from llmtray.core.store import Store

pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
MODELS = ("claude-sonnet-4", "claude-sonnet-4-20250514", "claude-sonnet-4-5", "claude-sonnet-4-2025-05-14",
          "Claude-Sonnet-4", "claude-sonnet-4x", "claude-haiku-4-5")


def test_an_alias_selects_its_snapshots_only_and_an_unknown_model_nothing(store: Store):
    store.add([parse_event({"id": f"m{i}", "provider": "anthropic", "model": m, "input_tokens": 10,
                            "ts": (NOW - timedelta(minutes=i)).isoformat()}, now=NOW) for i, m in enumerate(MODELS)], "api")
    q = Queries(store.conn)
    picked = {e["model"] for e in q.recent(50, f=Filters(model=("claude-sonnet-4",)))}
    assert picked == {"claude-sonnet-4", "claude-sonnet-4-20250514", "claude-sonnet-4-2025-05-14"}
    assert {e["model"] for e in q.recent(50, f=Filters(model=("claude-sonnet-4-5", "claude-haiku-4-5")))} == \
        {"claude-sonnet-4-5", "claude-haiku-4-5"}
    assert q.recent(50, f=Filters(model=("gpt-4o",))) == []
    assert len(q.recent(50)) == len(MODELS)  # nothing lost to the filter's lookups
