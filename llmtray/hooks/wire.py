"""`httpx_hooks(provider=...)`: record OpenAI-compatible (and Anthropic-style) calls at the HTTP level.

For clients the SDK hooks don't cover — OpenRouter, Groq, DeepSeek, local servers, or any code
that talks to those APIs with its own `httpx.Client` (also the `httpx2` fork the SDKs use).
The response hook swaps the response's byte stream for a tee that sees the bytes as the user
reads them: nothing is read ahead, so streaming stays streaming. The tee keeps only what the
event needs — the head and tail of a JSON body, or the few SSE `data:` lines that carry the
model and usage — and the sender's thread parses them. Requests that fail before a response
(connection errors) have no response hook and are not recorded here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from llmtray.hooks.apis import CHAT, COMPLETION, EMBEDDINGS, MESSAGES, RESPONSES
from llmtray.hooks.calls import Api, Call, HookConfig
from llmtray.hooks.context import current, make

log = logging.getLogger("llmtray.hooks")

KEY = "llmtray"
HEAD = TAIL = 64 * 1024

_ROUTES: tuple[tuple[str, Api], ...] = (
    ("/chat/completions", CHAT),
    ("/responses", RESPONSES),
    ("/embeddings", EMBEDDINGS),
    ("/completions", COMPLETION),
    ("/messages", MESSAGES),
)


def _api_for(path: str) -> Api | None:
    for suffix, api in _ROUTES:
        if path.endswith(suffix):
            return api
    return None


def _ns(value: Any) -> Any:
    """JSON → attribute access, so the SDK stream observers read parsed SSE lines too."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): _ns(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_ns(v) for v in value]
    return value


def _value_after(data: bytes, key: bytes, last: bool = False) -> Any:
    """The JSON value of the first (or last) `"key":` in a large body, without parsing it all."""
    at = data.rfind(key) if last else data.find(key)
    if at < 0:
        return None
    colon = data.find(b":", at + len(key))
    if colon < 0:
        return None
    text = data[colon + 1:colon + 1 + TAIL].decode("utf-8", "replace").lstrip()
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        return None


class WireCall(Call):
    """A call seen as bytes: `feed` runs per chunk on the caller's thread (cheap byte checks),
    `to_event` parses what was kept on the sender's thread."""

    __slots__ = ("request_body", "sse", "head", "tail", "size", "carry", "first_line", "usage_lines")

    def __init__(self, api: Api, config: HookConfig, request_body: bytes | None, stream: bool):
        super().__init__(api, config, current(), None, stream)
        self.request_body = request_body
        self.sse = stream
        self.head = b""
        self.tail = b""
        self.size = 0
        self.carry = b""
        self.first_line: bytes | None = None
        self.usage_lines: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        if self.ttft_ms is None and self.sse:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000.0
        if not self.sse:
            self.size += len(chunk)
            if len(self.head) < HEAD:
                self.head += chunk[:HEAD - len(self.head)]
            self.tail = (self.tail + chunk)[-TAIL:]
            return
        lines = (self.carry + chunk).split(b"\n")
        self.carry = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            if self.first_line is None:
                self.first_line = line
            if b'"usage"' in line:  # keep the first (Anthropic message_start) and the latest
                if len(self.usage_lines) == 2:
                    self.usage_lines[1] = line
                else:
                    self.usage_lines.append(line)

    def to_event(self) -> dict[str, Any]:
        try:
            self._parse()
        except Exception:
            log.debug("llmtray hooks: could not parse a response body", exc_info=True)
        if self.requested_model is None and self.request_body:
            self.requested_model = _value_after(self.request_body[:HEAD], b'"model"')
        return super().to_event()

    def _parse(self) -> None:
        if self.sse:
            observe = self.api.observe
            seen: set[int] = set()
            for line in ([self.first_line] if self.first_line else []) + self.usage_lines:
                if id(line) in seen or observe is None:
                    continue
                seen.add(id(line))
                payload = line[5:].strip()
                if payload and payload != b"[DONE]":
                    observe(self, _ns(json.loads(payload)))
            return
        if self.size <= HEAD + TAIL:  # head and tail together hold the whole body
            body = self.head + self.tail[-(self.size - HEAD):] if self.size > HEAD else self.head
            self.took_response(_ns(json.loads(body)))
            return
        self.model = _value_after(self.head, b'"model"') or _value_after(self.tail, b'"model"', last=True)
        self.request_id = _value_after(self.head, b'"id"')
        self.tier = _value_after(self.tail, b'"service_tier"', last=True)
        self.usage = _ns(_value_after(self.tail, b'"usage"', last=True))


