"""One HTTP seam to the ingest server, stdlib `http.client`, with answers sorted by what to do next.

aw-client lost events because it judged failures by the truthiness of a response object
(STYLE §7). Here every outcome is a distinct type decided by exception type and status code:
`Delivered` (200), `Rejected` (400: the server named the bad events), `TooLarge` (413: split),
`Retry` (no server, connection errors, timeouts, 5xx, 503/429 with `Retry-After`, 401 — after
which the token is looked up again — and other 4xx that mean a misconfigured URL: the events
are kept, never dropped).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from llmtray.hooks.endpoint import Endpoint


@dataclass(frozen=True)
class Delivered:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class Rejected:
    """400: `errors` are the server's `{"index", "field", "message"}` entries."""

    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TooLarge:
    pass


@dataclass(frozen=True)
class Retry:
    reason: str
    retry_after: float | None = None
    auth: bool = False  # 401: look the token up again before the next try


Outcome = Delivered | Rejected | TooLarge | Retry


class Connection:
    """A keep-alive connection to one endpoint, used by one thread at a time."""

    def __init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._target: tuple[str, int, bool] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """After fork: drop the parent's socket object without touching the shared connection."""
        self._conn = None

    def request(self, endpoint: Endpoint, method: str, path: str, body: bytes | None,
                timeout: float) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request; a stale kept-alive connection is retried once on a fresh one."""
        target = endpoint.host_port
        if self._target != target:
            self.close()
            self._target = target
        headers = {"Accept": "application/json", "X-LLMTray-Source": "hook"}
        if endpoint.token:
            headers["Authorization"] = f"Bearer {endpoint.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                cls = http.client.HTTPSConnection if target[2] else http.client.HTTPConnection
                self._conn = cls(target[0], target[1], timeout=timeout)
            conn = self._conn
            assert conn is not None
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                self.close()
                if fresh or attempt:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            return resp.status, resp.headers, data
        raise AssertionError("unreachable")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _retry_after(headers: http.client.HTTPMessage) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def post_events(conn: Connection, endpoint: Endpoint | None, events: list[dict[str, Any]], timeout: float) -> Outcome:
    """POST one batch to `/v1/events` and classify the answer."""
    if endpoint is None:
        return Retry("no llmtray running (no LLMTRAY_URL and no ingest.json)")
    body = json.dumps({"events": events}, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        status, headers, data = conn.request(endpoint, "POST", "/v1/events", body, timeout)
    except (OSError, http.client.HTTPException) as exc:
        return Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    answer = _json(data)
    if status == 200:
        if isinstance(answer, dict):
            return Delivered(int(answer.get("accepted", len(events)) or 0), int(answer.get("duplicates", 0) or 0))
        return Delivered(len(events), 0)
    message = answer.get("error") if isinstance(answer, dict) else None
    message = str(message) if message else data[:300].decode("utf-8", "replace") or f"HTTP {status}"
    if status == 400:
        errors = answer.get("errors") if isinstance(answer, dict) else None
        return Rejected(message, [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [])
    if status == 401:
        return Retry(f"401 {message}", auth=True)
    if status == 413:
        return TooLarge()
    return Retry(f"{status} {message}", _retry_after(headers) if status in (429, 503) else None)


def get_json(conn: Connection, endpoint: Endpoint, path: str, params: dict[str, Any],
             timeout: float) -> tuple[int, Any]:
    """GET with a query string; raises OSError / HTTPException when the server can't be reached."""
    query = urlencode(params, doseq=True)
    status, _headers, data = conn.request(endpoint, "GET", f"{path}?{query}" if query else path, None, timeout)
    return status, _json(data)
