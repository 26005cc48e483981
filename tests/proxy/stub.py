"""A local stand-in for the providers the proxy forwards to: real HTTP/1.1, real chunked SSE.

It records every request exactly as it arrived (method, raw target, headers with their case,
body bytes) and every response body exactly as it wrote it (after compression, before chunk
framing), so tests compare what the client got through the proxy byte for byte. Bodies follow
FORMATS.md and the providers' references: OpenAI chat (with the `choices: []` usage chunk when
`stream_options.include_usage`), Responses (`response.completed`), Anthropic (`message_start`,
`ping`, cumulative `message_delta`), Gemini (`usageMetadata` per chunk), OpenRouter (`usage.cost`).

The requested model picks a scenario: `fail-<status>` (an error in the provider's shape),
`stall-headers` / `stall-stream` (wait on `release` before answering / mid-stream), `cut` (the
connection dies mid-stream), `gated` (the first event, then wait on `gate`), `endless` (events
until a write fails, then set `abandoned`), `br` (a body labelled Content-Encoding: br),
`hang-up` (a JSON answer, then the connection closed without `Connection: close`).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4.1": "gpt-4.1-2025-04-14",
             "claude-sonnet-4-0": "claude-sonnet-4-20250514", "gemini-2.5-flash": "gemini-2.5-flash",
             "text-embedding-3-small": "text-embedding-3-small"}

# What the stub reports, in each provider's own convention (tests normalise by hand).
USAGE: dict[str, dict[str, Any]] = {
    "chat": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
             "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "responses": {"input_tokens": 2036, "input_tokens_details": {"cached_tokens": 1920},
                  "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 2123},
    "embeddings": {"prompt_tokens": 8, "total_tokens": 8},
    "messages": {"input_tokens": 12, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 3000,
                 "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
                 "output_tokens": 15, "service_tier": "standard"},
    "gemini": {"promptTokenCount": 1200, "candidatesTokenCount": 150, "thoughtsTokenCount": 300,
               "cachedContentTokenCount": 1024, "totalTokenCount": 1650},
}
OPENROUTER_COST = 0.00123456
TEXT = ["Hel", "lo", "! How", " can I", " help?"]
_messages_sent = itertools.count(1)


def next_message_id() -> str:
    """A fresh Anthropic message id per response, as the API gives (the proxy keys calls by it)."""
    return f"msg_01XFDUDYJgAACzvn{next(_messages_sent):08d}"


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: int = 0  # the client's port: one per connection the proxy opened

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


class StubUpstream:
    """Serves on 127.0.0.1:<free port> until `close()`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.sent: list[bytes] = []
        self.gate = threading.Event()
        self.release = threading.Event()
        self.abandoned = threading.Event()
        self.compress = False  # gzip bodies when the request accepts gzip
        self._lock = threading.Lock()
        stub = self

        class Handler(_Handler):
            upstream = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = False  # server_close() joins every handler thread: nothing leaks
        self._server.handle_error = lambda request, address: None  # a proxy that hung up is a scenario here
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="proxy-stub",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def last(self) -> Received:
        with self._lock:
            return self.received[-1]

    def close(self) -> None:
        self.gate.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def provider_error(path: str, status: int, message: str) -> dict[str, Any]:
    if path.endswith("/messages"):
        return {"type": "error", "error": {"type": "overloaded_error" if status >= 500 else "invalid_request_error",
                                           "message": message}}
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return {"error": {"code": status, "message": message, "status": "INTERNAL"}}
    return {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    upstream: StubUpstream
    protocol_version = "HTTP/1.1"
    timeout = 20  # a keep-alive connection the proxy forgot can't pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- writing ------------------------------------------------------------------------------

    def _gzip(self) -> bool:
        return self.upstream.compress and "gzip" in (self.headers.get("Accept-Encoding") or "")

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "x-request-id": "req_stub_123", **(extra or {})}
        if self._gzip():
            data = zlib.compress(data, wbits=31)
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        self._record(data)  # before the write: a fast proxy's client may look at once
        self.wfile.write(data)

    def _record(self, data: bytes) -> None:
        with self.upstream._lock:
            self.upstream.sent.append(data)

    def _stream(self, events: list[tuple[str | None, Any]], model: str) -> None:
        """Write SSE events (name, data) chunk by chunk, acting out the model's scenario."""
        gz = zlib.compressobj(wbits=31) if self._gzip() else None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", "req_stub_123")
        if gz is not None:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        body = bytearray()
        recorded = False

        def chunk(data: bytes) -> None:
            if gz is not None:
                data = gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)
            body.extend(data)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def event(name: str | None, data: Any) -> bytes:
            text = data if isinstance(data, str) else json.dumps(data)
            return ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()

        try:
            for i, (name, data) in enumerate(events):
                chunk(event(name, data))
                if i == 0 and model == "gated":
                    self.upstream.gate.wait(20)
                if i == 0 and model == "stall-stream":
                    self.upstream.release.wait(20)
                    return
                if i == 1 and model == "cut":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if i == 0 and model == "endless":
                    for _ in range(2000):  # ~20 s at most
                        chunk(b": keep-alive\n\n")
                        if self.upstream.release.wait(0.01):
                            break
                    return
            tail = gz.flush(zlib.Z_FINISH) if gz is not None else b""
            body.extend(tail)
            self._record(bytes(body))  # before the last bytes: a fast proxy's client may look at once
            recorded = True
            if tail:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.upstream.abandoned.set()
            self.close_connection = True
        finally:
            if not recorded:
                self._record(bytes(body))

    # --- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._receive(b"")
        self._send_json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._receive(body)
        path = self.path.split("?", 1)[0]
        request = json.loads(body) if body.startswith(b"{") else {}
        model = request.get("model") or path.rpartition("/models/")[2].partition(":")[0]
        if model.startswith("fail-"):
            status = int(model[5:])
            return self._send_json(status, provider_error(path, status, f"stub says {status}"))
        if model == "stall-headers":
            self.upstream.release.wait(20)
            return self._send_json(200, {})
        if model == "hang-up":
            self.close_connection = True  # closed after this answer, unannounced (as an idle timeout does)
            return self._chat(request, model, cost=False)
        if model == "br":
            return self._send_raw(b"\x1b\x00\xf8\xa5@\x02", {"Content-Type": "application/json",
                                                           "Content-Encoding": "br"})
        if path.endswith("/chat/completions"):
            return self._chat(request, model, cost=path.startswith("/api/"))
        if path.endswith("/responses"):
            return self._responses(request, model)
        if path.endswith("/embeddings"):
            return self._embeddings(request, model)
        if path.endswith("/messages"):
            return self._messages(request, model)
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self._gemini(model, stream=":streamGenerateContent" in path)
        self._send_json(404, provider_error(path, 404, f"no route {path}"))

    def _receive(self, body: bytes) -> None:
        with self.upstream._lock:
            self.upstream.received.append(Received(self.command, self.path, list(self.headers.items()), body,
                                                   self.client_address[1]))

    def _send_raw(self, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._record(data)
        self.wfile.write(data)

    # --- the APIs -----------------------------------------------------------------------------

    def _chat(self, request: dict[str, Any], model: str, *, cost: bool) -> None:
        reported = SNAPSHOTS.get(model, model)
        usage = dict(USAGE["chat"])
        if cost:
            usage["cost"] = OPENROUTER_COST
            usage["cost_details"] = {"upstream_inference_cost": None}
        base = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "created": 1741569952, "model": reported,
                "service_tier": "default", "system_fingerprint": "fp_06737a9306"}
        if not request.get("stream"):
            return self._send_json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(TEXT), "refusal": None,
                                         "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage})
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, Any]] = [(None, {**chunk, "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
             "finish_reason": None}], "usage": None})]
        events += [(None, {**chunk, "choices": [{"index": 0, "delta": {"content": t}, "logprobs": None,
                                                 "finish_reason": None}], "usage": None}) for t in TEXT]
        events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                    "finish_reason": "stop"}], "usage": None}))
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        self._stream(events, model)

    def _responses(self, request: dict[str, Any], model: str) -> None:
        response = {"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
                    "created_at": 1741476542, "status": "in_progress", "error": None, "model":
                    SNAPSHOTS.get(model, model), "output": [], "service_tier": "default", "usage": None}
        done = {**response, "status": "completed", "usage": USAGE["responses"], "output": [
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "".join(TEXT), "annotations": []}]}]}
        if not request.get("stream"):
            return self._send_json(200, done)
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": response}),
            ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": response})]
        events += [("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2 + i,
                                                   "item_id": "msg_1", "output_index": 0, "content_index": 0,
                                                   "delta": t}) for i, t in enumerate(TEXT)]
        events.append(("response.completed", {"type": "response.completed", "sequence_number": 9, "response": done}))
        self._stream(events, model)

    def _embeddings(self, request: dict[str, Any], model: str) -> None:
        inputs = request.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        dims = int(request.get("dimensions") or 8)
        self._send_json(200, {"object": "list", "data": [
            {"object": "embedding", "index": i, "embedding": [0.0123456789] * dims} for i in range(n)],
            "model": SNAPSHOTS.get(model, model), "usage": USAGE["embeddings"]})

    def _messages(self, request: dict[str, Any], model: str) -> None:
        reported = SNAPSHOTS.get(model, model)
        usage = USAGE["messages"]
        message = {"id": next_message_id(), "type": "message", "role": "assistant", "model": reported,
                   "stop_reason": None, "stop_sequence": None}
        if not request.get("stream"):
            return self._send_json(200, {**message, "content": [{"type": "text", "text": "".join(TEXT)}],
                                         "stop_reason": "end_turn", "usage": usage},
                                   {"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": {**message, "content": [], "usage": start_usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": t}}) for t in TEXT]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                         "stop_sequence": None},
                                      "usage": {"input_tokens": 12, "cache_creation_input_tokens": 1500,
                                                "cache_read_input_tokens": 3000, "output_tokens": 15}}),
                   ("message_stop", {"type": "message_stop"})]
        self._stream(events, model)

    def _gemini(self, model: str, *, stream: bool) -> None:
        final = USAGE["gemini"]
        base = {"modelVersion": SNAPSHOTS.get(model, model), "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"}
        if not stream:
            return self._send_json(200, {"candidates": [{"content": {"parts": [{"text": "".join(TEXT)}],
                                                                     "role": "model"}, "finishReason": "STOP",
                                                         "index": 0}], "usageMetadata": final, **base})
        events: list[tuple[str | None, Any]] = []
        for i, t in enumerate(TEXT):
            last = i == len(TEXT) - 1
            usage = final if last else {"promptTokenCount": 1200, "totalTokenCount": 1200 + i,
                                        "cachedContentTokenCount": 1024}
            candidate: dict[str, Any] = {"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            events.append((None, {"candidates": [candidate], "usageMetadata": usage, **base}))
        self._stream(events, model)
