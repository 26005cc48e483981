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
from llmtray.hooks.calls import Api, Call


def _observe_chat(call: Call, chunk: Any) -> None:
    if call.model is None:
        call.model = getattr(chunk, "model", None)
        call.request_id = getattr(chunk, "id", None)
        call.tier = getattr(chunk, "service_tier", None)
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        call.usage = usage


def _observe_responses(call: Call, event: Any) -> None:
    response = getattr(event, "response", None)  # response.created / in_progress / completed / failed …
    if response is None:
        return
    call.model = getattr(response, "model", None) or call.model
    call.request_id = getattr(response, "id", None) or call.request_id
    call.tier = getattr(response, "service_tier", None) or call.tier
    usage = getattr(response, "usage", None)
    if usage is not None:
        call.usage = usage


def _observe_anthropic(call: Call, event: Any) -> None:
    kind = getattr(event, "type", None)
    if kind == "message_start":
        message = getattr(event, "message", None)
        call.model = getattr(message, "model", None)
        call.request_id = getattr(message, "id", None)
        call.usage_start = getattr(message, "usage", None)
    elif kind == "message_delta":
        usage = getattr(event, "usage", None)
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
