"""Running an import: validate each row, skip what is already stored, guard against double
counting, and store in chunks — in constant memory, whatever the file's size.

Every row a format yields goes through `llmtray.core.events.event_errors` (the same validation
as the HTTP API; for a big file in a second process, see `llmtray.importers.pipeline`), then
through `Store.add` in chunks of a few thousand, each chunk its own transaction (one transaction
for a whole file would hold the write lock, and live ingest, for minutes). An import is one
dataset (file, format, time, counts) that can be listed and removed.

A file imports whole or not at all. Its first bad row (unless `skip_bad_rows`), a cancel, or a
file that turns unreadable midway removes the dataset again — its events in one transaction,
the rollups following through the store's triggers — so nothing of the file is left, not even a
dataset row in `llmtray import --list`. A file with bad rows is still read to its end, storing
nothing more, so that every error is listed at once. `--overlap replace` deletes observed events
as imported rows arrive and keeps them with the dataset (`overlap.replacing`); removing the
dataset (`Importer.remove`: a cancel, a failure, `import --remove`, the dialog) puts them back
in the same transaction. That policy still validates the whole file first, so that a file with
a bad row never disturbs the observed events at all.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from llmtray.core import compact
from llmtray.core.events import UsageEvent
from llmtray.core.pricing import Priced
from llmtray.core.store import AddResult, Batch, Removal, Store, event_json
from llmtray.importers import GENERIC, Detection, detect
from llmtray.importers.base import Format, ImportFileError, Options, RowError, Skipped
from llmtray.importers.llmtray_export import LlmtrayJsonl, restore
from llmtray.importers.mapping import ColumnMapping, MappingStore
from llmtray.importers.overlap import (
    POLICIES,
    ProviderDays,
    observed_days,
    other_imports,
    replaced_rows,
    replacing,
)
from llmtray.importers.pipeline import Restored, entries, validated

CHUNK_SIZE = 5000
KEEP_ERRORS = 100  # row errors kept for display; all are counted
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_OBSERVED = LlmtrayJsonl()  # restored observed events carry their own source and pricing


@dataclass
class ImportResult:
    """What one file's import did. `state`: done; dry-run; rejected (bad rows and no
    `skip_bad_rows`: nothing stored, every error listed); cancelled (nothing stored); refused
    (overlapping days, nothing stored). Only `done` leaves a dataset (`dataset_id`)."""

    path: Path
    format: str
    label: str
    state: str = "done"
    dataset_id: int | None = None
    rows_read: int = 0
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0  # placeholder rows without usage
    overlap_skipped: int = 0  # rows dropped by `--overlap skip`
    replaced: int = 0  # observed events deleted by `--overlap replace`
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)
    overlap: list[tuple[str, int]] = field(default_factory=list)  # (provider, UTC day number)
    # (format, provider, day): rows of other import formats on the days this file covers
    other_imports: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state in ("done", "dry-run") and self.error_count == 0

    @property
    def stored_nothing(self) -> bool:
        """The file left nothing in the store (its rows were rejected, or it was cancelled)."""
        return self.state in ("rejected", "cancelled")

    def add_error(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append(error)


@dataclass(frozen=True)
class Progress:
    """Reported every chunk: `fraction` of the file's bytes read, and the counts so far."""

    fraction: float
    rows_read: int
    imported: int
    duplicates: int
    errors: int


