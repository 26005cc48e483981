"""Reading export files as they come: any size (streamed), with or without a byte-order mark,
UTF-8 or a spreadsheet's re-save (cp1252, UTF-16), CRLF, `,`/`;`/tab delimiters, quoted fields
holding commas and newlines — and every record tagged with the line it starts on.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from llmtray.importers.base import ByteMeter, Head, ImportFileError

HEAD_BYTES = 64 * 1024
# LiteLLM spend logs keep whole prompts and responses in one field; the default 128 KiB limit
# rejects real rows. A bound still stops a stray quote from swallowing a multi-GB file.
csv.field_size_limit(64 * 1024 * 1024)


class _CountingRaw(io.RawIOBase):
    def __init__(self, raw: io.BufferedReader, meter: ByteMeter):
        self._raw = raw
        self._meter = meter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        self._meter.done += n or 0
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def sniff_encoding(sample: bytes, *, cut: bool = False) -> str:
    """UTF-16 when it has that BOM; UTF-8 (BOM dropped) when the sample decodes; else cp1252,
    the encoding spreadsheets on Windows re-save CSVs in. `cut`: the sample is the start of a
    longer file, so a multi-byte character may be cut at its end."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (cut and exc.reason == "unexpected end of data" and exc.start >= len(sample) - 3):
            return "cp1252"
    return "utf-8-sig"


@contextmanager
def open_text(path: Path, meter: ByteMeter | None = None) -> Iterator[TextIO]:
    """The file as text, decoded as sniffed, counting consumed bytes into `meter`."""
    meter = meter or ByteMeter()
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the wrapper below
    except OSError as exc:
        raise ImportFileError(f"{path}: {exc.strerror or exc}") from None
    meter.total = path.stat().st_size
    encoding = sniff_encoding(raw.read(HEAD_BYTES), cut=meter.total > HEAD_BYTES)
    raw.seek(0)
    buffered = io.BufferedReader(_CountingRaw(raw, meter), buffer_size=256 * 1024)
    text = io.TextIOWrapper(buffered, encoding=encoding, newline="")
    try:
        yield text
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not valid {encoding} text near byte {meter.done}: {exc.reason}") from None
    finally:
        text.close()


def _delimiter(first_line: str) -> str:
    """`,` unless the header clearly uses `;` or tabs (European spreadsheet re-saves)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


@dataclass(frozen=True)
class CsvRecord:
    line: int  # the line the record starts on (records can span lines)
    cells: list[str]
    error: str | None = None  # the record is not valid CSV (a stray quote); cells are empty


class CsvReader:
    """Records of a CSV file after its header, each with its starting line number. Strict
    quoting: a stray quote is reported on its record instead of silently merging fields."""

    def __init__(self, text: TextIO):
        first = text.readline()
        delimiter = _delimiter(first)
        header = next(csv.reader([first], delimiter=delimiter), [])
        self.header = tuple(h.strip().lstrip("\ufeff") for h in header)
        self._reader = csv.reader(text, delimiter=delimiter, strict=True)

    def __iter__(self) -> Iterator[CsvRecord]:
        for line, cells in self.cells():
            yield CsvRecord(line, [], cells) if isinstance(cells, str) else CsvRecord(line, cells)

    def cells(self) -> Iterator[tuple[int, list[str] | str]]:
        """(line, cells) per record — or (line, message) for a record that is not valid CSV.
        Plain tuples: this loop runs once per row of multi-GB files."""
        reader = self._reader
        records = iter(reader)
        previous_end = 0  # the header is line 1
        while True:
            try:
                for cells in records:
                    yield previous_end + 2, cells
                    previous_end = reader.line_num
                return
            except csv.Error as exc:
                yield previous_end + 2, f"not valid CSV: {exc}"
                previous_end = reader.line_num


def read_head(path: Path) -> Head:
    """The first 64 KiB of a file, parsed as far as it can be: a CSV header, or the first JSON
    value (the whole document when it fits, else the first line of JSON Lines)."""
    try:
        with open(path, "rb") as f:
            sample = f.read(HEAD_BYTES)
            at_end = not f.read(1)
    except OSError as exc:
        raise ImportFileError(f"{path}: {exc.strerror or exc}") from None
    text = sample.decode(sniff_encoding(sample, cut=not at_end), errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    first_json: Any = None
    header: tuple[str, ...] | None = None
    if stripped.startswith(("{", "[")):
        first_json = _first_json(stripped, whole=at_end)
    elif stripped:
        with io.StringIO(text, newline="") as buf:  # "" : a CR-only file (Excel "CSV (Macintosh)") splits too
            header = CsvReader(buf).header
    return Head(path, text, header, first_json)


def _first_json(text: str, *, whole: bool) -> Any:
    if whole:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
        return value
    except json.JSONDecodeError:
        return None
