"""The shared shape of CSV formats: recognise a header, map each row to an event dict.

A concrete format lists the columns that identify it and writes `row()`; this class handles
opening, column counts, placeholder rows and turning `RowProblem`s into line-numbered errors.
A format with big files also writes `fast_row()`: `row()` with the header's column positions
and converters resolved once per file, taking the row's cells as csv.reader gives them; any
row it does not take the common path for goes through `row()`, the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from llmtray.importers.base import Format, Head, ImportFileError, Item, Options, Parsed, RowError, RowProblem, Skipped
from llmtray.importers.textfile import CsvReader, open_text


class CsvFormat(Format):
    """A CSV export recognised by its header. `row()` returns the event dict, or None for a
    placeholder row that holds no usage (counted as skipped, not as an error)."""

    required: ClassVar[frozenset[str]]  # columns every variant of the format has
    # A column whose presence tells this format apart from a look-alike (one is enough).
    distinctive: ClassVar[frozenset[str]] = frozenset()
    placeholder: ClassVar[str] = "row without usage"

    def detect(self, head: Head) -> bool:
        if head.header is None:
            return False
        columns = set(head.header)
        return self.required <= columns and (not self.distinctive or bool(self.distinctive & columns))

    def check_header(self, header: tuple[str, ...]) -> None:
        missing = sorted(self.required - set(header))
        if missing:
            raise ImportFileError(
                f"line 1: not a {self.label} header; missing column(s) {', '.join(missing)}"
            )

    def row(self, row: Mapping[str, str], options: Options) -> dict[str, Any] | None:
        raise NotImplementedError

    def fast_row(self, header: tuple[str, ...], options: Options) -> Callable[[list[str]], dict[str, Any] | None] | None:
        """`row()` with the column positions and converters resolved once for this file's
        header: takes the row's cells, returns what `row()` returns for them. It may raise
        `RowProblem` on any row it does not take the common path for; that row then goes
        through `row()`, which maps it or names the problem. None: no fast path."""
        return None

    def parsed(self, line: int, data: dict[str, Any]) -> Parsed:
        """The item for a mapped row; llmtray's own export attaches stored pricing here."""
        return Parsed(line, data)

    def items(self, path: Path, options: Options) -> Iterator[Item]:
        with open_text(path, options.meter) as text:
            reader = CsvReader(text)
            header = reader.header
            self.check_header(header)
            width = len(header)
            fast = self.fast_row(header, options) if options.fast else None
            for line, cells in reader.cells():
                if isinstance(cells, str):
                    yield RowError(line, f"line {line}", cells)
                    continue
                if len(cells) != width:
                    if not any(c.strip() for c in cells):
                        yield Skipped(line, "blank line")
                    else:
                        yield RowError(line, f"line {line}", f"expected {width} columns, found {len(cells)}")
                    continue
                try:
                    if fast is None:
                        raise RowProblem("no fast path")
                    data = fast(cells)
                except RowProblem:
                    try:
                        data = self.row(dict(zip(header, cells)), options)
                    except RowProblem as problem:
                        yield RowError(line, f"line {line}", str(problem))
                        continue
                yield Skipped(line, self.placeholder) if data is None else self.parsed(line, data)
