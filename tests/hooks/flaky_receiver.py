"""A misbehaving ingest endpoint for the sender's error classification: answers from a script of
status codes (503 with Retry-After, 500, 413 for large batches…), then 200. The real ingest
service can't be made to fail on cue; everything else in the delivery tests uses it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FlakyReceiver:
    """`script(events) -> (status, body, headers)` decides each answer; `accepted` collects event ids
    from the requests answered 200, in order."""

    def __init__(self, script: Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any], dict[str, str]]]):
        self.script = script
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                events = body["events"]
                status, answer, headers = receiver.script(events)
                receiver.statuses.append(status)
                if status == 200:
                    receiver.accepted.extend(e["id"] for e in events)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="flaky-receiver", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
