"""Content codings the metering proxy can read: it forwards compressed bytes untouched and
decompresses a copy for metering.

Why not ask upstreams for identity encoding: the client asked for compression and gets exactly
the bytes the provider sent (the streamed-bytes-equal guarantee), and the long link to the
provider keeps its compression. The price is that a coding we can't decode would hide the usage,
so `Accept-Encoding` is narrowed to the codings decoded here (gzip, deflate — stdlib zlib) before
it is forwarded; an upstream that answers with another coding anyway is still relayed, and its
event says the usage could not be read.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

READABLE = frozenset({"gzip", "x-gzip", "deflate", "identity"})
PIECE = 1 << 20  # decompress at most this much at a time: a small compressed body may expand hugely
# A gzip bomb (6,777 bytes of `gzip, gzip` → 4 GiB) must cost bounded time and memory: no provider
# stacks codings, and no answer whose usage we read decodes to more than this (usage sits at its end;
# a bigger one is relayed untouched, its event says the usage was unreadable).
MAX_LAYERS = 2
MAX_DECODED_BYTES = 128 * 1024 * 1024


class UnreadableCoding(Exception):
    """A content coding we can't decode (the body is relayed; only metering gives up)."""


class DecodedTooLarge(Exception):
    """The body decodes to more than `MAX_DECODED_BYTES` (a decompression bomb, or simply huge)."""


def narrow_accept_encoding(value: str) -> str | None:
    """The client's `Accept-Encoding` without codings we couldn't read (None when nothing is left,
    so the upstream falls back to identity)."""
    kept = [item.strip() for item in value.split(",")
            if item.split(";", 1)[0].strip().lower() in READABLE]
    return ", ".join(item for item in kept if item) or None


class _Zlib:
    """gzip or deflate; deflate may be zlib-wrapped (RFC 9110) or raw (what some servers send),
    told apart by the two-byte zlib header — so even one-byte chunks decode."""

    def __init__(self, gzip: bool, max_output: int):
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzip else None
        self._pending = b""
        self._left = max_output  # output bytes still allowed

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._z is None:
            self._pending += data
            if len(self._pending) < 2:
                return
            data, self._pending = self._pending, b""
            cmf, flg = data[0], data[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        yield self._counted(self._z.decompress(data, PIECE))
        while self._z.unconsumed_tail:
            yield self._counted(self._z.decompress(self._z.unconsumed_tail, PIECE))

    def _counted(self, piece: bytes) -> bytes:
        self._left -= len(piece)
        if self._left < 0:
            raise DecodedTooLarge(f"decodes to more than {MAX_DECODED_BYTES // 2**20} MiB")
        return piece


class Decoder:
    """Undo the codings of a `Content-Encoding` header, chunk by chunk."""

    def __init__(self, content_encoding: str | None, max_output: int = MAX_DECODED_BYTES):
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        self._stages: list[_Zlib] = []
        for coding in reversed(codings):  # applied in the order listed, so undone from the last
            if coding in ("gzip", "x-gzip"):
                self._stages.append(_Zlib(gzip=True, max_output=max_output))
            elif coding == "deflate":
                self._stages.append(_Zlib(gzip=False, max_output=max_output))
            elif coding != "identity":
                raise UnreadableCoding(coding)
        if len(self._stages) > MAX_LAYERS:
            raise UnreadableCoding(f"{len(self._stages)} stacked codings (at most {MAX_LAYERS} are decoded)")

    @property
    def active(self) -> bool:
        """Whether anything is to be decompressed (then decoding is worth moving off the loop)."""
        return bool(self._stages)

    def decode(self, data: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((data,))
        for stage in self._stages:
            pieces = _through(stage, pieces)
        return (p for p in pieces if p)


def _through(stage: _Zlib, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from stage.decode(piece)
