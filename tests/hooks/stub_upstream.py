"""A local stand-in for the OpenAI and Anthropic APIs: real HTTP, real SSE, bodies shaped as documented.

The real `openai` / `anthropic` SDKs are pointed at it with `base_url`. Response bodies and
stream events follow FORMATS.md and the providers' API references (field order, `usage: null`
on chat chunks, the final `choices: []` chunk with `stream_options.include_usage`, Responses'
`response.completed`, Anthropic's `message_start` / `ping` / `message_delta` with cumulative
output). The requested model picks a scenario:

- `fail-500` → HTTP 500 in the provider's error format;
- `malformed-usage` → a usage block with a string where a count belongs;
- `cutoff` → a stream that dies mid-way (chunked body never terminated);
- anything else → a normal answer; known aliases come back as the dated snapshot the API reports.

Paths: `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/completions`,
`/v1/messages`, Azure's `/openai/deployments/<name>/chat/completions`, and an OpenRouter flavour
under `/openrouter/v1/...` that adds `usage.cost`. Usage numbers come from `USAGE`, so tests
state their expectations from the same published shapes.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "o3-mini": "o3-mini-2025-01-31",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
}

# What the stub reports, per API (provider conventions, before llmtray's normalisation).
USAGE: dict[str, dict[str, Any]] = {
    "chat": {
        "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    },
    "chat_reasoning": {
        "prompt_tokens": 75, "completion_tokens": 1186, "total_tokens": 1261,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 1024, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    },
    "responses": {
        "input_tokens": 2036, "input_tokens_details": {"cached_tokens": 1920},
        "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2123,
    },
    "embeddings": {"prompt_tokens": 8, "total_tokens": 8},
    "messages": {
        "input_tokens": 12, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 15, "server_tool_use": None, "service_tier": "standard",
    },
}
OPENROUTER_COST = 0.00123456  # usage.cost: USD OpenRouter says it charged


def _model(requested: str) -> str:
    return SNAPSHOTS.get(requested, requested)


def _chat_usage(model: str, body: dict[str, Any]) -> dict[str, Any]:
    usage = dict(USAGE["chat_reasoning"] if model.startswith("o3") else USAGE["chat"])
    if body.get("model") == "malformed-usage":
        usage["prompt_tokens"] = "lots"
    return usage


class StubUpstream:
    """Serve on 127.0.0.1:<free port> until `close()`; `requests` lists (path, body) received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(_Handler):
            upstream = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-upstream", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    upstream: StubUpstream
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # --- plumbing --------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _sse(self, data: Any, event: str | None = None) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        self._chunk((f"event: {event}\n" if event else "") + f"data: {payload}\n\n")

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Die mid-body: the chunked stream is never terminated."""
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)

    # --- routing ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?", 1)[0]
        self.upstream.requests.append((path, body))
        flavour = "openrouter" if path.startswith("/openrouter/") else None
        requested = str(body.get("model", ""))
        anthropic = path.endswith("/v1/messages")
        if requested == "fail-500":
            return self._fail(anthropic)
        if path.endswith("/chat/completions"):
            return self._chat(body, flavour)
        if path.endswith("/responses"):
            return self._responses(body)
        if path.endswith("/embeddings"):
            return self._embeddings(body)
        if anthropic:
            return self._messages(body)
        self._json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

    def _fail(self, anthropic: bool) -> None:
        if anthropic:
            self._json(500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
                       {"request-id": "req_011CStubFail500"})
        else:
            self._json(500, {"error": {"message": "The server had an error while processing your request.",
                                       "type": "server_error", "param": None, "code": None}},
                       {"x-request-id": "req_stubfail500"})

    # --- OpenAI Chat Completions -----------------------------------------------------------

    def _chat(self, body: dict[str, Any], flavour: str | None) -> None:
        model = _model(str(body.get("model")))
        usage = _chat_usage(model, body)
        if flavour == "openrouter":
            usage = {**usage, "cost": OPENROUTER_COST,
                     "cost_details": {"upstream_inference_cost": None}}
        base = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "created": 1741570283, "model": model}
        if not body.get("stream"):
            return self._json(200, {
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?",
                                                     "refusal": None, "annotations": []},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_06737a9306",
            })
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk = {**base, "object": "chat.completion.chunk", "service_tier": "default",
                 "system_fingerprint": "fp_06737a9306"}
        self._start_stream()
        deltas = [{"role": "assistant", "content": "", "refusal": None}, {"content": "Hello"}, {"content": "!"},
                  {"content": " How"}, {"content": " can I help?"}]
        for i, delta in enumerate(deltas):
            self._sse({**chunk, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
                       "usage": None})
            if i == 2 and body.get("model") == "cutoff":
                return self._cut()
        self._sse({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                   "usage": None})
        if include_usage:
            self._sse({**chunk, "choices": [], "usage": usage})
        self._sse("[DONE]")
        self._end_stream()

    # --- OpenAI Responses --------------------------------------------------------------------

    def _response_obj(self, model: str, status: str, usage: dict[str, Any] | None, text: str) -> dict[str, Any]:
        output = [] if status == "in_progress" else [{
            "type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }]
        return {
            "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
            "created_at": 1741476542, "status": status, "background": False, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": None, "model": model,
            "output": output, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": None, "metadata": {},
        }

    def _responses(self, body: dict[str, Any]) -> None:
        model = _model(str(body.get("model")))
        usage = dict(USAGE["responses"])
        text = "In a quiet lab, a robot learned to paint."
        if not body.get("stream"):
            return self._json(200, self._response_obj(model, "completed", usage, text))
        self._start_stream()
        seq = iter(range(100))
        item_id = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b"
        part = {"type": "output_text", "annotations": [], "text": "", "logprobs": []}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": self._response_obj(model, "in_progress", None, "")}),
            ("response.in_progress", {"response": self._response_obj(model, "in_progress", None, "")}),
            ("response.output_item.added", {"output_index": 0, "item": {
                "id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
            ("response.content_part.added", {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        ]
        for word in ("In a quiet lab,", " a robot", " learned to paint."):
            events.append(("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                          "delta": word, "logprobs": []}))
        events += [
            ("response.output_text.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                           "text": text, "logprobs": []}),
            ("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                            "part": {**part, "text": text}}),
            ("response.output_item.done", {"output_index": 0, "item": {
                "id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [{**part, "text": text}]}}),
            ("response.completed", {"response": self._response_obj(model, "completed", usage, text)}),
        ]
        for i, (kind, data) in enumerate(events):
            self._sse({"type": kind, "sequence_number": next(seq), **data}, event=kind)
            if i == 5 and body.get("model") == "cutoff":
                return self._cut()
        self._end_stream()

    # --- OpenAI Embeddings -------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        vector = [0.0023064255, -0.009327292, 0.015797347, -0.0077780345]
        as_base64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector}
                for i in range(count)]
        self._json(200, {"object": "list", "data": data, "model": _model(str(body.get("model"))),
                         "usage": USAGE["embeddings"]})

    # --- Anthropic Messages ------------------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> None:
        model = _model(str(body.get("model")))
        usage = dict(USAGE["messages"])
        if body.get("model") == "malformed-usage":
            usage["cache_read_input_tokens"] = -3
        message = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model}
        if not body.get("stream"):
            return self._json(200, {**message, "content": [{"type": "text", "text": "Hello! How can I help?"}],
                                    "stop_reason": "end_turn", "stop_sequence": None, "usage": usage},
                              {"request-id": "req_011CStubMessage"})
        self._start_stream()
        start_usage = {**usage, "output_tokens": 1}
        self._sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                        "stop_sequence": None, "usage": start_usage}},
                  event="message_start")
        self._sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  event="content_block_start")
        self._sse({"type": "ping"}, event="ping")
        for i, text in enumerate(("Hello", "! How", " can I help?")):
            self._sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
                      event="content_block_delta")
            if i == 1 and body.get("model") == "cutoff":
                return self._cut()
        self._sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}
        self._sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": delta_usage}, event="message_delta")
        self._sse({"type": "message_stop"}, event="message_stop")
        self._end_stream()
