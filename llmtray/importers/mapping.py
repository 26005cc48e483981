"""Column mappings for CSVs llmtray has no importer for, remembered per header shape.

A mapping says which column holds each event field (or a constant, such as the provider of a
single-provider file). It is saved in `import_mappings.json` in the config folder under the
header's signature, so the next file with the same columns maps itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtray.core.errors import ConfigError

MAPPINGS_FILE = "import_mappings.json"
# Event fields a column can fill; `cost_cents` is `cost_usd` written in cents.
TARGETS = (
    "ts", "provider", "model", "operation", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "requests", "cost_usd", "cost_cents", "service_tier",
    "latency_ms", "status", "feature", "user", "project", "env", "request_id",
)
# Normalised column names each target is guessed from, best first.
_GUESSES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "time", "datetime", "date", "created_at", "created", "start_time", "usage_date",
           "day", "date_utc"),
    "provider": ("provider", "vendor", "api_provider"),
    "model": ("model", "model_name", "model_id", "model_version", "slug", "deployment"),
    "operation": ("operation", "call_type", "endpoint"),
    "input_tokens": ("input_tokens", "prompt_tokens", "tokens_in", "input", "prompt", "tokens_prompt"),
    "output_tokens": ("output_tokens", "completion_tokens", "tokens_out", "output", "completion",
                      "tokens_completion"),
    "cache_read_tokens": ("cache_read_tokens", "cached_tokens", "cache_read", "tokens_cached", "cached_input_tokens"),
    "cache_write_tokens": ("cache_write_tokens", "cache_creation_tokens", "cache_write"),
    "reasoning_tokens": ("reasoning_tokens", "tokens_reasoning", "reasoning"),
    "requests": ("requests", "num_requests", "request_count", "calls", "count"),
    "cost_usd": ("cost_usd", "cost", "spend", "amount_usd", "amount", "usd", "total_cost", "cost_total", "price"),
    "cost_cents": ("cost_cents", "amount_cents", "cents"),
    "service_tier": ("service_tier", "tier"),
    "latency_ms": ("latency_ms", "duration_ms", "latency"),
    "status": ("status",),
    "feature": ("feature",),
    "user": ("user", "user_id", "end_user"),
    "project": ("project", "project_id", "team", "workspace"),
    "env": ("env", "environment"),
    "request_id": ("request_id", "id", "generation_id"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def header_signature(header: Iterable[str]) -> str:
    """Same columns (ignoring case, spacing and punctuation) → same signature."""
    key = "\x1f".join(_norm(h) for h in header)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ColumnMapping:
    """Event field → CSV column, plus constants for fields no column holds."""

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)

    def problems(self, header: Iterable[str] = ()) -> list[str]:
        """What keeps this mapping from importing a file with `header` (empty = usable)."""
        out = []
        for name in (*self.columns, *self.constants):
            if name not in TARGETS:
                out.append(f"unknown field {name!r} (fields: {', '.join(TARGETS)})")
        cols = set(header)
        for target, column in self.columns.items():
            if cols and column not in cols:
                out.append(f"{target}: no column {column!r} in this file")
        for required in ("ts", "model", "provider"):
            if required not in self.columns and not self.constants.get(required):
                how = "a column or a constant" if required == "provider" else "a column"
                out.append(f"{required}: needs {how}")
        if "ts" in self.constants or "model" in self.constants:
            out.append("ts and model must come from columns")
        if "cost_usd" in self.columns and "cost_cents" in self.columns:
            out.append("map cost_usd or cost_cents, not both")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"columns": dict(self.columns), "constants": dict(self.constants)}

    @classmethod
    def from_json(cls, data: Any) -> ColumnMapping:
        if not isinstance(data, dict) or not isinstance(data.get("columns", {}), dict) \
                or not isinstance(data.get("constants", {}), dict):
            raise ValueError("a mapping is an object with 'columns' and 'constants' objects")
        return cls(dict(data.get("columns", {})), dict(data.get("constants", {})))


def guess(header: Iterable[str]) -> ColumnMapping:
    """A first mapping from column names alone; the dialog shows it for the user to correct."""
    by_norm: dict[str, str] = {}
    for column in header:
        by_norm.setdefault(_norm(column), column)
    columns: dict[str, str] = {}
    taken: set[str] = set()
    for target, names in _GUESSES.items():
        for name in names:
            column = by_norm.get(name)
            if column is not None and column not in taken:
                columns[target] = column
                taken.add(column)
                break
    return ColumnMapping(columns, {})


class MappingStore:
    """`import_mappings.json`: saved mappings keyed by header signature."""

    def __init__(self, config_dir: Path):
        self.path = config_dir / MAPPINGS_FILE

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path}: unreadable saved column mappings ({exc}); fix or delete the file") from None
        mappings = data.get("mappings") if isinstance(data, dict) else None
        if not isinstance(mappings, dict):
            raise ConfigError(f"{self.path}: expected {{\"mappings\": {{…}}}}; fix or delete the file")
        return mappings

    def get(self, header: Iterable[str]) -> ColumnMapping | None:
        entry = self._load().get(header_signature(header))
        if entry is None:
            return None
        try:
            return ColumnMapping.from_json(entry)
        except ValueError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None

    def save(self, header: Iterable[str], mapping: ColumnMapping) -> None:
        header = list(header)
        mappings = self._load()
        mappings[header_signature(header)] = {"header": header, **mapping.to_json()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"mappings": mappings}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
