"""Reading, mapping and validating a big file in a second process while this one stores it.

Per row, reading CSV, mapping cells to an event dict and validating it is pure Python, about
as costly as pricing and inserting; run side by side on two cores the import takes the longer
of the two instead of their sum. The reader process sends what it made in chunks through a
pipe, in file order: validated `UsageEvent`s (pickled as their field values, rebuilt by one
constructor call), `Restored` events that carry stored pricing, and the `Skipped` rows and
`RowError`s. The pipe holds at most a chunk or two, so memory stays flat however big the
file, and leaving the stream early (cancel, an error) stops the reader.

Small files, frozen apps and machines with one core are read in this process, by the very same
code: the events, their order and every error are the same either way (tests compare them).
"""

from __future__ import annotations

import copyreg
import gc
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtray.core.events import EVENT_FIELDS, UsageEvent, event_errors
from llmtray.importers.base import Format, ImportFileError, Item, Options, Parsed, RowError, Skipped

if TYPE_CHECKING:
    from llmtray.core.pricing import Priced

PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # below this, starting a process (~0.3 s) costs more than it saves
CHUNK_ROWS = 2000


@dataclass(frozen=True, slots=True)
class Restored:
    """An event from llmtray's own export, with the cost and source it was stored with."""

    event: UsageEvent
    priced: Priced | None
    source: str | None


Entry = UsageEvent | Restored | Skipped | RowError


def validated(items: Iterable[Item], now: datetime) -> Iterator[Entry]:
    """Each parsed row through `event_errors` (the HTTP API's validation): the event, or a
    `RowError` at the row's line (or finer location) listing every problem."""
    for item in items:
        if type(item) is not Parsed:
            yield item  # type: ignore[misc]
            continue
        event, errors = event_errors(item.data, now=now)
        if event is None:
            yield RowError(item.line, item.where or f"line {item.line}", "; ".join(str(e) for e in errors))
        elif item.priced is not None or item.source is not None:
            yield Restored(event, item.priced, item.source)
        else:
            yield event


def use_reader_process(path: Path, parallel: bool | None) -> bool:
    """`parallel`: None decides by the file's size and the machine's cores."""
    if parallel is not None:
        return parallel
    try:
        size = path.stat().st_size
    except OSError:
        return False  # the in-process reader reports it
    return size >= PARALLEL_MIN_BYTES and (os.cpu_count() or 1) > 1


@contextmanager
def entries(fmt: Format, path: Path, options: Options, now: datetime, *,
            parallel: bool | None = None) -> Iterator[Iterator[Entry]]:
    """The file's rows in order, validated against `now`, as `Entry`s; read in a second process
    when `parallel` (None: when the file is big enough to be worth it). Leaving the block stops
    the reader."""
    process = _start_reader(fmt, path, options, now) if use_reader_process(path, parallel) else None
    if process is None:
        yield validated(fmt.items(path, options), now)
        return
    try:
        yield _received(process, options)
    finally:
        process.stdout.close()  # a reader still writing gets a broken pipe and exits
        if process.poll() is None:
            process.terminate()
        process.wait()


def _start_reader(fmt: Format, path: Path, options: Options, now: datetime) -> subprocess.Popen | None:
    """`python -c` rather than multiprocessing's spawn, which re-runs the caller's main script
    in the child (and fails without an `if __name__ == "__main__"` guard). None when no reader
    can be started: a frozen app has no interpreter to run, a sandbox may allow no process."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return None
    try:
        process = subprocess.Popen([sys.executable, "-c", _READER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError:
        return None
    with process.stdin:
        pickle.dump(sys.path, process.stdin)  # first, in builtins only: then llmtray can be found
        pickle.dump((fmt.name, path, options.mapping, options.fast, now), process.stdin)
    return process


_READER = "from llmtray.importers.pipeline import read_for_parent; read_for_parent()"


def _received(process: subprocess.Popen, options: Options) -> Iterator[Entry]:
    meter, stream = options.meter, process.stdout
    while True:
        try:
            kind, payload, done, total = pickle.load(stream)
        except EOFError:
            raise ImportFileError(f"the file's reader process stopped unexpectedly (exit code {process.wait()})") from None
        meter.done, meter.total = done, total
        if kind == "rows":
            yield from payload
        elif kind == "end":
            return
        elif kind == "file-error":
            raise ImportFileError(payload)
        else:
            raise RuntimeError(f"the file's reader process failed:\n{payload}")


def read_for_parent() -> None:
    """The reader process (stdin: what to read; stdout: pickled chunks, then `end` or what
    went wrong). Only ever run by `entries`, which trusts what it sends back."""
    sys.path[:0] = [p for p in pickle.load(sys.stdin.buffer) if p not in sys.path]
    format_name, path, mapping, fast, now = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer
    from llmtray.importers import get_format

    gc.freeze()  # the modules just imported: never garbage, not worth scanning for each chunk
    options = Options(mapping=mapping, fast=fast)
    meter = options.meter

    def send(kind: str, payload: Any) -> None:
        pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _DISPATCH
        pickler.dump((kind, payload, meter.done, meter.total))
        out.flush()

    chunk: list[Entry] = []
    try:
        for entry in validated(get_format(format_name).items(path, options), now):
            chunk.append(entry)
            if len(chunk) >= CHUNK_ROWS:
                send("rows", chunk)
                chunk = []
        send("rows", chunk)
        send("end", None)
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the importer stopped reading (cancelled, or failed storing)
    except ImportFileError as exc:
        send("rows", chunk)  # the rows before the problem, as when read in-process
        send("file-error", str(exc))
    except BaseException:  # noqa: BLE001 - reported to the importer, which raises it
        send("rows", chunk)
        send("crash", traceback.format_exc())


_event_values = attrgetter(*EVENT_FIELDS)


def _reduce_event(event: UsageEvent) -> tuple[type[UsageEvent], tuple[Any, ...]]:
    """An event as its class and field values: rebuilt by one positional constructor call,
    instead of pickle's default of setting each of its slots one by one."""
    return UsageEvent, _event_values(event)


_DISPATCH = {**copyreg.dispatch_table, UsageEvent: _reduce_event}
