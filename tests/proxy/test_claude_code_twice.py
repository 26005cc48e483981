"""Claude Code sent through the proxy *and* read from its transcripts is one call, not two: the
proxy keys an Anthropic message by `anthropic:<message id>`, as the transcript reader does —
whichever of the two gets there first stores it, the other counts a duplicate."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from llmtray.core.store import Store
from tests.agents.kit import scanner
from tests.proxy.conftest import stored_events, wait_events
from tests.proxy.stub import USAGE


def transcript_line(message_id: str, output_tokens: int) -> str:
    """One assistant record of a Claude Code transcript (1.0.x format) for that message."""
    usage = {k: v for k, v in USAGE["messages"].items() if k != "cache_creation"} | {"output_tokens": output_tokens}
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/home/dev/shop",
        "sessionId": "5e55-0000", "version": "1.0.8", "type": "assistant", "uuid": "u-1",
        "timestamp": "2026-12-01T10:00:00.000Z", "requestId": "req_011ProxyTwice",
        "message": {"id": message_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                    "content": [{"type": "text", "text": "hi"}], "usage": usage}})


def write_transcript(home: Path, line: str) -> None:
    folder = home / ".claude" / "projects" / "-home-dev-shop"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "5e55-0000.jsonl").write_text(line + "\n")


@pytest.mark.parametrize("stream", [False, True])
def test_a_proxied_claude_code_call_found_again_in_its_transcript_is_stored_once(service, tmp_path, stream):
    with httpx.Client(timeout=10) as client:
        body = {"model": "claude-sonnet-4-0", "max_tokens": 9, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}
        reply = client.post(f"{service.url}/proxy/anthropic/v1/messages", json=body)
        assert reply.status_code == 200
    [proxied] = wait_events(service, 1)
    message_id = proxied["request_id"]
    assert proxied["id"] == f"anthropic:{message_id}" and proxied["source"] == "proxy"

    home = tmp_path / "home"
    write_transcript(home, transcript_line(message_id, USAGE["messages"]["output_tokens"]))
    store = Store.open(service.paths.db)
    try:
        [report] = [r for r in scanner(store, home).scan() if r.source == "claude-code"]
        assert (report.added, report.duplicates) == (0, 1)
    finally:
        store.close()
    assert stored_events(service.paths.db) == [proxied]  # the proxy's copy, untouched


def test_a_call_read_from_the_transcript_first_is_not_stored_again_by_the_proxy(service, tmp_path):
    with httpx.Client(timeout=10) as client:
        first = client.post(f"{service.url}/proxy/anthropic/v1/messages",
                            json={"model": "claude-sonnet-4-0", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]})
    [proxied] = wait_events(service, 1)
    next_id = proxied["request_id"][:-8] + f"{int(proxied['request_id'][-8:]) + 1:08d}"  # the stub's next message
    home = tmp_path / "home"
    write_transcript(home, transcript_line(next_id, 15))
    store = Store.open(service.paths.db)
    try:
        [report] = [r for r in scanner(store, home).scan() if r.source == "claude-code"]
        assert report.added == 1
    finally:
        store.close()
    with httpx.Client(timeout=10) as client:
        second = client.post(f"{service.url}/proxy/anthropic/v1/messages",
                             json={"model": "claude-sonnet-4-0", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]})
        # a third call, to another provider: the writer stores in order, so once it is there the
        # second one has been written (or found a duplicate)
        third = client.post(f"{service.url}/proxy/openai/v1/chat/completions",
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert first.status_code == second.status_code == third.status_code == 200 and second.json()["id"] == next_id
    events = wait_events(service, 3)
    assert sorted((e["source"], e["provider"]) for e in events) == [
        ("claude-code", "anthropic"), ("proxy", "anthropic"), ("proxy", "openai")]  # the second call once, from the log
    assert {f"anthropic:{proxied['request_id']}", f"anthropic:{next_id}"} < {e["id"] for e in events}
