"""Any usage CSV, through a column mapping (see `llmtray.importers.mapping`).

Token columns follow llmtray's convention (input includes cache tokens); a file that counts
them apart gets a row error saying so rather than a silent fix. A row's id is the hash of all
its cells, so re-importing the same file, or an export overlapping it, adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmtray.core import usage
from llmtray.importers.base import Head, Options, RowProblem
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.mapping import ColumnMapping
from llmtray.importers.values import decimal_number, money, stable_id, text, timestamp, whole

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
        columns, constants = mapping.columns, mapping.constants

        def get(name: str) -> str | None:
            return row[columns[name]] if name in columns else constants.get(name)

        def where(name: str) -> str:
            return columns.get(name, name)

        counts = {name: whole(get(name), where(name)) for name in _COUNTS if get(name) is not None}
        requests = whole(get("requests"), where("requests")) if get("requests") is not None else 1
        if "cost_cents" in columns or "cost_cents" in constants:
            cost = money(get("cost_cents"), where("cost_cents"), cents=True)
        else:
            cost = money(get("cost_usd"), where("cost_usd"))
        model = text(get("model"))
        if not any(counts.values()) and cost in (None, "0") and (requests == 0 or model is None):
            return None
        if model is None:
            raise RowProblem(f"{where('model')}: no model")
        provider = text(get("provider"))
        if provider is None:
            raise RowProblem(f"{where('provider')}: no provider")
        event: dict[str, Any] = {
            "id": stable_id(self.name, *row.values(), *sorted(constants.items())),
            "ts": timestamp(get("ts"), where("ts")),
            "provider": provider.lower(),
            "model": model,
            "requests": max(requests, 1),
            **counts,
            "cost_usd": cost,
            "latency_ms": decimal_number(get("latency_ms"), where("latency_ms")),
        }
        for name in _TEXTS:
            event[name] = text(get(name))
        tier = text(get("service_tier"))
        event["service_tier"] = usage.service_tier(tier) or tier if tier else None
        status = text(get("status"))
        if status is not None:
            event["status"] = _STATUS.get(status.lower(), status)
        return event
