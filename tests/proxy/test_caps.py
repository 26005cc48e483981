"""Hard caps: an exhausted budget with `enforce = true` whose scope matches answers 429 in the
provider's own error shape, names the budget, its limit and spend, and forwards nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from llmtray.core.budgets import Budget, BudgetBook, Scope, parse_limit
from llmtray.core.db import open_db
from tests.proxy.conftest import wait_events

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def committed(service) -> threading.Event:
    """Set after a commit's listeners ran — the proxy's, registered first, has invalidated its check."""
    event = threading.Event()
    service.add_listener(lambda notice: event.set())
    return event


@pytest.fixture
def budgets(service) -> Iterator[BudgetBook]:
    db = open_db(service.paths.db)
    yield BudgetBook(db)
    db.close()


def test_exhausted_budget_refuses_matching_calls_only(service, stub, budgets, committed):
    budgets.add(Budget("openai-daily", parse_limit("0.0001"), "day", Scope(provider="openai"), enforce=True))
    with openai.OpenAI(base_url=f"{service.url}/proxy/openai/v1", api_key="sk-x") as client:  # SDK retries on
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # under the limit: goes through
        assert committed.wait(10)
        [first] = wait_events(service, 1)
        assert first["cost_nanos"] > parse_limit("0.0001")
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(stub.received) == 1  # the refused call was not forwarded
    error = caught.value.body  # the SDK hands over the `error` object of {"error": {...}}
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exhausted"
    spent = first["cost_usd"]
    assert error["message"].startswith(f"llmtray budget 'openai-daily' is exhausted: ${spent} spent of its "
                                       "$0.0001 limit today (provider openai)")
    assert caught.value.response.headers["x-should-retry"] == "false"  # so the SDK did not retry a cap

    with anthropic.Anthropic(base_url=f"{service.url}/proxy/anthropic", api_key="sk-ant", max_retries=0) as client:
        client.messages.create(model="claude-sonnet-4-0", max_tokens=5, messages=MESSAGES)  # other scope: fine
    assert len(stub.received) == 2
    r = httpx.get(f"{service.url}/proxy/openai/v1/models")  # only recorded calls are capped
    assert r.status_code == 200


def test_a_budget_added_or_removed_while_running_applies_at_once(service, stub, budgets, committed):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert httpx.post(f"{service.url}/proxy/openai/v1/chat/completions", json=body).status_code == 200
    assert committed.wait(10)
    budgets.add(Budget("late", parse_limit("0.00001"), "day", Scope(provider="openai"), enforce=True))
    r = httpx.post(f"{service.url}/proxy/openai/v1/chat/completions", json=body)
    assert r.status_code == 429 and "'late' is exhausted" in r.json()["error"]["message"]
    budgets.remove("late")
    assert httpx.post(f"{service.url}/proxy/openai/v1/chat/completions", json=body).status_code == 200


def test_scope_by_attribution_and_the_anthropic_shape(service, stub, budgets, committed):
    budgets.add(Budget("triage", parse_limit("0.001"), "month", Scope(feature="triage", tags=(("team", "ops"),)),
                       enforce=True))
    attributed = {"X-LLMTray-Feature": "triage", "X-LLMTray-Tags": "team=ops"}
    with anthropic.Anthropic(base_url=f"{service.url}/proxy/anthropic", api_key="sk-ant", max_retries=0,
                             default_headers=attributed) as client:
        client.messages.create(model="claude-sonnet-4-0", max_tokens=5, messages=MESSAGES)
        assert committed.wait(10)
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="claude-sonnet-4-0", max_tokens=5, messages=MESSAGES)
        assert caught.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": (
            caught.value.body["error"]["message"])}}
        assert "llmtray budget 'triage' is exhausted" in caught.value.body["error"]["message"]
        assert "$0.001 limit this month (feature triage, tag team=ops)" in caught.value.body["error"]["message"]
        client.messages.create(model="claude-sonnet-4-0", max_tokens=5, messages=MESSAGES,
                               extra_headers={"X-LLMTray-Tags": "team=web"})  # another team: allowed
    assert len(stub.received) == 2


def test_gemini_shape(service, stub, budgets, committed):
    budgets.add(Budget("gemini", parse_limit("1"), "week", Scope(provider="google", model="gemini-2.5-flash"),
                       enforce=True))
    r = httpx.post(f"{service.url}/v1/events", headers={"Authorization": f"Bearer {service.token}"},
                   json={"provider": "google", "model": "gemini-2.5-flash", "cost_usd": "1.25"})
    assert r.status_code == 200 and committed.wait(10)
    r = httpx.post(f"{service.url}/proxy/google/v1beta/models/gemini-2.5-flash:generateContent",
                   json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert "'gemini' is exhausted: $1.25 spent of its $1 limit this week" in error["message"]
    r = httpx.post(f"{service.url}/proxy/google/v1beta/models/gemini-2.0-flash:generateContent",
                   json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 200  # another model: not in the budget's scope
    assert [x.target for x in stub.received] == ["/v1beta/models/gemini-2.0-flash:generateContent"]
