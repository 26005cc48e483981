"""Fixtures for the ingest tests: the real service on an ephemeral port over a real data dir,
plus a raw-socket client for requests no well-behaved HTTP library would send."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtray.config import Config
from llmtray.ingest.service import IngestService
from llmtray.ingest.messages import Limits
from llmtray.paths import Paths

FAST_LIMITS = Limits(header_timeout=5.0, body_timeout=5.0, shutdown_grace=2.0, linger=1.0)


def _ours() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("llmtray-")}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every writer, loop, worker and checkpoint thread a test started is gone when it ends."""
    before = _ours()
    yield
    leaked = {t.name for t in _ours() - before if t.is_alive()}
    assert not leaked, f"threads left running: {sorted(leaked)}"


def build_service(data: Path, limits: Limits = FAST_LIMITS, **kwargs: Any) -> IngestService:
    """A service on an ephemeral port over `data`, not started (mount or add listeners first)."""
    return IngestService(Paths(data, data, data), Config(), port=0, limits=limits, **kwargs)


def started(service: IngestService) -> IngestService:
    service.start()
    assert service.wait_ready(30)
    return service


def make_service(data: Path, limits: Limits = FAST_LIMITS, **kwargs: Any) -> IngestService:
    return started(build_service(data, limits, **kwargs))


@pytest.fixture
def service(data_dir: Path) -> Iterator[IngestService]:
    s = make_service(data_dir)
    yield s
    s.stop()


@pytest.fixture
def client(service: IngestService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.token}"},
                      timeout=30) as c:
        yield c


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    base = {"id": f"ev-{i}", "provider": "openai", "model": "gpt-4o-mini", "ts": "2026-01-02T10:00:00Z",
            "input_tokens": 1000 + i, "output_tokens": 100}
    base.update(fields)
    return base


def count_events(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM event").fetchone()[0]
    finally:
        conn.close()


def stored_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT event_id FROM event")}
    finally:
        conn.close()


@dataclass
class RawReply:
    status: int | None  # None: the server closed without answering
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Replies:
    """Reads HTTP responses one by one from a raw socket (keeps bytes of the next one)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return b""

    def next(self) -> RawReply:
        while b"\r\n\r\n" not in self.buf:
            data = self._recv()
            if not data:
                return RawReply(None, {}, self.buf)
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            data = self._recv()
            if not data:
                break
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        return RawReply(status, headers, body)


def read_reply(sock: socket.socket) -> RawReply:
    """One HTTP response from a raw socket on which exactly one is expected."""
    return Replies(sock).next()


def raw(port: int, data: bytes, *, timeout: float = 10.0) -> RawReply:
    """Send bytes as they are, then read one reply (the upload may be cut short by the server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_reply(sock)


def post_bytes(body: bytes, token: str | None, *, content_type: str | None = "application/json",
               extra: str = "", path: str = "/v1/events", method: str = "POST") -> bytes:
    """A raw request with a correct Content-Length unless `extra` says otherwise."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if "content-length" not in extra.lower() and "transfer-encoding" not in extra.lower():
        lines.append(f"Content-Length: {len(body)}")
    if extra:
        lines.extend(extra.strip("\r\n").split("\r\n"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
