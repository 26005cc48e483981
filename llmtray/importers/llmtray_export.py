"""llmtray's own `export` (JSON lines and CSV), read back losslessly.

An exported event keeps its stored cost, how it was obtained (`cost_source`), the pricing
version, the matched model and its original `source`; the import hands these to the store as
they are (`Batch.priced` / `Batch.sources`) instead of pricing again, so export → import
reproduces every cost exactly. Events that had no `id` get a deterministic one from their
content, so importing the same export twice adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llmtray.core.csvcells import unguard
from llmtray.core.events import SOURCES_FIXED, TOKEN_FIELDS
from llmtray.core.money import usd_to_nanos
from llmtray.importers.base import Format, Head, Item, Options, Parsed, RowError, RowProblem, Skipped
from llmtray.importers.csvformat import CsvFormat
from llmtray.importers.textfile import open_text
from llmtray.importers.values import stable_id

META_FIELDS = ("source", "cost_source", "pricing_version", "priced_model")
_INT_FIELDS = frozenset((*TOKEN_FIELDS, "requests"))
_FLOAT_FIELDS = frozenset(("latency_ms", "ttft_ms"))


def _nanos(cost: Any) -> int:
    try:
        value = Decimal(str(cost))
    except InvalidOperation:
        raise RowProblem(f"cost_usd: not a decimal amount: {str(cost)[:40]!r}") from None
    if not value.is_finite() or value < 0:
        raise RowProblem(f"cost_usd: must be a finite amount ≥ 0, got {str(cost)[:40]!r}")
    return usd_to_nanos(value)


def _source(value: Any) -> str:
    if isinstance(value, str) and (value in SOURCES_FIXED or (value.startswith("import:") and 7 < len(value) <= 64)):
        return value
    raise RowProblem(f"source: expected one of {', '.join(SOURCES_FIXED)} or import:<format>, got {str(value)[:40]!r}")


def restore(record: Mapping[str, Any], line: int) -> Parsed:
    """An exported record → event dict + its stored pricing and source (None when the record
    is a plain event without llmtray's metadata, which the store then prices as usual)."""
    from llmtray.core.pricing import Priced  # genai-prices loads in ~0.5 s; keep `llmtray --help` fast

    data = {k: v for k, v in record.items() if k not in META_FIELDS}
    priced: Priced | None = None
    source: str | None = None
    cost_source = record.get("cost_source")
    if cost_source is not None:
        version, matched = record.get("pricing_version"), record.get("priced_model")
        cost = data.get("cost_usd")
        if cost_source == "reported":
            if cost is None:
                raise RowProblem("cost_usd: a reported cost needs an amount")
            priced = Priced(_nanos(cost), "reported", version, matched)
        elif cost_source == "computed":
            if cost is None:
                raise RowProblem("cost_usd: a computed cost needs an amount")
            priced = Priced(_nanos(data.pop("cost_usd")), "computed", version, matched)
        elif cost_source == "unpriced":
            data.pop("cost_usd", None)
            priced = Priced(None, "unpriced", version, matched)
        else:
            raise RowProblem(f"cost_source: expected reported, computed or unpriced, got {str(cost_source)[:40]!r}")
        source = _source(record.get("source"))
    if data.get("id") is None:
        data["id"] = stable_id("llmtray", json.dumps(data, sort_keys=True, ensure_ascii=False, default=str))
    return Parsed(line, data, priced, source)


class LlmtrayJsonl(Format):
    name = "llmtray-jsonl"
    label = "llmtray export (JSON lines)"

    def detect(self, head: Head) -> bool:
        first = head.first_json
        return isinstance(first, dict) and "provider" in first and "model" in first and "data" not in first

    def items(self, path: Path, options: Options) -> Iterator[Item]:
        with open_text(path, options.meter) as text:
            for n, line in enumerate(text, start=1):
                if not line.strip():
                    yield Skipped(n, "blank line")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield RowError(n, f"line {n}", f"not JSON ({exc.msg} at column {exc.colno})")
                    continue
                if not isinstance(record, dict):
                    yield RowError(n, f"line {n}", "expected a JSON object")
                    continue
                try:
                    yield restore(record, n)
                except RowProblem as problem:
                    yield RowError(n, f"line {n}", str(problem))


def _typed(column: str, value: str) -> Any:
    if column in _INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise RowProblem(f"{column}: not an integer: {value[:40]!r}") from None
    if column in _FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            raise RowProblem(f"{column}: not a number: {value[:40]!r}") from None
    if column == "stream":
        if value not in ("True", "False", "true", "false"):
            raise RowProblem(f"stream: expected True or False, got {value[:40]!r}")
        return value in ("True", "true")
    value = unguard(value)  # a text cell: the export guarded it against spreadsheet formulas
    if column == "tags":
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowProblem(f"tags: not a JSON object ({exc.msg})") from None
    return value


class LlmtrayCsv(CsvFormat):
    name = "llmtray-csv"
    label = "llmtray export (CSV)"
    required = frozenset(("ts", "provider", "model", "cost_usd", "cost_source", "source"))

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        return {k: _typed(k, v) for k, v in row.items() if v != ""}

    def parsed(self, line: int, data: dict[str, Any]) -> Parsed:
        return restore(data, line)
