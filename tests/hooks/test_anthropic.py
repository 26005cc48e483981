"""The real `anthropic` SDK (sync and async) against the stub upstream: Messages create, `stream=True`,
the `messages.stream()` helper and beta messages, with Anthropic's cache-token convention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anthropic
import pytest

import llmtray.hooks as lt
from tests.hooks.conftest import delivered
from tests.hooks.helpers import MESSAGES, MESSAGES_COST, assert_hook_event, expect_tokens, one, tokens

pytestmark = pytest.mark.usefixtures("tray")
HELLO = [{"role": "user", "content": "Say hello"}]
MODEL = "claude-sonnet-4-0"
SNAPSHOT = "claude-sonnet-4-20250514"


def sync_client(upstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=upstream.url, max_retries=0)


def async_client(upstream) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=upstream.url, max_retries=0)


def check_message_event(event: dict, streamed: bool) -> None:
    assert_hook_event(event)
    assert (event["provider"], event["model"], event["operation"]) == ("anthropic", SNAPSHOT, "chat")
    assert tokens(event) == MESSAGES  # input 12 uncached + 3000 read + 1500 written
    assert event["cost_usd"] == MESSAGES_COST and event["cost_source"] == "computed"
    assert event["stream"] is streamed
    assert event["service_tier"] == "default"  # Anthropic's "standard"
    assert event["request_id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert ("ttft_ms" in event) is streamed
    assert "tags" not in event


def test_sync_create_stream_and_helper(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with lt.tags(feature="create"):
            message = client.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
        with lt.tags(feature="raw-stream"):
            kinds = [e.type for e in client.messages.create(model=MODEL, max_tokens=256, messages=HELLO, stream=True)]
        with lt.tags(feature="helper"):
            with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
                text = "".join(stream.text_stream)
                final = stream.get_final_message()
    assert message.content[0].text == text == "Hello! How can I help?"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "ping" not in kinds
    assert final.usage.output_tokens == 15
    events = delivered(hook_env)
    assert len(events) == 3
    check_message_event(one(events, feature="create"), streamed=False)
    check_message_event(one(events, feature="raw-stream"), streamed=True)
    check_message_event(one(events, feature="helper"), streamed=True)


def test_async_create_stream_and_helper(hook_env: Path, upstream):
    async def main() -> str:
        async with lt.instrument(async_client(upstream)) as client:
            with lt.tags(feature="create"):
                await client.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
            with lt.tags(feature="raw-stream"):
                async for _event in await client.messages.create(model=MODEL, max_tokens=256, messages=HELLO,
                                                                 stream=True):
                    pass
            with lt.tags(feature="helper"):
                async with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
                    return await stream.get_final_text()

    assert asyncio.run(main()) == "Hello! How can I help?"
    events = delivered(hook_env)
    assert len(events) == 3
    check_message_event(one(events, feature="create"), streamed=False)
    check_message_event(one(events, feature="raw-stream"), streamed=True)
    check_message_event(one(events, feature="helper"), streamed=True)


def test_beta_messages_are_recorded(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        client.beta.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
    check_message_event(one(delivered(hook_env)), streamed=False)


def test_count_tokens_is_not_a_billed_call(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with pytest.raises(anthropic.NotFoundError):  # the stub has no such route: what matters is no event
            client.messages.count_tokens(model=MODEL, messages=HELLO)
        client.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
    assert one(delivered(hook_env))["stream"] is False


def test_provider_error_is_recorded_and_reraised(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(model="fail-500", max_tokens=256, messages=HELLO)
    assert caught.value.status_code == 500
    event = one(delivered(hook_env))
    assert event["status"] == "error" and "Internal server error" in event["error"]
    assert event["request_id"] == "req_011CStubFail500"
    assert tokens(event) == expect_tokens(0, 0)


def test_malformed_usage_is_noted_not_invented(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        client.messages.create(model="malformed-usage", max_tokens=256, messages=HELLO)
    event = one(delivered(hook_env))
    assert event["status"] == "ok" and tokens(event) == expect_tokens(0, 0)
    assert event["tags"]["llmtray.usage"] == "malformed"
    assert "cache_read_input_tokens" in event["tags"]["llmtray.usage_error"]


def _read_cut_off_stream(client: anthropic.Anthropic) -> BaseException:
    with pytest.raises(Exception) as caught:
        with client.messages.stream(model="cutoff", max_tokens=256, messages=HELLO) as stream:
            for _text in stream.text_stream:
                pass
    return caught.value


def test_cut_off_stream_keeps_the_input_it_reported(hook_env: Path, upstream):
    with sync_client(upstream) as plain:
        bare = _read_cut_off_stream(plain)
    with lt.instrument(sync_client(upstream)) as client:
        hooked = _read_cut_off_stream(client)
    assert type(hooked) is type(bare) and str(hooked) == str(bare)
    event = one(delivered(hook_env))
    assert event["status"] == "error" and event["error"].startswith(type(hooked).__name__)
    assert event["tags"] == {"llmtray.stream": "interrupted", "llmtray.usage": "partial"}
    # message_start told the input and cache counts; the output count never came
    assert tokens(event) == {**MESSAGES, "output_tokens": 0}


def test_helper_left_early_is_recorded_as_abandoned(hook_env: Path, upstream):
    with lt.instrument(sync_client(upstream)) as client:
        with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
            next(iter(stream.text_stream))
    event = one(delivered(hook_env))
    assert event["tags"] == {"llmtray.stream": "abandoned", "llmtray.usage": "partial"}
    assert event["input_tokens"] == MESSAGES["input_tokens"] and event["status"] == "ok"
