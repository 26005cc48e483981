"""Reading a response body on the side, in bounded memory: server-sent events and clipped bytes.

The metering proxy forwards every byte as it arrives and only *looks* at the stream, so it can't
use an SSE client library (they consume the stream and hold what they like). Here the caller
feeds the same chunks it forwards and gets complete events back. Memory stays bounded whatever
the upstream sends: a partial line and the current event are kept, and anything larger than the
limit keeps only its head and its tail — usage always sits at the end of the large payloads that
carry it (Responses' `response.completed` event, a JSON body full of embeddings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_EVENT_BYTES = 1 << 20  # held per event (head + tail); larger events are clipped in the middle
_EOL = re.compile(rb"\r\n|\r|\n")  # the three line ends the SSE spec allows


class Clip:
    """Bytes appended without limit, of which only the first and last `keep` bytes are held."""

    __slots__ = ("keep", "head", "tail", "size")

    def __init__(self, keep: int):
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.keep:
                del self.tail[:len(self.tail) - self.keep]

    @property
    def clipped(self) -> bool:
        """Whether bytes were dropped from the middle (head and tail no longer join up)."""
        return self.size > len(self.head) + len(self.tail)

    def whole(self) -> bytes:
        """Everything added; only meaningful when not `clipped`."""
        return bytes(self.head + self.tail)

    def clear(self) -> None:
        self.head.clear()
        self.tail.clear()
        self.size = 0


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its type (`message` when the stream named none) and data lines
    joined by newlines. A `clipped` event holds only the head and tail of its data."""

    event: str
    data: bytes
    clipped: bool = False


class SseParser:
    """Incremental `text/event-stream` parser: `feed(chunk)` returns the events it completed."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES):
        self._line = Clip(max_event_bytes // 2)  # a line not yet ended
        self._data = Clip(max_event_bytes // 2)  # data lines of the event being read
        self._has_data = False
        self._clipped = False
        self._event = ""
        self._after_cr = False  # the last chunk ended with CR: a leading LF completes that line end

    def feed(self, chunk: bytes) -> list[SseEvent]:
        events: list[SseEvent] = []
        pos = 1 if self._after_cr and chunk[:1] == b"\n" else 0
        for m in _EOL.finditer(chunk, pos):
            piece = chunk[pos:m.start()]
            if self._line.size:
                self._line.add(piece)
                self._take_line(self._line.whole() if not self._line.clipped else self._clipped_line(), events)
                self._line.clear()
            else:
                self._take_line(piece, events)
            pos = m.end()
        self._after_cr = chunk[-1:] == b"\r"
        if pos < len(chunk):
            self._line.add(memoryview(chunk)[pos:])
        return events

    def finish(self) -> list[SseEvent]:
        """The stream ended: dispatch what is pending even without its closing blank line (the
        spec drops it, but a usage event is worth keeping from a server that forgets the blank)."""
        events: list[SseEvent] = []
        if self._line.size:
            self._take_line(self._line.whole() if not self._line.clipped else self._clipped_line(), events)
            self._line.clear()
        self._take_line(b"", events)
        return events

    def _clipped_line(self) -> bytes:
        self._clipped = True
        return bytes(self._line.head + self._line.tail)

    def _take_line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:
            if self._has_data:
                data = self._data.whole() if not self._data.clipped else bytes(self._data.head + self._data.tail)
                events.append(SseEvent(self._event or "message", data, self._clipped or self._data.clipped))
            self._data.clear()
            self._has_data = self._clipped = False
            self._event = ""
            return
        if line[:1] == b":":  # a comment (keep-alive)
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if self._has_data:
                self._data.add(b"\n")
            self._data.add(value)
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
