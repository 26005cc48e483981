"""`lt.httpx_hooks(...)` on plain `httpx` clients (and the `httpx2` fork the SDKs use): recorded from
the bytes the user reads, streaming left intact."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import httpx2
import openai
import pytest

import llmtray.hooks as lt
from tests.hooks.conftest import delivered
from tests.hooks.helpers import CHAT, EMBEDDINGS, MESSAGES, MESSAGES_COST, expect_tokens, one, tokens
from tests.hooks.stub_upstream import OPENROUTER_COST

pytestmark = pytest.mark.usefixtures("tray")
CHAT_BODY = {"model": "anthropic/claude-3.5-sonnet", "messages": [{"role": "user", "content": "Say hello"}]}


def test_openrouter_json_and_stream(hook_env: Path, upstream):
    hooks = lt.httpx_hooks(provider="openrouter", feature="router")
    with httpx.Client(base_url=upstream.url + "/openrouter/v1", event_hooks=hooks) as client:
        reply = client.post("/chat/completions", json=CHAT_BODY).json()
        with client.stream("POST", "/chat/completions",
                           json={**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        client.get("/models")  # not a usage call: not recorded (and the stub has no GET)
    assert reply["usage"]["cost"] == OPENROUTER_COST
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["usage"]["cost"] == OPENROUTER_COST
    events = delivered(hook_env)
    assert len(events) == 2
    for streamed in (False, True):
        event = one(events, stream=streamed)
        assert (event["provider"], event["model"], event["feature"]) == ("openrouter", "anthropic/claude-3.5-sonnet", "router")
        assert tokens(event) == CHAT
        assert event["cost_usd"] == repr(OPENROUTER_COST) and event["cost_source"] == "reported"
        assert event["request_id"] == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
        assert ("ttft_ms" in event) is streamed


def test_async_client_and_anthropic_style_stream(hook_env: Path, upstream):
    async def main() -> str:
        hooks = lt.httpx_hooks(provider="anthropic", asynchronous=True)
        async with httpx.AsyncClient(base_url=upstream.url, event_hooks=hooks) as client:
            body = {"model": "claude-sonnet-4-0", "max_tokens": 64, "stream": True,
                    "messages": [{"role": "user", "content": "Say hello"}]}
            async with client.stream("POST", "/v1/messages", json=body) as r:
                return "".join([chunk async for chunk in r.aiter_text()])

    text = asyncio.run(main())
    assert "message_start" in text and "message_stop" in text
    event = one(delivered(hook_env))
    assert tokens(event) == MESSAGES and event["cost_usd"] == MESSAGES_COST
    assert event["model"] == "claude-sonnet-4-20250514" and event["stream"] is True


def test_large_body_read_from_head_and_tail(hook_env: Path, upstream):
    inputs = [f"document number {i} with some words in it" for i in range(4000)]
    with httpx.Client(base_url=upstream.url + "/v1", event_hooks=lt.httpx_hooks(provider="openai")) as client:
        reply = client.post("/embeddings", json={"model": "text-embedding-3-small", "input": inputs})
    assert len(reply.content) > 256 * 1024 and len(reply.json()["data"]) == 4000
    event = one(delivered(hook_env))
    assert (event["operation"], event["model"]) == ("embeddings", "text-embedding-3-small")
    assert tokens(event) == EMBEDDINGS


def test_error_status_is_recorded(hook_env: Path, upstream):
    with httpx.Client(base_url=upstream.url + "/v1", event_hooks=lt.httpx_hooks(provider="groq")) as client:
        response = client.post("/chat/completions", json={**CHAT_BODY, "model": "fail-500"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"  # body untouched
    event = one(delivered(hook_env))
    assert (event["provider"], event["status"], event["model"]) == ("groq", "error", "fail-500")
    assert event["error"].endswith("HTTP 500 Internal Server Error") and event["request_id"] == "req_stubfail500"
    assert tokens(event) == expect_tokens(0, 0)


def test_hooks_on_the_httpx2_client_given_to_the_openai_sdk(hook_env: Path, upstream):
    http_client = httpx2.Client(event_hooks=lt.httpx_hooks(provider="deepseek"))
    with openai.OpenAI(api_key="k", base_url=upstream.url + "/v1", http_client=http_client, max_retries=0) as client:
        stream = client.chat.completions.create(model="deepseek-chat", messages=CHAT_BODY["messages"], stream=True,
                                                stream_options={"include_usage": True})
        assert sum(1 for _ in stream) == 7
    event = one(delivered(hook_env))
    assert (event["provider"], event["model"], event["stream"]) == ("deepseek", "deepseek-chat", True)
    assert tokens(event) == CHAT
