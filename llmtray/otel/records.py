"""OTLP records in one neutral shape, whichever encoding they arrived in.

Protobuf and OTLP/JSON decode into the same `Record`s, so the emitter mappings (`emitters.py`)
are written once and a JSON payload and its protobuf twin are guaranteed to give the same
events. Attribute values are plain Python (str, int, float, bool, list, dict, bytes); ids are
lower-case hex, the way OTLP/JSON writes them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

SPAN, LOG, METRIC = "span", "log", "metric"


class OtlpDecodeError(ValueError):
    """The body is not a valid OTLP export request; the message says what and where."""


@dataclass(slots=True)
class Record:
    """One span, log record or metric data point with its resource and scope."""

    signal: str  # SPAN, LOG or METRIC
    resource: dict[str, Any]
    scope: str
    name: str  # span name, log event name (eventName, `event.name` or a string body), metric name
    attrs: dict[str, Any]
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    start_ns: int = 0
    end_ns: int = 0  # a log's time; a span's end
    status_code: int = 0  # spans: 0 unset, 1 ok, 2 error
    status_message: str = ""
    kind: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # metrics: value, temporality, start

    @property
    def where(self) -> str:
        """How an error message names this record."""
        ident = f" {self.span_id}" if self.span_id else ""
        return f"{self.signal} {self.name!r}{ident}"


@dataclass(slots=True)
class Export:
    """A decoded export request: its records and how many items of each signal it carried."""

    signal: str
    records: list[Record]

    @property
    def count(self) -> int:
        return len(self.records)


class RecentIds:
    """A set that forgets its oldest members past `capacity` (the receiver's memory of span ids
    across batches must not grow with every span ever received)."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._items: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)
