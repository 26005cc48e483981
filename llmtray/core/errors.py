"""The exception tree, drawn once: every boundary raises one of these with a precise location."""

from __future__ import annotations

from dataclasses import dataclass


class LLMTrayError(Exception):
    """Base of every error llmtray raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one event; `index` is the position in a batch (None for one)."""

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out

    def __str__(self) -> str:
        where = f"event {self.index}: " if self.index is not None else ""
        return f"{where}{self.field}: {self.message}" if self.field else f"{where}{self.message}"


class EventValidationError(LLMTrayError, ValueError):
    """An event (or batch) failed validation; `errors` lists every problem, not just the first."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        first = str(errors[0]) if errors else "invalid event"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class ConfigError(LLMTrayError, ValueError):
    """config.toml or the pricing overrides file is wrong; the message names file, line or key."""


class SchemaTooNewError(LLMTrayError):
    """The database was written by a newer llmtray; refusing to touch it protects the user's data."""


class ReadOnlyDatabaseError(LLMTrayError):
    """The database or its folder can't be written (a read-only data dir, a read-only mount)."""
