"""Blocks through the real proxy and a stub upstream (DESIGN §15): a block made by another
process (the CLI) refuses matching calls within a second in the provider's error shape, nothing
reaches the upstream, each refusal is counted as a zero-cost error event tagged with the block;
unblocking and expiry let calls through again; a guard trips on real traffic."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from llmtray.cli import main
from llmtray.core.blocks import BlockBook
from llmtray.core.budgets import Scope
from llmtray.core.guards import Guard, GuardBook
from llmtray.core.monitor import BudgetMonitor
from llmtray.core.money import usd_to_nanos
from tests.core.budget_kit import RecordingSink
from tests.proxy.conftest import stub_config, wait_events

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}


def chat(service, feature: str | None = "summarize", model: str = "gpt-4o-mini") -> httpx.Response:
    headers = {"X-LLMTray-Feature": feature} if feature else {}
    return httpx.post(f"{service.url}/proxy/openai/v1/chat/completions", json={**CHAT, "model": model},
                      headers=headers, timeout=10)


def until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` holds (fails after `timeout`)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - t0


def cli(service, *args: str) -> None:
    assert main(["--data-dir", str(service.paths.db.parent), *args]) == 0


@pytest.fixture
def book(service) -> Iterator[BlockBook]:
    conn = sqlite3.connect(service.paths.db, timeout=10)
    yield BlockBook(conn)
    conn.close()


def test_a_cli_block_refuses_within_a_second_and_nothing_goes_upstream(service, stub, book, capsys):
    assert chat(service).status_code == 200
    assert len(stub.received) == 1
    cli(service, "block", "--feature", "summarize", "--for", "1h", "--reason", "agent loop")
    block_id = int(capsys.readouterr().out.strip())
    waited = until(lambda: chat(service).status_code == 429, timeout=1.0)  # polls: the last one was refused
    assert waited < 1.0
    forwarded = len(stub.received)
    with openai.OpenAI(base_url=f"{service.url}/proxy/openai/v1", api_key="sk-x",
                       default_headers={"X-LLMTray-Feature": "summarize"}) as client:
        with pytest.raises(openai.RateLimitError) as caught:  # not retried: x-should-retry false
            client.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=MESSAGES)
    error = caught.value.body
    assert error["code"] == "blocked" and error["type"] == "insufficient_quota"
    assert error["message"].startswith(f"blocked by llmtray block #{block_id} (feature summarize): agent loop.")
    with anthropic.Anthropic(base_url=f"{service.url}/proxy/anthropic", api_key="sk-ant", max_retries=0,
                             default_headers={"X-LLMTray-Feature": "summarize"}) as client:
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model="claude-sonnet-4-0", max_tokens=5, messages=MESSAGES)
    assert refused.value.body["type"] == "error" and "block #" in refused.value.body["error"]["message"]
    assert len(stub.received) == forwarded  # nothing refused was forwarded
    assert chat(service, feature="other").status_code == 200  # outside the scope: forwarded
    assert len(stub.received) == forwarded + 1

    events = wait_events(service, len(stub.received) + 3)  # every forwarded call, and the 3 refused
    refused = [e for e in events if e.get("tags", {}).get("llmtray.blocked") == str(block_id)]
    assert len(refused) == 3 and all(e["status"] == "error" and e["cost_nanos"] == 0 for e in refused)
    assert sorted(e["model"] for e in refused) == ["claude-sonnet-4-0", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"]
    assert all(e["feature"] == "summarize" and "agent loop" in e["error"] for e in refused)
    assert book.refused() == {block_id: 3}


def test_unblock_restores_and_a_timed_block_expires(service, stub, book):
    block = book.add(Scope(model="gpt-4o-mini"), "too dear")
    until(lambda: chat(service).status_code == 429, timeout=1.0)
    assert chat(service, model="gpt-4o-mini-2024-07-18").status_code == 429  # the alias covers its snapshot
    book.lift(block.id)
    waited = until(lambda: chat(service).status_code == 200, timeout=1.0)
    assert waited < 1.0
    book.add(Scope(), "maintenance", for_s=1)  # --all, for one second
    until(lambda: chat(service, feature=None).status_code == 429, timeout=1.0)
    forwarded = len(stub.received)
    assert chat(service, feature="any", model="o3").status_code == 429
    assert len(stub.received) == forwarded
    until(lambda: chat(service, feature=None).status_code == 200, timeout=2.5)  # expired: no one lifted it
    assert len(stub.received) == forwarded + 1


def test_enforce_endpoint_and_summary_name_the_block(service, book):
    block = book.add(Scope(feature="triage"), "runaway")
    headers = {"Authorization": f"Bearer {service.token}"}
    r = httpx.get(f"{service.url}/v1/enforce", params={"provider": "openai", "model": "gpt-4o", "feature": "triage"},
                  headers=headers)
    body = r.json()
    assert r.status_code == 200 and body["allowed"] is False and body["blocked"] is True
    assert body["block"]["id"] == block.id and body["block"]["reason"] == "runaway"
    assert "blocked by llmtray block" in body["message"]
    other = httpx.get(f"{service.url}/v1/enforce", params={"provider": "openai", "model": "gpt-4o"}, headers=headers)
    assert other.json()["allowed"] is True
    summary = httpx.get(f"{service.url}/v1/summary", headers=headers).json()
    assert [(b["id"], b["scope"], b["until"]) for b in summary["blocks"]] == [(block.id, {"feature": "triage"}, None)]


def test_a_guard_trips_on_real_traffic(service, stub, data_dir):
    conn = sqlite3.connect(service.paths.db, timeout=10)
    GuardBook(conn).add(Guard("pricey", Scope(feature="summarize"), max_request_nanos=usd_to_nanos("0.00001")))
    conn.close()
    sink = RecordingSink()
    monitor = BudgetMonitor(service.paths.db, stub_config(stub), [sink])
    service.add_listener(monitor.on_commit)
    monitor.start()
    try:
        assert chat(service, feature="cheap").status_code == 200  # outside the guard's scope
        assert chat(service).status_code == 200  # ~$0.0002 > $0.00001: trips after its commit
        assert sink.wait_for(1)
        [alert] = sink.sent
        assert alert.kind == "guard" and "pricey" in alert.title and "feature summarize blocked" in alert.title
        assert "per-call limit" in alert.body
        until(lambda: chat(service).status_code == 429, timeout=1.0)
        forwarded = len(stub.received)
        r = chat(service)
        assert r.status_code == 429 and "guard 'pricey'" in r.json()["error"]["message"]
        assert len(stub.received) == forwarded
        assert chat(service, feature="cheap").status_code == 200
    finally:
        monitor.stop()
