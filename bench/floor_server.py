"""The least an ingest server with the issue's shape can do, to put bench/ingest.py's figures in scale.

It keeps only what #3 requires of the shape: HTTP/1.1 keep-alive on loopback, the body decoded
with `json.loads`, the rows written by one writer thread that owns the connection, and a `200`
only after the COMMIT (acknowledged means durable). Everything llmtray adds is left out: no
auth, no validation, no pricing, no rollups, no indexes (a bare 10-column table). Whatever this
reaches on a machine, llmtray cannot beat there; `--inline` commits on the event loop instead,
to show what the hand-off to the writer thread costs by itself; `--aiohttp` serves the same
shape with aiohttp's low-level server (what llmtray's server is built on), to show what the
HTTP library costs by itself.

    python bench/floor_server.py DB PORT_FILE [--inline | --aiohttp]
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
_FIELDS = ("id", "ts", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens", "feature",
           "user", "latency_ms")


class _Writer:
    """One connection, used by one thread only (the executor has a single worker)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = wal")
        self.conn.execute("PRAGMA synchronous = normal")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS event ({', '.join(_FIELDS)})")
        self.sql = f"INSERT INTO event VALUES ({', '.join('?' * len(_FIELDS))})"

    def store(self, body: bytes) -> None:
        items = json.loads(body)
        if isinstance(items, dict):
            items = items.get("events", [items])
        rows = [[e.get(f) for f in _FIELDS] for e in items]
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.sql, rows)
        self.conn.execute("COMMIT")


class _Http(asyncio.Protocol):
    def __init__(self, writer: _Writer, thread: ThreadPoolExecutor | None) -> None:
        self.writer, self.thread, self.buf = writer, thread, bytearray()
        self.transport: asyncio.Transport | None = None
        self.replies: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self._answer(body)

    def _answer(self, body: bytes) -> None:
        assert self.transport is not None
        if not body:
            self.transport.write(_OK)
        elif self.thread is None:
            self.writer.store(body)
            self.transport.write(_OK)
        else:  # replies leave in request order, each after its own commit
            done = asyncio.get_running_loop().run_in_executor(self.thread, self.writer.store, body)
            before, transport = self.replies, self.transport

            async def reply() -> None:
                if before is not None:
                    await before
                await done
                transport.write(_OK)

            self.replies = asyncio.ensure_future(reply())


def _aiohttp_server(writer: _Writer, thread: ThreadPoolExecutor, loop: asyncio.AbstractEventLoop) -> object:
    """The same shape on aiohttp.web.Server: a trivial handler, the commit on the writer thread."""
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        if body:
            await asyncio.get_running_loop().run_in_executor(thread, writer.store, body)
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    return web.Server(handle, access_log=None, loop=loop)


def main() -> None:
    db, port_file, inline = Path(sys.argv[1]), Path(sys.argv[2]), "--inline" in sys.argv[3:]
    writer = _Writer(db)
    thread = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="floor-writer")
    loop = asyncio.new_event_loop()
    if "--aiohttp" in sys.argv[3:]:
        assert thread is not None
        factory = _aiohttp_server(writer, thread, loop)
    else:
        factory = lambda: _Http(writer, thread)  # noqa: E731
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    loop.run_forever()


if __name__ == "__main__":
    main()
