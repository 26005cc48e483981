"""The provider endpoints the SDK hooks record, and how each one's stream reveals model, id and usage.

Stream observers run on the caller's thread once per chunk, so they only keep references —
the last usage object seen — and never convert anything (`Call.to_event` does, later).
Chunk formats follow FORMATS.md: Chat Completions sends usage in a final chunk only with
`stream_options.include_usage`; Responses in `response.completed` (or `.incomplete`/`.failed`);
Anthropic splits it between `message_start` (input, cache) and `message_delta` (cumulative output).
"""

from __future__ import annotations

from typing import Any

from llmtray.core import usage as conventions
from llmtray.hooks.calls import Api, Call, field


def _observe_chat(call: Call, chunk: Any) -> None:
    if call.model is None:
        call.model = field(chunk, "model")
        call.request_id = field(chunk, "id")
        call.tier = field(chunk, "service_tier")
    usage = field(chunk, "usage")
    if usage is not None:
        call.usage = usage


def _observe_responses(call: Call, event: Any) -> None:
    response = field(event, "response")  # response.created / in_progress / completed / failed …
    if response is None:
        return
    call.model = field(response, "model") or call.model
    call.request_id = field(response, "id") or call.request_id
    call.tier = field(response, "service_tier") or call.tier
    usage = field(response, "usage")
    if usage is not None:
        call.usage = usage


def _observe_anthropic(call: Call, event: Any) -> None:
    kind = field(event, "type")
    if kind == "message_start":
        message = field(event, "message")
        call.model = field(message, "model")
        call.request_id = field(message, "id")
        call.usage_start = field(message, "usage")
    elif kind == "message_delta":
        usage = field(event, "usage")
        if usage is not None:
            call.usage = usage


CHAT = Api("chat", conventions.openai_chat, _observe_chat)
COMPLETION = Api("completion", conventions.openai_chat, _observe_chat)
RESPONSES = Api("responses", conventions.openai_responses, _observe_responses)
EMBEDDINGS = Api("embeddings", conventions.openai_responses)
MESSAGES = Api("chat", conventions.anthropic, _observe_anthropic, split_stream_usage=True)

# resource attribute path on the client → {request path: api}; only these POSTs are recorded
# (the same resources also retrieve, list, update and count tokens through `_post`).
OPENAI_RESOURCES: dict[str, dict[str, Api]] = {
    "chat.completions": {"/chat/completions": CHAT},
    "responses": {"/responses": RESPONSES},
    "embeddings": {"/embeddings": EMBEDDINGS},
    "completions": {"/completions": COMPLETION},
}
ANTHROPIC_RESOURCES: dict[str, dict[str, Api]] = {
    "messages": {"/v1/messages": MESSAGES},
    "beta.messages": {"/v1/messages": MESSAGES},
}

# OpenAI-compatible services reached through `openai.OpenAI(base_url=...)`, by host suffix.
COMPATIBLE_HOSTS: dict[str, str] = {
    "openrouter.ai": "openrouter",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "xai",
    "api.mistral.ai": "mistral",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "generativelanguage.googleapis.com": "google",
    "openai.azure.com": "azure",
}
