"""The real openai and anthropic SDKs with only their base URL changed: requests reach the stub
intact, answers come back unchanged, and each call is stored with its usage, cost and attribution."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from llmtray.core.events import parse_event
from llmtray.core.pricing import Pricer
from tests.proxy.conftest import wait_events
from tests.proxy.stub import OPENROUTER_COST, SNAPSHOTS, USAGE, TEXT

ATTRIBUTION = {"X-LLMTray-Feature": "summarize", "X-LLMTray-User": "u42", "X-LLMTray-Project": "atlas",
               "X-LLMTray-Env": "staging", "X-LLMTray-Tags": "team=search, run=nightly"}
MESSAGES = [{"role": "user", "content": "Say hello"}]


def oa(service, upstream: str = "openai", **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/proxy/{upstream}/v1", api_key="sk-test-123", max_retries=0, **kw)


def claude(service, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{service.url}/proxy/anthropic", api_key="sk-ant-test-456",
                               max_retries=0, **kw)


def expected_cost(event: dict[str, Any]) -> int | None:
    """What the pricer charges for the stored tokens (the proxy's own arithmetic is not trusted)."""
    fields = {k: v for k, v in event.items() if k in (
        "provider", "model", "ts", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cache_write_1h_tokens", "reasoning_tokens", "service_tier", "status", "error")}
    return Pricer().price(parse_event(fields)).cost_nanos


def test_openai_chat_request_arrives_intact_and_is_recorded(service, stub):
    with oa(service, default_headers=ATTRIBUTION) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert completion.model == SNAPSHOTS["gpt-4o-mini"]
    assert completion.choices[0].message.content == "".join(TEXT)
    got = stub.last()
    assert got.method == "POST" and got.target == "/v1/chat/completions"
    assert got.json() == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2}
    assert got.header("Authorization") == "Bearer sk-test-123"
    assert got.header("Host") == stub.url.removeprefix("http://")
    assert not any(name.startswith("x-llmtray") for name in got.names())
    assert got.header("x-stainless-lang") == "python"  # SDK headers pass through

    [event] = wait_events(service, 1)
    usage = USAGE["chat"]
    assert event["source"] == "proxy" and event["provider"] == "openai" and event["operation"] == "chat"
    assert event["model"] == SNAPSHOTS["gpt-4o-mini"]
    assert (event["input_tokens"], event["output_tokens"], event["cache_read_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"])
    assert event["request_id"] == completion.id and event["service_tier"] == "default"
    assert (event["feature"], event["user"], event["project"], event["env"]) == ("summarize", "u42", "atlas", "staging")
    assert event["tags"] == {"team": "search", "run": "nightly"}
    assert event["stream"] is False and event["status"] == "ok" and "ttft_ms" not in event
    assert event["latency_ms"] > 0
    assert event["cost_source"] == "computed" and event["cost_nanos"] == expected_cost(event) > 0


def test_openai_chat_stream_with_include_usage(service, stub):
    with oa(service) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(TEXT)
    assert chunks[-1].usage.prompt_tokens == USAGE["chat"]["prompt_tokens"]
    [event] = wait_events(service, 1)
    assert event["stream"] is True and event["ttft_ms"] <= event["latency_ms"]
    assert (event["input_tokens"], event["output_tokens"]) == (1117, 46)
    assert "tags" not in event  # complete usage: no notes


def test_openai_stream_without_usage_is_recorded_as_missing(service, stub):
    with oa(service) as client:
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    [event] = wait_events(service, 1)
    assert event["status"] == "ok" and event["input_tokens"] == 0
    assert event["tags"] == {"llmtray.usage": "missing"}
    assert event["model"] == SNAPSHOTS["gpt-4o-mini"]  # from the first chunk


def test_openai_responses_stream_and_embeddings(service, stub):
    with oa(service) as client:
        events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
        embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert events[-1].type == "response.completed"
    assert len(embedding.data) == 3
    responses, embeddings = wait_events(service, 2)
    usage = USAGE["responses"]
    assert responses["operation"] == "responses" and responses["model"] == SNAPSHOTS["gpt-4.1"]
    assert (responses["input_tokens"], responses["cache_read_tokens"], responses["output_tokens"],
            responses["reasoning_tokens"]) == (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"],
                                               usage["output_tokens"], usage["output_tokens_details"]["reasoning_tokens"])
    assert responses["request_id"] == events[-1].response.id
    assert embeddings["operation"] == "embeddings" and embeddings["input_tokens"] == 8
    assert embeddings["cost_nanos"] == expected_cost(embeddings)


def test_anthropic_message_and_stream(service, stub):
    with claude(service, default_headers={"X-LLMTray-Feature": "triage"}) as client:
        message = client.messages.create(model="claude-sonnet-4-0", max_tokens=64, messages=MESSAGES)
        with client.messages.stream(model="claude-sonnet-4-0", max_tokens=64, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
    assert message.usage.input_tokens == 12 and text == "".join(TEXT)
    got = stub.last()
    key = "sk-ant-test-456"  # older SDKs send it as x-api-key, newer ones as a bearer token
    assert got.header("x-api-key") == key or got.header("authorization") == f"Bearer {key}"
    assert got.header("anthropic-version")
    assert "x-llmtray-feature" not in got.names()
    plain, streamed = wait_events(service, 2)
    usage = USAGE["messages"]
    total_input = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    assert plain["request_id"] == message.id and streamed["request_id"] != message.id  # one id per message
    for event in (plain, streamed):
        assert event["provider"] == "anthropic" and event["model"] == SNAPSHOTS["claude-sonnet-4-0"]
        assert (event["input_tokens"], event["output_tokens"], event["cache_read_tokens"],
                event["cache_write_tokens"], event["cache_write_1h_tokens"]) == (
            total_input, usage["output_tokens"], usage["cache_read_input_tokens"],
            usage["cache_creation_input_tokens"], usage["cache_creation"]["ephemeral_1h_input_tokens"])
        assert event["feature"] == "triage" and event["id"] == f"anthropic:{event['request_id']}"
        assert event["service_tier"] == "default"  # Anthropic's "standard"
        assert event["cost_nanos"] == expected_cost(event) > 0
    assert plain["stream"] is False and streamed["stream"] is True and "ttft_ms" in streamed


def test_openrouter_reported_cost_is_kept(service, stub):
    with oa(service, "openrouter") as client:
        client.chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=MESSAGES)
    assert stub.last().target == "/api/v1/chat/completions"
    [event] = wait_events(service, 1)
    assert event["provider"] == "openrouter" and event["model"] == "anthropic/claude-3.5-sonnet"
    assert event["cost_source"] == "reported" and event["cost_usd"] == repr(OPENROUTER_COST)


def test_upstream_errors_pass_through_unchanged_and_are_recorded(service, stub):
    with oa(service) as client:
        for n, status in enumerate((400, 429, 500), 1):
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model=f"fail-{status}", messages=MESSAGES)
            assert caught.value.status_code == status
            assert caught.value.response.content == stub.sent[-1]  # the upstream's body, byte for byte
            assert f"stub says {status}" in caught.value.message
            event = wait_events(service, n)[-1]
            assert event["status"] == "error" and event["error"] == f"HTTP {status}: stub says {status}"
            assert event["model"] == f"fail-{status}"  # the request's model: the error names none
            assert event["input_tokens"] == 0 and event["cost_nanos"] == 0


def test_anthropic_error_keeps_its_shape(service, stub):
    with claude(service) as client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="fail-529", max_tokens=5, messages=MESSAGES)
    assert caught.value.status_code == 529 and caught.value.body["error"]["type"] == "overloaded_error"
    [event] = wait_events(service, 1)
    assert event["error"] == "HTTP 529: stub says 529"
