"""Raw HTTP/1.1 exchanges for the fuzz tests: bytes out exactly as built (headers no library would
send, chunked framing, pipelining), replies read back including interim `100 Continue`s."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tests.ingest.conftest import RawReply, Replies

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Exchange:
    """One request as bytes on the wire; `chunks` splits the body into chunked-coding pieces."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunks: list[int] | None = None  # chunk sizes; None: Content-Length framing
    declared_length: int | None = None  # a Content-Length other than len(body) (an upload cut short)

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}", *(f"{k}: {v}" for k, v in self.headers)]
        if self.chunks is None:
            length = self.declared_length if self.declared_length is not None else len(self.body)
            lines.append(f"Content-Length: {length}")
            payload = self.body
        else:
            lines.append("Transfer-Encoding: chunked")
            payload = chunked(self.body, self.chunks)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """`body` in chunks of the given sizes (the last chunk takes the rest), then the end chunk."""
    out, pos = bytearray(), 0
    for size in sizes:
        piece = body[pos:pos + size]
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos += len(piece)
    if pos < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:])
    return bytes(out + b"0\r\n\r\n")


def final_reply(replies: Replies) -> RawReply:
    """The next final (non-1xx) reply."""
    while True:
        reply = replies.next()
        if reply.status is None or reply.status >= 200:
            return reply


def exchange(port: int, data: bytes, *, then: bytes = b"", timeout: float = 20.0, host: str = "127.0.0.1",
             source: str | None = None) -> tuple[RawReply, RawReply | None]:
    """Send `data` (and `then`, pipelined in the same write) to `host`:`port`, from the local
    address `source` if given, and read the reply to each. The second is None when the server
    closed the connection after the first."""
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        try:
            sock.sendall(data + then)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early and hung up; its reply is still readable
        replies = Replies(sock)
        first = final_reply(replies)
        if not then:
            return first, None
        second = final_reply(replies)
        return first, second if second.status is not None else None


def health(port: int) -> int | None:
    return exchange(port, HEALTH)[0].status
