"""`instrument(..., enforce=True)`: an exhausted enforced budget stops the call before it is sent;
answers are cached; without a tray (or without the endpoint) calls go ahead with one warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

import llmtray.hooks as lt
from llmtray.hooks import enforce as lt_enforce
from llmtray import paths
from llmtray.core.budgets import Budget, BudgetBook, Scope
from llmtray.core.db import open_db
from llmtray.core.money import usd_to_nanos
from llmtray.ingest.service import IngestService
from tests.hooks.conftest import delivered, start_tray
from tests.hooks.helpers import one

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def enforcing_tray(hook_env: Path) -> Iterator[tuple[IngestService, list[str]]]:
    """The real ingest service (its `/v1/enforce` answers are recorded as they go), a $1/day budget
    on feature "summarize" that is enforced, and $1.20 already spent on it."""
    seen: list[str] = []
    service = start_tray(hook_env)
    answer = service.server.api.enforce

    def recorded(query: str):  # the real endpoint, observed: which questions reached the server
        seen.append(query)
        return answer(query)

    service.server.api.enforce = recorded
    db = open_db(paths.resolve(hook_env).db)
    try:
        BudgetBook(db).add(Budget("summaries", usd_to_nanos("1"), "day", Scope(feature="summarize"), enforce=True))
    finally:
        db.close()
    for _ in range(2):
        lt.record(provider="openai", model="gpt-4o-mini", cost_usd="0.60", feature="summarize")
    assert len(delivered(hook_env)) == 2
    yield service, seen
    service.stop()


def client(upstream, **kw) -> openai.OpenAI:
    return lt.instrument(openai.OpenAI(api_key="k", base_url=upstream.url + "/v1", max_retries=0), **kw)


def test_exhausted_budget_stops_the_call_before_it_is_sent(hook_env: Path, upstream, enforcing_tray):
    with client(upstream, enforce=True) as c:
        with lt.tags(feature="summarize"):
            with pytest.raises(lt.BudgetExceeded) as caught:
                c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert upstream.requests == []  # the provider never saw it
        with lt.tags(feature="search"):  # outside the budget's scope
            c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = caught.value
    assert (error.budget, error.limit_usd, error.spent_usd, error.period) == ("summaries", "1", "1.2", "day")
    assert "'summaries'" in str(error) and "$1.2 of $1" in str(error)
    assert len(upstream.requests) == 1
    assert one(delivered(hook_env), feature="search")["model"] == "gpt-4o-mini-2024-07-18"


def test_client_default_feature_is_enforced_too(hook_env: Path, upstream, enforcing_tray):
    with client(upstream, enforce=True, feature="summarize") as c:
        with pytest.raises(lt.BudgetExceeded):
            c.embeddings.create(model="text-embedding-3-small", input="x")


def test_async_client_is_stopped_too(hook_env: Path, upstream, enforcing_tray):
    async def main() -> None:
        async with lt.instrument(openai.AsyncOpenAI(api_key="k", base_url=upstream.url + "/v1", max_retries=0),
                                 enforce=True, feature="summarize") as c:
            with pytest.raises(lt.BudgetExceeded, match="summaries"):
                await c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    asyncio.run(main())
    assert upstream.requests == []


def test_answers_are_cached_for_a_few_seconds(hook_env: Path, upstream, enforcing_tray):
    _service, seen = enforcing_tray
    with client(upstream, enforce=True, feature="search") as c:
        for _ in range(5):
            c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        with lt.tags(user="u2"):  # other attribution: asked separately
            c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert len(seen) == 2
    assert "feature=search" in seen[0] and "model=gpt-4o-mini" in seen[0] and "provider=openai" in seen[0]
    assert "user=u2" in seen[1]


def test_without_enforce_nothing_is_asked(hook_env: Path, upstream, enforcing_tray):
    _service, seen = enforcing_tray
    with client(upstream, feature="summarize") as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert seen == []


def test_no_tray_fails_open_with_one_warning(hook_env: Path, upstream, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="llmtray.hooks"), client(upstream, enforce=True) as c:
        for i in range(3):
            with lt.tags(user=f"u{i}"):
                c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert len(upstream.requests) == 3
    warnings = [r for r in caplog.records if "enforcement unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "no llmtray is running" in warnings[0].getMessage()


def test_a_tray_without_the_endpoint_fails_open(hook_env: Path, upstream, caplog: pytest.LogCaptureFixture):
    """An older llmtray that has no /v1/enforce yet: calls go ahead."""
    tray = start_tray(hook_env)
    del tray.server._routes["/v1/enforce"]
    try:
        with caplog.at_level(logging.WARNING, logger="llmtray.hooks"), client(upstream, enforce=True) as c:
            c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert "HTTP 404" in caplog.text
        assert len(delivered(hook_env)) == 1
    finally:
        tray.stop()


def test_a_block_raises_blocked_counts_the_call_and_lifting_it_lets_calls_through(hook_env: Path, upstream, tray):
    import sqlite3
    import time

    from llmtray.core.blocks import BlockBook

    conn = sqlite3.connect(paths.resolve(hook_env).db, timeout=10)
    try:
        block = BlockBook(conn).add(Scope(feature="agent"), "looping agent")
        with client(upstream, enforce=True, feature="agent") as c:
            with pytest.raises(lt.Blocked) as caught:
                c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            assert isinstance(caught.value, lt.BudgetExceeded)  # code handling hard caps handles blocks
            assert (caught.value.block_id, caught.value.reason, caught.value.until) == (block.id, "looping agent", None)
            assert str(caught.value).startswith(f"blocked by llmtray block #{block.id} (feature agent): looping agent")
            assert upstream.requests == []
            refused = one(delivered(hook_env), feature="agent")
            assert refused["status"] == "error" and refused["cost_usd"] == "0"
            assert refused["tags"] == {"llmtray.blocked": str(block.id)}
            BlockBook(conn).lift(block.id)
            time.sleep(lt_enforce.CACHE_SECONDS)  # the hooks' answer cache: lifting applies within a second
            c.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert len(upstream.requests) == 1
    finally:
        conn.close()
