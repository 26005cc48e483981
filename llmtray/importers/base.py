"""What every importer yields, and the base class a file format implements.

A format turns a file into a stream of *items*: `Parsed` (an event as the JSON-able dict of
DESIGN §3, not yet validated), `Skipped` (a placeholder row, counted but not an error) or
`RowError` (a row that can't be understood, with its line). Validation, pricing, dedup, overlap
and storage happen once, in `llmtray.importers.engine`, for every format alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llmtray.core.errors import LLMTrayError

if TYPE_CHECKING:  # pricing loads genai-prices' data (~0.5 s): not for `llmtray --help`
    from llmtray.core.pricing import Priced


class ImportFileError(LLMTrayError):
    """The file as a whole can't be imported (unknown format, wrong header, unreadable)."""


class RowProblem(Exception):
    """Raised by a row mapper; the reader turns it into a `RowError` with the row's line."""


@dataclass(slots=True)
class Parsed:
    """One row as an event dict. `priced`/`source` are set only when restoring llmtray's own
    export, which carries the stored cost provenance and the original source of each event."""

    line: int
    data: dict[str, Any]
    priced: Priced | None = None
    source: str | None = None
    where: str | None = None  # a location finer than the line (`page 1 data[0].results[2]`)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row that holds no usage (an empty day bucket, a blank line): counted, not imported."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that could not be imported; `where` locates it (`line 12`, `page 2 data[0].results[3]`)."""

    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


Item = Parsed | Skipped | RowError


@dataclass(frozen=True)
class Head:
    """The start of a file, enough to recognise its format without reading the rest."""

    path: Path
    text: str  # the first few KiB, decoded
    header: tuple[str, ...] | None  # first CSV record, if the file looks like CSV
    first_json: Any = None  # the first JSON value (a whole small document or the first JSONL line)


class ByteMeter:
    """How many bytes of the file the reader has consumed, for progress bars."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class Options:
    """Per-import settings a format may need (the generic CSV's column mapping)."""

    mapping: Any = None
    meter: ByteMeter = field(default_factory=ByteMeter)
    fast: bool = True  # a format's per-file fast mapper, if it has one (tests compare it with `row()`)


class Format:
    """One file format. Subclasses set `name` (used by `--format` and in ids) and `label`."""

    name: ClassVar[str]
    label: ClassVar[str]

    def detect(self, head: Head) -> bool:
        raise NotImplementedError

    def items(self, path: Path, options: Options) -> Iterator[Item]:
        raise NotImplementedError

    @property
    def source(self) -> str:
        return f"import:{self.name}"