class _Chunk:
    """Validated events waiting for one `Store.add`, with restored pricing where the file had it
    (`restored`: (position, priced, source) — only llmtray's own export carries them)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.restored: list[tuple[int, Priced | None, str | None]] = []


class Importer:
    """Imports files into one store (one thread's `Store`: the CLI's, or the dialog's worker's)."""

    def __init__(self, store: Store, mappings: MappingStore | None = None, chunk_size: int = CHUNK_SIZE,
                 parallel: bool | None = None):
        self.store = store
        self.mappings = mappings
        self.chunk_size = chunk_size
        self.parallel = parallel  # read big files in a second process; None: by size (see pipeline)

    def detect(self, path: Path, format_name: str | None = None) -> Detection:
        return detect(path, format_name=format_name, mappings=self.mappings)

    def run(
        self,
        path: Path,
        *,
        format_name: str | None = None,
        overlap: str = "refuse",
        dry_run: bool = False,
        mapping: ColumnMapping | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        skip_bad_rows: bool = False,
    ) -> ImportResult:
        """Import one file, whole or not at all. File-level problems raise `ImportFileError`
        with nothing stored; row problems are collected in the result with their lines, and
        unless `skip_bad_rows` (store the good rows) any of them means nothing is stored."""
        if overlap not in POLICIES:
            raise ValueError(f"overlap policy must be one of {', '.join(POLICIES)}, got {overlap!r}")
        detection = self.detect(path, format_name)
        fmt = detection.format
        options = Options(mapping=(mapping or detection.mapping) if fmt is GENERIC else None)
        if fmt is GENERIC:
            if options.mapping is None:
                raise ImportFileError(f"{path.name}: no column mapping saved for these columns; give one "
                                      "(--map FIELD=COLUMN, or the Import dialog)")
            problems = options.mapping.problems(detection.head.header or ())
            if problems:
                raise ImportFileError(f"{path.name}: the column mapping can't be used: {'; '.join(problems)}")
            if self.mappings is not None and detection.head.header and not dry_run:
                # saved as soon as it fits the columns: a bad row is fixed in the file, and the
                # next run must not need every --map again (#17 item 12)
                self.mappings.save(detection.head.header, options.mapping)
        result = ImportResult(path, fmt.name, fmt.label, state="dry-run" if dry_run else "done")
        observed = observed_days(self.store.conn)
        if observed and overlap == "refuse":
            days = self._overlapping_days(fmt, path, options, observed, cancel)
            if cancel is not None and cancel.is_set():
                result.state = "cancelled"
                return result
            if days:
                result.state, result.overlap = "refused", sorted(days)
                return result
        replace = overlap == "replace" and bool(observed) and not dry_run
        if replace and not skip_bad_rows:
            # Replacing deletes observed events as the rows arrive; a bad row found then would
            # leave them deleted. So a first pass, storing nothing, finds the bad rows before.
            with _gc_frozen():
                self._check(fmt, path, options, result, progress, cancel)
            if result.error_count or result.state == "cancelled":
                return result
            result.rows_read = result.skipped = 0  # the import pass counts them again
        if not dry_run:
            result.dataset_id = self.store.create_dataset(path.name, fmt.name, str(path.resolve()))
        try:
            guard = replacing(self.store.conn, result.dataset_id, observed) if replace else nullcontext()
            with guard as replace_log, _gc_frozen():
                try:
                    self._import(fmt, path, options, result, observed, overlap, progress, cancel,
                                 stop_at_error=not skip_bad_rows and not dry_run)
                except BaseException:
                    self._discard(result)
                    raise
                if cancel is not None and cancel.is_set():
                    result.state = "cancelled"
                if result.stored_nothing:
                    self._discard(result)
                elif replace_log is not None:
                    result.replaced = sum(n for _, _, n in replace_log.replaced())
        except BaseException:
            self._discard(result)  # `replacing` itself failed: the empty dataset goes
            raise
        if result.dataset_id is not None:
            self._finish(result, "done")
        return result

    # --- the passes ----------------------------------------------------------------------

    def _overlapping_days(self, fmt: Format, path: Path, options: Options, observed: ProviderDays,
                          cancel: threading.Event | None) -> set[tuple[str, int]]:
        """A first pass (nothing stored) for the provider-days on which the file would add rows
        next to observed events; rows already stored (same id) add nothing,
        so re-importing a file never counts as overlap. Only run when observed events exist."""
        found: set[tuple[str, int]] = set()
        pending: list[tuple[str, str, int]] = []

        def settle() -> None:
            stored = _stored_ids(self.store.conn, [event_id for event_id, _, _ in pending])
            found.update((provider, day) for event_id, provider, day in pending if event_id not in stored)
            pending.clear()

        with entries(fmt, path, options, datetime.now(UTC), parallel=self.parallel) as stream:
            for n, entry in enumerate(stream):
                if n % 4096 == 0 and cancel is not None and cancel.is_set():
                    break
                event = entry.event if type(entry) is Restored else entry
                if type(event) is not UsageEvent or not observed.get(event.provider):
                    continue  # row errors: the import pass reports them
                key = (event.provider, event.ts.toordinal() - _EPOCH_ORDINAL)
                if key[1] in observed[event.provider] and key not in found:
                    pending.append((str(event.id), *key))
                    if len(pending) >= self.chunk_size:
                        settle()
        settle()
        return found

    def _check(self, fmt: Format, path: Path, options: Options, result: ImportResult,
               progress: Callable[[Progress], None] | None, cancel: threading.Event | None) -> None:
        """A validating pass that stores nothing: counts the rows and collects every error into
        `result` (state `rejected` if there are any, `cancelled` if cancelled)."""
        with entries(fmt, path, options, datetime.now(UTC), parallel=self.parallel) as stream:
            self._read_rest(stream, result, options, progress, cancel)
        if result.error_count:
            result.state = "rejected"

    def _read_rest(self, stream: Iterator[object], result: ImportResult, options: Options,
                   progress: Callable[[Progress], None] | None, cancel: threading.Event | None) -> None:
        """Read `stream` to its end, storing nothing, counting rows and collecting errors."""
        read = result.rows_read
        next_report = read + self.chunk_size
        for entry in stream:
            read += 1
            kind = type(entry)
            if kind is RowError:
                result.add_error(entry)
            elif kind is Skipped:
                result.skipped += 1
            if read >= next_report:
                next_report += self.chunk_size
                result.rows_read = read
                if progress is not None:
                    progress(self._progress(result, options))
                if cancel is not None and cancel.is_set():
                    result.state = "cancelled"
                    break
        result.rows_read = read

    def _import(self, fmt: Format, path: Path, options: Options, result: ImportResult, observed: ProviderDays,
                overlap: str, progress: Callable[[Progress], None] | None, cancel: threading.Event | None,
                stop_at_error: bool) -> None:
        """The import pass. It runs once per row of files with millions of rows, so the loop keeps
        its counters in locals and does per row only what the row needs. With `stop_at_error`,
        the first bad row stops storing: what the file stored is removed, and the rest of the
        file is only read for its errors."""
        now = datetime.now(UTC)
        chunk = _Chunk()
        events = chunk.events
        size = self.chunk_size
        overlapping: set[tuple[str, int]] = set()
        covered: set[tuple[str, int]] = set()
        last_covered = None
        skip_overlap = overlap == "skip"
        read = next_report = 0
        with entries(fmt, path, options, now, parallel=self.parallel) as stream:
            for entry in stream:
                if read == next_report:  # every chunk's worth of rows
                    next_report += size
                    if read:
                        result.rows_read = read
                        if progress is not None:
                            progress(self._progress(result, options))
                        if cancel is not None and cancel.is_set():
                            break
                read += 1
                kind = type(entry)
                if kind is UsageEvent:
                    event = entry
                elif kind is Restored:
                    event = entry.event
                elif kind is Skipped:
                    result.skipped += 1
                    continue
                else:
                    result.add_error(entry)
                    if stop_at_error:
                        result.state = "rejected"
                        break
                    continue
                key = (event.provider, event.ts.toordinal() - _EPOCH_ORDINAL)  # ts is UTC
                if key != last_covered:
                    covered.add(key)
                    last_covered = key
                    if observed and key[1] in observed.get(key[0], ()):
                        overlapping.add(key)
                if skip_overlap and key in overlapping:
                    result.overlap_skipped += 1
                    continue
                if kind is Restored:
                    chunk.restored.append((len(events), entry.priced, entry.source))
                events.append(event)
                if len(events) >= size:
                    self._flush(fmt, chunk, result)
                    chunk = _Chunk()
                    events = chunk.events
            result.rows_read = read
            if result.state == "rejected":
                self._discard(result)  # before reading on: the file's rows leave the store at once
                self._read_rest(stream, result, options, progress, cancel)
                result.state = "rejected"  # a cancel while collecting errors still stored nothing
                if progress is not None:
                    progress(self._progress(result, options))
                return
        if cancel is not None and cancel.is_set():
            return  # `run` removes what was stored
        self._flush(fmt, chunk, result)
        result.overlap = sorted(overlapping)
        result.other_imports = other_imports(self.store.conn, fmt.name, covered)
        if progress is not None:
            progress(self._progress(result, options))

    @staticmethod
    def _progress(result: ImportResult, options: Options) -> Progress:
        return Progress(options.meter.fraction, result.rows_read, result.imported, result.duplicates,
                        result.error_count)

    def _flush(self, fmt: Format, chunk: _Chunk, result: ImportResult) -> None:
        if not chunk.events:
            return
        added = self._store(fmt, chunk, result.dataset_id) if result.dataset_id is not None \
            else self._would_store(chunk)
        result.imported += added.accepted
        result.duplicates += added.duplicates

    def _store(self, fmt: Format, chunk: _Chunk, dataset_id: int | None) -> AddResult:
        added = self.store.add_many([self._batch(fmt, chunk, dataset_id)])[0]
        if isinstance(added, Exception):
            raise added
        return added

    def _batch(self, fmt: Format, chunk: _Chunk, dataset_id: int | None) -> Batch:
        """A chunk as a store batch; restored rows (llmtray's own export) keep their cost and source."""
        if not chunk.restored:
            return Batch(chunk.events, fmt.source, dataset_id)
        price = self.store.pricer.price
        priced = [None] * len(chunk.events)
        sources = [fmt.source] * len(chunk.events)
        for i, p, source in chunk.restored:
            priced[i], sources[i] = p, source or fmt.source
        return Batch(chunk.events, fmt.source, dataset_id,
                     priced=[p if p is not None else price(e) for p, e in zip(priced, chunk.events)],
                     sources=sources)

    def _would_store(self, chunk: _Chunk) -> AddResult:
        """Dry run: count what `Store.add` would accept, reading only."""
        ids = [e.id for e in chunk.events if e.id is not None]
        stored = _stored_ids(self.store.conn, ids)
        seen: set[str] = set()
        duplicates = 0
        for event_id in ids:
            if event_id in stored or event_id in seen:
                duplicates += 1
            seen.add(event_id)
        return AddResult(len(chunk.events) - duplicates, duplicates)

    def remove(self, dataset_id: int) -> Removal:
        """Remove an import: its events and dataset row go, and the observed events it replaced
        come back, all in one transaction (the rollups follow through triggers), so there is no
        moment, or crash, in which the day has both or neither."""
        return self.store.remove_dataset(dataset_id, lambda: self._observed_batches(dataset_id))

    def _discard(self, result: ImportResult) -> None:
        """Leave nothing of the file, not even a dataset row in `import --list`."""
        if result.dataset_id is None:
            return
        self.remove(result.dataset_id)
        result.dataset_id = None
        result.imported = result.duplicates = result.replaced = 0

    def _observed_batches(self, dataset_id: int) -> list[Batch]:
        """The observed events importing `dataset_id` replaced, as batches that store them as
        they were (same id, cost, cost provenance, source and tags); only their row number and
        receive time are new."""
        now = datetime.now(UTC)
        chunk = _Chunk()
        for row in replaced_rows(self.store.conn, dataset_id):
            parsed = restore(event_json(row), 0)
            if row["event_id"] is None:
                parsed.data.pop("id")  # stored without an id: restored without one
            for entry in validated([parsed], now):
                if type(entry) is not Restored:
                    raise RuntimeError(f"observed event {row['id']} can't be restored: {entry}")
                chunk.restored.append((len(chunk.events), entry.priced, entry.source))
                chunk.events.append(entry.event)
        return [self._batch(_OBSERVED, chunk, None)] if chunk.events else []

    def _finish(self, result: ImportResult, state: str) -> None:
        self.store.finish_dataset(result.dataset_id, rows_read=result.rows_read, imported=result.imported,
                                  duplicates=result.duplicates, errors=result.error_count, state=state)


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """The objects that exist before an import (genai-prices' price tables, Qt, modules) out of
    the garbage collector's sight while it runs: the import allocates millions of short-lived
    objects, and every full collection would otherwise walk that whole heap again — measured at
    a quarter of the import's time. They are handed back to the collector afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _stored_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    return set(compact.find(conn, ids))
