"""The real `openai` SDK (sync and async, Azure too) against the stub upstream, events read back from
the real ingest service's SQLite file."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import openai
import pytest

import llmtray.hooks as lt
from tests.hooks.conftest import delivered
from tests.hooks.helpers import (
    CHAT,
    CHAT_COST,
    EMBEDDINGS,
    EMBEDDINGS_COST,
    REASONING,
    REASONING_COST,
    RESPONSES,
    RESPONSES_COST,
    assert_hook_event,
    expect_tokens,
    one,
    tokens,
)
from tests.hooks.stub_upstream import OPENROUTER_COST

pytestmark = pytest.mark.usefixtures("tray")
HELLO = [{"role": "user", "content": "Say hello"}]


def sync_client(upstream, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=upstream.url + "/v1", max_retries=0, **kw)


def async_client(upstream, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=upstream.url + "/v1", max_retries=0, **kw)


def test_chat_records_normalised_tokens_cost_and_attribution(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream), project="atlas", tags={"team": "search"}) as client:
        with lt.tags(feature="summarize", user="u42", tags={"tenant": "acme"}):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert reply.choices[0].message.content == "Hello! How can I help?"
    event = one(delivered(hook_env))
    assert_hook_event(event)
    assert tokens(event) == CHAT
    assert event["cost_usd"] == CHAT_COST and event["cost_source"] == "computed"
    assert (event["provider"], event["model"], event["operation"]) == ("openai", "gpt-4o-mini-2024-07-18", "chat")
    assert event["stream"] is False and "ttft_ms" not in event
    assert event["service_tier"] == "default"
    assert event["request_id"] == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert (event["feature"], event["user"], event["project"]) == ("summarize", "u42", "atlas")
    assert event["tags"] == {"team": "search", "tenant": "acme"}


def test_reasoning_tokens_stay_inside_output(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        client.chat.completions.create(model="o3-mini", messages=HELLO)
    event = one(delivered(hook_env))
    assert event["model"] == "o3-mini-2025-01-31"
    assert tokens(event) == REASONING
    assert event["cost_usd"] == REASONING_COST


def test_chat_stream_with_usage_measures_time_to_first_token(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True})
        assert isinstance(stream, openai.Stream)  # the user keeps the SDK's own object
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello! How can I help?"
    event = one(delivered(hook_env))
    assert tokens(event) == CHAT and event["cost_usd"] == CHAT_COST
    assert event["stream"] is True
    assert 0 < event["ttft_ms"] <= event["latency_ms"]
    assert "tags" not in event


def test_chat_stream_without_include_usage_says_usage_is_missing(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True):
            pass
    event = one(delivered(hook_env))
    assert event["tags"] == {"llmtray.usage": "missing"}
    assert tokens(event) == expect_tokens(0, 0)  # nothing invented
    assert event["model"] == "gpt-4o-mini-2024-07-18" and event["stream"] is True


def test_stream_helper_is_recorded_once(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=HELLO,
                                            stream_options={"include_usage": True}) as stream:
            final = stream.get_final_completion()
    assert final.usage is not None and final.usage.prompt_tokens == 1117
    event = one(delivered(hook_env))
    assert tokens(event) == CHAT and event["stream"] is True


def test_responses_plain_streamed_and_helper(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with lt.tags(feature="plain"):
            assert client.responses.create(model="gpt-4.1", input="Tell a story").output_text
        with lt.tags(feature="streamed"):
            kinds = [e.type for e in client.responses.create(model="gpt-4.1", input="Tell a story", stream=True)]
        with lt.tags(feature="helper"):
            with client.responses.stream(model="gpt-4.1", input="Tell a story") as stream:
                final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.usage is not None and final.usage.input_tokens == 2036
    events = delivered(hook_env)
    assert len(events) == 3
    for feature, streamed in (("plain", False), ("streamed", True), ("helper", True)):
        event = one(events, feature=feature)
        assert (event["operation"], event["model"], event["stream"]) == ("responses", "gpt-4.1-2025-04-14", streamed)
        assert tokens(event) == RESPONSES and event["cost_usd"] == RESPONSES_COST
        assert event["request_id"].startswith("resp_")


def test_embeddings(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        result = client.embeddings.create(model="text-embedding-3-small", input="The food was delicious")
    assert len(result.data[0].embedding) == 4
    event = one(delivered(hook_env))
    assert event["operation"] == "embeddings" and tokens(event) == EMBEDDINGS
    assert event["cost_usd"] == EMBEDDINGS_COST


def test_async_client_every_call_kind(hook_env: Path, upstream):
    async def main() -> list[str]:
        async with lt.instrument(async_client(upstream)) as client:
            with lt.tags(feature="chat"):
                await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            with lt.tags(feature="chat-stream"):
                stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                                              stream_options={"include_usage": True})
                assert isinstance(stream, openai.AsyncStream)
                chunks = [c async for c in stream]
            with lt.tags(feature="responses"):
                await client.responses.create(model="gpt-4.1", input="Tell a story")
            with lt.tags(feature="responses-stream"):
                async for _event in await client.responses.create(model="gpt-4.1", input="x", stream=True):
                    pass
            with lt.tags(feature="embeddings"):
                await client.embeddings.create(model="text-embedding-3-small", input="x")
            return [c.id for c in chunks]

    assert len(asyncio.run(main())) == 7
    events = delivered(hook_env)
    assert len(events) == 5
    assert tokens(one(events, feature="chat")) == CHAT
    streamed = one(events, feature="chat-stream")
    assert tokens(streamed) == CHAT and streamed["stream"] is True and streamed["ttft_ms"] > 0
    assert tokens(one(events, feature="responses")) == RESPONSES
    assert one(events, feature="responses-stream")["cost_usd"] == RESPONSES_COST
    assert one(events, feature="embeddings")["cost_usd"] == EMBEDDINGS_COST
    for event in events:
        assert_hook_event(event)


def test_azure_client_is_provider_azure(hook_env: Path, upstream):
    client = openai.AzureOpenAI(api_key="azure-key", api_version="2024-10-21", azure_endpoint=upstream.url,
                                max_retries=0)
    with lt.instrument(client):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert upstream.requests[-1][0] == "/openai/deployments/gpt-4o-mini/chat/completions"
    event = one(delivered(hook_env))
    assert event["provider"] == "azure" and tokens(event) == CHAT and event["cost_usd"] == CHAT_COST


def test_openrouter_through_the_openai_sdk_keeps_the_reported_cost(hook_env: Path, upstream):
    client = openai.OpenAI(api_key="sk-or", base_url=upstream.url + "/openrouter/v1", max_retries=0)
    with lt.instrument(client, provider="openrouter"):
        client.chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=HELLO)
    event = one(delivered(hook_env))
    assert event["provider"] == "openrouter" and event["model"] == "anthropic/claude-3.5-sonnet"
    assert event["cost_source"] == "reported"
    assert event["cost_usd"] == repr(OPENROUTER_COST)  # exactly what OpenRouter reported
    assert tokens(event) == CHAT


@pytest.mark.parametrize(("base_url", "provider"), [
    ("https://openrouter.ai/api/v1", "openrouter"),
    ("https://api.groq.com/openai/v1", "groq"),
    ("https://api.deepseek.com", "deepseek"),
    ("https://api.openai.com/v1", "openai"),
])
def test_provider_is_inferred_from_the_base_url(hook_env: Path, upstream, base_url: str, provider: str):
    # the provider is decided when instrumenting; then the client is pointed at the stub, so no
    # request leaves the machine
    client = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
    with lt.instrument(client):
        client.base_url = upstream.url + "/v1"
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert one(delivered(hook_env))["provider"] == provider


def test_provider_error_is_recorded_and_reraised_unchanged(hook_env: Path, upstream):
    with sync_client(upstream) as plain:
        with pytest.raises(openai.InternalServerError) as bare:
            plain.chat.completions.create(model="fail-500", messages=HELLO)
    with lt.instrument(sync_client(upstream)) as client:
        with pytest.raises(openai.InternalServerError) as hooked:
            client.chat.completions.create(model="fail-500", messages=HELLO)
    assert type(hooked.value) is type(bare.value)
    assert str(hooked.value) == str(bare.value) and hooked.value.status_code == 500
    assert hooked.value.__cause__ is None and type(hooked.value.__context__) is type(bare.value.__context__)
    event = one(delivered(hook_env))
    assert event["status"] == "error" and event["error"].startswith("InternalServerError: Error code: 500")
    assert event["request_id"] == "req_stubfail500"
    assert tokens(event) == expect_tokens(0, 0) and event["cost_usd"] in ("0", None)
    assert "tags" not in event  # an error is not "usage missing"


def test_async_provider_error(hook_env: Path, upstream):
    async def main() -> None:
        async with lt.instrument(async_client(upstream)) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="fail-500", messages=HELLO)

    asyncio.run(main())
    assert one(delivered(hook_env))["status"] == "error"


def test_malformed_usage_keeps_the_call_and_notes_it(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        reply = client.chat.completions.create(model="malformed-usage", messages=HELLO)
    assert reply.usage.prompt_tokens == "lots"  # the SDK passes the provider's odd value through
    event = one(delivered(hook_env))
    assert event["status"] == "ok" and tokens(event) == expect_tokens(0, 0)
    assert event["tags"]["llmtray.usage"] == "malformed"
    assert "usage.prompt_tokens" in event["tags"]["llmtray.usage_error"]


def test_cut_off_stream_raises_as_before_and_is_recorded_as_interrupted(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        stream = client.chat.completions.create(model="cutoff", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True})
        received = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                received.append(chunk)
    assert len(received) == 3
    event = one(delivered(hook_env))
    assert event["status"] == "error" and event["error"].startswith("APIConnectionError")
    assert event["tags"] == {"llmtray.stream": "interrupted", "llmtray.usage": "missing"}
    assert event["ttft_ms"] > 0 and event["model"] == "cutoff"


def test_stream_closed_early_is_recorded_as_abandoned(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True}) as stream:
            first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        # recorded at close(), not only when the stream object is collected
        assert lt.flush(10)
    event = one(delivered(hook_env))
    assert event["tags"] == {"llmtray.stream": "abandoned", "llmtray.usage": "missing"}
    assert event["status"] == "ok" and event["stream"] is True


def test_stream_dropped_unread_is_recorded_when_collected(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
        stream.response.close()
        del stream
        gc.collect()
    event = one(delivered(hook_env))
    assert event["tags"]["llmtray.stream"] == "abandoned" and "ttft_ms" not in event


def test_async_stream_abandoned_with_break_and_close(hook_env: Path, upstream):
    async def main() -> None:
        async with lt.instrument(async_client(upstream)) as client:
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
            async for _chunk in stream:
                break
            await stream.close()

    asyncio.run(main())
    event = one(delivered(hook_env))
    assert event["tags"]["llmtray.stream"] == "abandoned"


def test_raw_response_and_with_options_copies_are_recorded(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream), feature="raw") as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
        assert raw.parse().usage.prompt_tokens == 1117
        copy = client.with_options(timeout=30)
        copy.chat.completions.create(model="gpt-4.1", messages=HELLO)
        copy.close()
    events = delivered(hook_env)
    assert len(events) == 2
    assert tokens(one(events, model="gpt-4o-mini-2024-07-18")) == CHAT
    assert one(events, model="gpt-4.1-2025-04-14")["feature"] == "raw"


def test_streaming_response_is_recorded_without_reading_the_body_early(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=HELLO) as response:
            body = json.loads(response.read())
    assert body["usage"]["prompt_tokens"] == 1117
    event = one(delivered(hook_env))
    assert event["tags"] == {"llmtray.usage": "missing"} and event["status"] == "ok"


def test_instrumenting_twice_records_once_and_updates_the_defaults(hook_env: Path, upstream):
    client = sync_client(upstream)
    assert lt.instrument(client, feature="first") is client
    assert lt.instrument(client, feature="second") is client
    with client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    event = one(delivered(hook_env))
    assert event["feature"] == "second"


def test_only_the_instrumented_client_is_recorded(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as hooked, sync_client(upstream) as plain:
        plain.chat.completions.create(model="gpt-4.1", messages=HELLO)
        hooked.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        plain.embeddings.create(model="text-embedding-3-small", input="x")
    assert one(delivered(hook_env))["model"] == "gpt-4o-mini-2024-07-18"


def test_unknown_objects_are_returned_untouched(caplog: pytest.LogCaptureFixture):
    thing = object()
    with caplog.at_level(logging.WARNING, logger="llmtray.hooks"):
        assert lt.instrument(thing) is thing
    assert "not an OpenAI or Anthropic SDK client" in caplog.text
