"""Any usage CSV, through a column mapping (see `llmtray.importers.mapping`).

Token columns follow llmtray's convention (input includes cache tokens); a file that counts
them apart gets a row error saying so rather than a silent fix. A row's id is the hash of all
its cells, so re-importing the same file, or an export overlapping it, adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.base import Head, Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.mapping import TARGETS, ColumnMapping
from llmtray.importers.values import decimal_number_fast, key_id, money, stable_id, text, timestamp_fast, whole_fast

_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_TEXTS = ("operation", "feature", "user", "project", "env", "request_id")
_STATUS = {"ok": "ok", "success": "ok", "succeeded": "ok", "200": "ok",
           "error": "error", "failure": "error", "failed": "error", "fail": "error"}


class GenericCsv(CsvFormat):
    name = "generic-csv"
    label = "CSV with a column mapping"
    required = frozenset()

    def detect(self, head: Head) -> bool:
        return False  # chosen by name, or by a mapping saved for the file's header

    def check_header(self, header: tuple[str, ...]) -> None:
        pass  # the mapping is checked against the header by the engine, which knows it

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        mapping: ColumnMapping = options.mapping
        values = {**mapping.constants, **{name: row[column] for name, column in mapping.columns.items()}}
        row_id = stable_id(self.name, *row.values(), *sorted(mapping.constants.items()))
        return _Plan(mapping).event(values, row_id)

    def fast_row(self, header: tuple[str, ...], options: Options) -> Callable[[list[str]], dict[str, Any] | None] | None:
        """`row()` without the row dict: fields read by position, the id's key joined directly."""
        if len(set(header)) != len(header):
            return None  # a repeated column name: row()'s dict keeps the last, let it
        mapping: ColumnMapping = options.mapping
        at = {column: i for i, column in enumerate(header)}
        fields = tuple((name, at[column]) for name, column in mapping.columns.items())
        constants = dict(mapping.constants)
        id_suffix = "".join(f"\x1f{pair}" for pair in sorted(mapping.constants.items()))
        event, name = _Plan(mapping).event, self.name

        def fast(cells: list[str]) -> dict[str, Any] | None:
            values = constants.copy()
            for field, i in fields:
                values[field] = cells[i]
            return event(values, key_id(name, "\x1f".join(cells) + id_suffix))

        return fast


class _Plan:
    """What a mapping fills and how each field is labelled in errors (the user's column, not
    our field name), worked out once per file instead of once per row."""

    def __init__(self, mapping: ColumnMapping):
        present = {*mapping.columns, *mapping.constants}
        label = {name: mapping.columns.get(name, name) for name in TARGETS}
        self.label = label
        self.counts = tuple((name, label[name]) for name in _COUNTS if name in present)
        self.requests = "requests" in present
        self.cost = ("cost_cents", True) if "cost_cents" in present else ("cost_usd", False)
        self.latency = "latency_ms" in present
        self.texts = tuple(name for name in _TEXTS if name in present)
        self.tier, self.status = "service_tier" in present, "status" in present

    def event(self, values: Mapping[str, str], row_id: str) -> dict[str, Any] | None:
        """The event of one row's mapped `values` (field → cell text), or None for a row
        without usage."""
        label = self.label
        counts = {name: whole_fast(values[name], column) for name, column in self.counts}
        requests = whole_fast(values["requests"], label["requests"]) if self.requests else 1
        cost_field, cents = self.cost
        cost = money(values.get(cost_field), label[cost_field], cents=cents)
        model = text(values.get("model"))
        if not any(counts.values()) and cost in (None, "0") and (requests == 0 or model is None):
            return None
        if model is None:
            raise RowProblem(f"{label['model']}: no model")
        provider = text(values.get("provider"))
        if provider is None:
            raise RowProblem(f"{label['provider']}: no provider")
        event: dict[str, Any] = {
            "id": row_id,
            "ts": timestamp_fast(values.get("ts") or "", label["ts"]),
            "provider": provider.lower(),
            "model": model,
            "requests": max(requests, 1),
            **counts,
            "cost_usd": cost,
        }
        if self.latency:
            event["latency_ms"] = decimal_number_fast(values["latency_ms"], label["latency_ms"])
        for name in self.texts:
            event[name] = text(values[name])
        if self.tier and (tier := text(values["service_tier"])) is not None:
            event["service_tier"] = usage.service_tier(tier) or tier
        if self.status and (status := text(values["status"])) is not None:
            event["status"] = _STATUS.get(status.lower(), status)
        return event