# --- the byte-stream tees, one pair per HTTP library (httpx, httpx2) -------------------------

_tee_classes: dict[str, tuple[type, type]] = {}


def _tees(response: Any) -> tuple[type, type]:
    lib_name = type(response).__module__.split(".", 1)[0]
    if lib_name not in _tee_classes:
        lib = sys.modules[lib_name]

        class Tee(lib.SyncByteStream):  # type: ignore[name-defined,misc]
            def __init__(self, inner: Any, call: WireCall):
                self._inner = inner
                self._call = call

            def __iter__(self) -> Iterator[bytes]:
                call = self._call
                try:
                    for chunk in self._inner:
                        call.feed(chunk)
                        yield chunk
                except Exception as exc:
                    call.finish("interrupted", exc)
                    raise
                call.finish()

            def close(self) -> None:
                try:
                    self._inner.close()
                finally:
                    self._call.finish("abandoned")

        class AsyncTee(lib.AsyncByteStream):  # type: ignore[name-defined,misc]
            def __init__(self, inner: Any, call: WireCall):
                self._inner = inner
                self._call = call

            async def __aiter__(self) -> AsyncIterator[bytes]:
                call = self._call
                try:
                    async for chunk in self._inner:
                        call.feed(chunk)
                        yield chunk
                except Exception as exc:
                    call.finish("interrupted", exc)
                    raise
                call.finish()

            async def aclose(self) -> None:
                try:
                    await self._inner.aclose()
                finally:
                    self._call.finish("abandoned")

        _tee_classes[lib_name] = (Tee, AsyncTee)
    return _tee_classes[lib_name]


def _on_request(request: Any, config: HookConfig) -> None:
    try:
        if request.method != "POST":
            return
        api = _api_for(request.url.path)
        if api is None:
            return
        try:
            body = request.content
        except Exception:  # a streaming request body: no model from the request
            body = None
        request.extensions[KEY] = WireCall(api, config, body, False)
    except Exception:
        log.debug("llmtray hooks: httpx request hook failed", exc_info=True)


def _on_response(response: Any, asynchronous: bool) -> None:
    try:
        call = response.request.extensions.pop(KEY, None)
        if not isinstance(call, WireCall):
            return
        if response.status_code >= 400:
            call.finish(exc=_HTTPError(response))
            return
        call.sse = call.stream = "text/event-stream" in response.headers.get("content-type", "")
        tee, async_tee = _tees(response)
        response.stream = (async_tee if asynchronous else tee)(response.stream, call)
        weakref.finalize(response, call.finish, "abandoned").atexit = False
    except Exception:
        log.debug("llmtray hooks: httpx response hook failed", exc_info=True)


class _HTTPError(Exception):
    """How a provider's error status appears in the event's `error` field."""

    def __init__(self, response: Any):
        super().__init__(f"HTTP {response.status_code} {getattr(response, 'reason_phrase', '')}".strip())
        self.request_id = response.headers.get("x-request-id") or response.headers.get("request-id")


def httpx_hooks(provider: str, *, asynchronous: bool = False, feature: str | None = None, user: str | None = None,
                project: str | None = None, env: str | None = None,
                tags: Mapping[str, Any] | None = None) -> dict[str, list[Callable[..., Any]]]:
    """`event_hooks` for `httpx.Client` (or `httpx.AsyncClient` with `asynchronous=True`) that
    record every POST to `…/chat/completions`, `…/responses`, `…/embeddings`, `…/completions`
    and `…/messages` as a `provider` event: tokens from the response usage, OpenRouter's
    `usage.cost` as the reported cost, streams included.

        client = httpx.Client(base_url="https://openrouter.ai/api/v1",
                              event_hooks=lt.httpx_hooks(provider="openrouter"))
    """
    config = HookConfig(provider, make(feature, user, project, env, tags), False)
    if asynchronous:
        async def on_request_async(request: Any) -> None:
            _on_request(request, config)

        async def on_response_async(response: Any) -> None:
            _on_response(response, True)

        return {"request": [on_request_async], "response": [on_response_async]}

    def on_request(request: Any) -> None:
        _on_request(request, config)

    def on_response(response: Any) -> None:
        _on_response(response, False)

    return {"request": [on_request], "response": [on_response]}
