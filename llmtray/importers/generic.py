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
from llmtray.importers.mapping import ColumnMapping
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
        return _event(values, mapping.columns, row_id)

    def fast_row(self, header: tuple[str, ...], options: Options) -> Callable[[list[str]], dict[str, Any] | None] | None:
        """`row()` without the row dict: fields read by position, the id's key joined directly."""
        if len(set(header)) != len(header):
            return None  # a repeated column name: row()'s dict keeps the last, let it
        mapping: ColumnMapping = options.mapping
        at = {column: i for i, column in enumerate(header)}
        fields = tuple((name, at[column]) for name, column in mapping.columns.items())
        constants, labels = dict(mapping.constants), mapping.columns
        id_suffix = "".join(f"\x1f{pair}" for pair in sorted(mapping.constants.items()))
        name = self.name

        def fast(cells: list[str]) -> dict[str, Any] | None:
            values = constants.copy()
            for field, i in fields:
                values[field] = cells[i]
            return _event(values, labels, key_id(name, "\x1f".join(cells) + id_suffix))

        return fast


def _event(values: Mapping[str, str], labels: Mapping[str, str], row_id: str) -> dict[str, Any] | None:
    """The event of one row's mapped `values` (field → cell text); errors name the user's
    column (`labels`: field → column), not our field."""
    counts = {name: whole_fast(values[name], labels.get(name, name)) for name in _COUNTS if name in values}
    requests = whole_fast(values["requests"], labels.get("requests", "requests")) if "requests" in values else 1
    if "cost_cents" in values:
        cost = money(values["cost_cents"], labels.get("cost_cents", "cost_cents"), cents=True)
    else:
        cost = money(values.get("cost_usd"), labels.get("cost_usd", "cost_usd"))
    model = text(values.get("model"))
    if not any(counts.values()) and cost in (None, "0") and (requests == 0 or model is None):
        return None
    if model is None:
        raise RowProblem(f"{labels.get('model', 'model')}: no model")
    provider = text(values.get("provider"))
    if provider is None:
        raise RowProblem(f"{labels.get('provider', 'provider')}: no provider")
    event: dict[str, Any] = {
        "id": row_id,
        "ts": timestamp_fast(values.get("ts") or "", labels.get("ts", "ts")),
        "provider": provider.lower(),
        "model": model,
        "requests": max(requests, 1),
        **counts,
        "cost_usd": cost,
    }
    if "latency_ms" in values:
        event["latency_ms"] = decimal_number_fast(values["latency_ms"], labels.get("latency_ms", "latency_ms"))
    for name in _TEXTS:
        if name in values:
            event[name] = text(values[name])
    tier = text(values.get("service_tier"))
    if tier is not None:
        event["service_tier"] = usage.service_tier(tier) or tier
    status = text(values.get("status"))
    if status is not None:
        event["status"] = _STATUS.get(status.lower(), status)
    return event
