"""Reading a growing log file from where the last read stopped, shared by every agent.

Per file we keep the device and inode, the size and mtime seen, the byte offset just past the last
complete line, and a hash of the first bytes. An unchanged size and mtime costs one `stat`. A new
inode, a file shorter than the offset (truncated) or a different head (replaced in place) is read
again from byte 0: the calls' ids are deterministic, so a re-read stores nothing twice (and a
newly found file is always read from its start: starting at its end would lose history). A last
line without its `\\n` is held back until it is complete. Lines are streamed in 1 MiB blocks and
only those holding one of the agent's byte markers are parsed, so multi-GB transcripts and
multi-MB tool-output lines cost a scan of their bytes, not memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtray.agents.base import Reader
from llmtray.agents.calls import Call, Skip

HEAD_BYTES = 4096
BLOCK = 1 << 20
MAX_LINE = 16 << 20  # longer lines are skipped (with the reason): a cap on memory, not on files
MAX_DOCUMENT = 64 << 20  # a whole-document log (legacy Gemini, opencode JSON) larger than this is skipped


@dataclass
class FileState:
    """One log file's row in `agent_file` (DB migration 7)."""

    path: str
    source: str
    dev: int = 0
    ino: int = 0
    size: int = 0
    mtime_ns: int = 0
    offset: int = 0
    head_hash: str = ""
    head_len: int = 0
    line: int = 0  # complete lines consumed, for "line N" in skip reasons
    reader: dict[str, Any] | None = None
    skipped: dict[str, list[int]] = field(default_factory=dict)  # reason -> [count, first line]
    events: int = 0

    def skip(self, reason: str, line: int) -> None:
        entry = self.skipped.setdefault(reason[:300], [0, line])
        entry[0] += 1

    def state_json(self) -> str:
        return json.dumps({"line": self.line, "reader": self.reader}, separators=(",", ":"))


def _head_hash(f: Any, length: int) -> str:
    f.seek(0)
    return hashlib.sha1(f.read(length)).hexdigest()


def changed(st: os.stat_result, fs: FileState) -> bool:
    """Whether the file may hold something not read yet (cheap: no I/O beyond the stat)."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev) != (fs.size, fs.mtime_ns, fs.ino, fs.dev)


def read_new(fs: FileState, st: os.stat_result, markers: tuple[bytes, ...],
             make_reader: Callable[[dict[str, Any] | None], Reader], emit: Callable[[Call], None]) -> None:
    """Read what `fs` has not seen yet, calling `emit` with each call found; updates `fs`."""
    with open(fs.path, "rb") as f:
        restart = (st.st_ino, st.st_dev) != (fs.ino, fs.dev) or st.st_size < fs.offset
        if not restart and fs.head_len and _head_hash(f, fs.head_len) != fs.head_hash:
            restart = True
        if restart:
            fs.offset, fs.line, fs.reader, fs.skipped = 0, 0, None, {}
        fs.dev, fs.ino = st.st_dev, st.st_ino
        fs.head_len = min(HEAD_BYTES, st.st_size)
        fs.head_hash = _head_hash(f, fs.head_len)
        f.seek(0)
        if fs.offset == 0 and b"\x00" in f.read(HEAD_BYTES):
            fs.skip("binary file (NUL bytes): not a JSON-lines log", 1)
            fs.offset, fs.size, fs.mtime_ns = st.st_size, st.st_size, st.st_mtime_ns
            return
        reader = make_reader(fs.reader)
        f.seek(fs.offset)
        _read_lines(f, fs, markers, reader, emit)
        fs.reader = reader.state()
        fs.size, fs.mtime_ns = st.st_size, st.st_mtime_ns


def read_document(fs: FileState, st: os.stat_result, reader: Reader, emit: Callable[[Call], None]) -> None:
    """A log that is one JSON document rewritten whole: read all of it again after each change
    (its calls' ids make that idempotent)."""
    fs.skipped = {}
    if st.st_size > MAX_DOCUMENT:
        fs.skip(f"document larger than {MAX_DOCUMENT >> 20} MB ({st.st_size >> 20} MB)", 1)
    else:
        with open(fs.path, "rb") as f:
            raw = f.read(MAX_DOCUMENT + 1)
        try:
            record = json.loads(raw)
        except UnicodeDecodeError:
            fs.skip("not UTF-8 text", 1)
        except ValueError as exc:
            fs.skip(f"malformed JSON ({str(exc).split(':')[0]})", 1)
        else:
            feed_record(fs, record, 1, reader, emit)
        fs.reader = reader.state()
    fs.dev, fs.ino, fs.size, fs.mtime_ns, fs.offset = st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_size


def feed_record(fs: FileState, record: Any, line: int, reader: Reader, emit: Callable[[Call], None]) -> None:
    """One parsed record to its reader: the calls go to `emit`, a problem becomes a skip reason."""
    if not isinstance(record, dict):
        fs.skip("not a JSON object", line)
        return
    try:
        call = reader.feed(record, line)
    except Skip as why:
        fs.skip(str(why), line)
        return
    if call is not None:
        if type(call) is list:
            for one in call:
                emit(one)
        else:
            emit(call)


def _read_lines(f: Any, fs: FileState, markers: tuple[bytes, ...], reader: Reader, emit: Callable[[Call], None]) -> None:
    offset, line_no = fs.offset, fs.line
    carry: list[bytes] = []  # the start of a line that continues in the next block
    carried = 0
    too_long = False
    loads = json.loads
    single = markers[0] if len(markers) == 1 else None  # the usual case, checked without a generator
    while block := f.read(BLOCK):
        lines = block.split(b"\n")
        tail = lines.pop()  # after the last newline: incomplete so far
        for i, raw in enumerate(lines):
            if i == 0 and (carry or too_long):
                length = carried + len(raw)
                if too_long:
                    line_no += 1
                    fs.skip(f"line longer than {MAX_LINE >> 20} MB ({length >> 20} MB)", line_no)
                    offset += length + 1
                    carry, carried, too_long = [], 0, False
                    continue
                raw = b"".join(carry) + raw
                carry, carried = [], 0
            line_no += 1
            offset += len(raw) + 1
            if (single is not None and single not in raw) or (single is None and not any(m in raw for m in markers)):
                continue
            try:
                record = loads(raw)
            except UnicodeDecodeError:
                fs.skip("not UTF-8 text", line_no)
                continue
            except ValueError as exc:
                fs.skip(f"malformed JSON ({str(exc).split(':')[0]})", line_no)
                continue
            feed_record(fs, record, line_no, reader, emit)
        if tail:
            if not too_long:
                carry.append(tail)
            carried += len(tail)
            if carried > MAX_LINE and not too_long:
                too_long, carry = True, []
    fs.offset, fs.line = offset, line_no
