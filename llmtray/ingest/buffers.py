"""A bound on the request bodies the metering proxy holds in memory at once.

A recorded call's body is read whole before it is forwarded: the budget check needs its model,
which JSON writers often put after the messages. Other requests stream straight through. So
memory held for uploads is this budget, whatever local clients send: 16 concurrent 64 MiB
uploads get a `503` with `Retry-After` for the part over it instead of a gigabyte of heap.
"""

from __future__ import annotations

import asyncio

import ctypes
import ctypes.util
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

MIB = 1024 * 1024
TRIM_AFTER = 8 * MIB  # a body this large was held: give its pages back once nothing is held
TRIM_DELAY_S = 0.25


def _malloc_trim() -> Callable[[], object] | None:
    """glibc keeps freed heap pages (a body arrives in thousands of small pieces) unless asked to
    return them; without this the server kept ~120 MiB after 16 concurrent 64 MiB uploads ended."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and others: no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_TRIM = _malloc_trim()


class BuffersFull(Exception):
    """Reading this body would take the proxy over its budget (the call is refused, not sent)."""


class BodyBuffers:
    """Bytes held for request bodies by every request in flight (used on one event loop)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._trim_due = False  # a big body was held since the last trim

    @contextmanager
    def held(self) -> Iterator[Holding]:
        """A holding whose bytes count against the budget until the block ends."""
        holding = Holding(self)
        try:
            yield holding
        finally:
            self.used -= holding.size
            self._trim_due |= holding.size >= TRIM_AFTER
            if self._trim_due and self.used == 0 and _TRIM is not None:
                # Whichever request ends last (often one refused early, holding little), and a
                # moment later: the handler still holds the body it read until it returns. Before,
                # only a big body's own end trimmed, so when a refused upload finished last, two
                # 30 MiB bodies of six stayed with the process now and then.
                asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        if self._trim_due and self.used == 0 and _TRIM is not None:
            self._trim_due = False
            _TRIM()


class Holding:
    """One request's share of the budget."""

    def __init__(self, owner: BodyBuffers):
        self.owner = owner
        self.size = 0

    async def read(self, stream: AsyncIterator[bytes] | None) -> bytes:
        """The whole body, or `BuffersFull` as soon as it would not fit."""
        if stream is None:
            return b""
        pieces: list[bytes] = []
        owner = self.owner
        async for piece in stream:
            if owner.used + len(piece) > owner.limit:
                raise BuffersFull(f"request bodies held for metering would exceed {owner.limit // MIB} MiB; "
                                  "retry shortly")
            owner.used += len(piece)
            self.size += len(piece)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
