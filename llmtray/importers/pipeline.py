"""Reading, mapping and validating a big file in a second process while this one stores it.

Reading CSV, mapping cells to an event dict and validating it is pure Python and a large share
of an import's work per row; run beside the storing on a second core, the import takes the
longer of the two instead of their sum. The reader process sends what it made in chunks
through a pipe, in file order: validated `UsageEvent`s, `Restored` events that carry stored
pricing, and the `Skipped` rows and `RowError`s. A chunk's events travel column by column (a
column holding the same object in every row, such as `operation` or a zero token count, as
that one value): half the pickling cost of whole events, and each event is rebuilt by one
constructor call. The pipe holds a chunk or two at most, so memory stays flat however big the
file, and leaving the stream early (cancel, an error) stops the reader.

Small files, frozen apps and machines with one core are read in this process, by the very same
code: the events, their order and every error are the same either way (tests compare them).
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import attrgetter, is_
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtray.core.events import EVENT_FIELDS, UsageEvent, event_errors
from llmtray.importers.base import Format, ImportFileError, Item, Options, Parsed, RowError, Skipped

try:
    import fcntl
except ImportError:  # Windows: the pipe keeps its default size
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from llmtray.core.pricing import Priced

PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # below this, starting a process (~0.3 s) costs more than it saves
CHUNK_ROWS = 1000
PIPE_BYTES = 1024 * 1024


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
    return size >= PARALLEL_MIN_BYTES and _usable_cores() > 1


def _usable_cores() -> int:
    """Cores this process may run on (a container or `taskset` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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
        # -P: no current directory on the path, where a stray pickle.py would be imported first
        process = subprocess.Popen([sys.executable, "-P", "-c", _READER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError:
        return None
    try:
        with process.stdin:
            pickle.dump([os.path.abspath(p) for p in sys.path], process.stdin)  # ours, where llmtray is found
            pickle.dump((fmt.name, path, options.mapping, options.fast, now), process.stdin)
    except OSError:  # it died before reading (a broken interpreter): read here
        process.kill()
        process.wait()
        process.stdout.close()
        return None
    _widen(process.stdout.fileno())
    return process


def _widen(pipe: int) -> None:
    """Room for a few chunks in the pipe (Linux allows 1 MiB unprivileged; the default 64 KiB
    holds a quarter of one): else the reader waits while we store a chunk, and we wait while it
    reads the next — one at a time again instead of side by side."""
    try:
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):  # not Linux, or a lower limit: the default still works
        pass


_READER = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
           "from llmtray.importers.pipeline import read_for_parent; read_for_parent()")


def _received(process: subprocess.Popen, options: Options) -> Iterator[Entry]:
    meter, stream = options.meter, process.stdout
    while True:
        try:
            kind, payload, done, total = pickle.load(stream)
        except EOFError:
            code = process.wait()
            raise ImportFileError(f"the file's reader process stopped unexpectedly (exit code {code})") from None
        meter.done, meter.total = done, total
        if kind == "rows":
            yield from unpack(payload)
        elif kind == "end":
            return
        elif kind == "file-error":
            raise ImportFileError(payload)
        else:
            raise RuntimeError(f"the file's reader process failed:\n{payload}")


def read_for_parent() -> None:
    """The reader process (stdin: what to read; stdout: pickled chunks, then `end` or what
    went wrong). Only ever run by `entries`, which trusts what it sends back."""
    format_name, path, mapping, fast, now = pickle.load(sys.stdin.buffer)
    out = os.fdopen(os.dup(1), "wb")  # the channel; a stray print() goes to stderr, not into it
    os.dup2(2, 1)
    from llmtray.importers import get_format

    gc.freeze()  # the modules just imported: never garbage, not worth scanning for each chunk
    options = Options(mapping=mapping, fast=fast)
    meter = options.meter

    def send(kind: str, payload: Any) -> None:
        if kind == "rows":
            payload = pack(payload)
        pickle.dump((kind, payload, meter.done, meter.total), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        _read_and_send(get_format(format_name), path, options, now, send)
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the importer stopped reading (cancelled, or failed storing)
    finally:
        try:
            out.close()
        except BrokenPipeError:
            pass


def _read_and_send(fmt: Format, path: Path, options: Options, now: datetime,
                   send: Callable[[str, Any], None]) -> None:
    chunk: list[Entry] = []
    try:
        for entry in validated(fmt.items(path, options), now):
            chunk.append(entry)
            if len(chunk) >= CHUNK_ROWS:
                send("rows", chunk)
                chunk = []
        send("rows", chunk)
        send("end", None)
    except ImportFileError as exc:
        send("rows", chunk)  # the rows before the problem, as when read in-process
        send("file-error", str(exc))
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except BaseException:  # noqa: BLE001 - reported to the importer, which raises it
        send("rows", chunk)
        send("crash", traceback.format_exc())

_FIELD_VALUES = tuple(attrgetter(name) for name in EVENT_FIELDS)
Packed = tuple[int, list[tuple[Any] | list[Any]], list[tuple[int, Entry]]]


def pack(chunk: list[Entry]) -> Packed:
    """A chunk as (number of events, their columns, the other entries with their positions). A
    column holding one object in every row is sent as a 1-tuple of it (identity, not equality:
    `Decimal('0.10') == Decimal('0.1')`, yet they are different texts)."""
    events = [e for e in chunk if type(e) is UsageEvent]
    others = [(i, e) for i, e in enumerate(chunk) if type(e) is not UsageEvent] if len(events) < len(chunk) else []
    columns: list[tuple[Any] | list[Any]] = []
    for value_of in _FIELD_VALUES:
        column = list(map(value_of, events))
        first = column[0] if column else None
        constant = column[-1] is first and all(map(is_, column, repeat(first))) if column else True
        columns.append((first,) if constant else column)
    return len(events), columns, others


def unpack(packed: Packed) -> Iterator[Entry]:
    """The chunk `pack` packed, in its order."""
    count, columns, others = packed
    events = map(UsageEvent, *(repeat(c[0], count) if type(c) is tuple else c for c in columns))
    if not others:
        yield from events
        return
    at = 0
    for position, entry in others:
        for _ in range(position - at):
            yield next(events)
        yield entry
        at = position + 1
    yield from events
