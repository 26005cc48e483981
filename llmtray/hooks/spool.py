"""The hook's disk spool: events that could not be delivered yet, kept until the server says 200.

Each process appends JSON lines to its own file in the spool folder and holds an exclusive lock
on it for as long as it lives. A file nobody holds a lock on belongs to a process that ended
(crashed, killed, or exited while the tray was down): any later process using the hooks claims
it by taking the lock and delivers it. Nothing is removed before the server acknowledged it:
lines are dropped from the front only after a 200, a fully delivered file is truncated (own) or
deleted (claimed). A process killed between the 200 and the truncation resends those events —
harmless, every event has an id.

Crash-safety: a half-written last line (the writer died mid-write) is ignored on read; any other
line that isn't JSON goes to the dead-letter file with its file and line number.
The spool is bounded (`max_events` per file): past the bound the oldest events are dropped and
counted (`dropped`), with a warning, never silently.

Other local users: every spool and dead-letter file is opened with `O_NOFOLLOW` and must be a
regular file owned by this user before it is claimed, read, written or deleted — a symlink or a
file planted by someone else in the folder is skipped with a warning, never followed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("llmtray.hooks")

SUFFIX = ".jsonl"
DEAD_LETTER = "dead-letter.jsonl"
READ_BLOCK = 1 << 20
COMPACT_MIN_BYTES = 1 << 20

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class ForeignFile(OSError):
    """A spool path that is a symlink, not a regular file, or owned by another user."""


def open_own(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` that never follows a symlink and accepts only a regular file owned by this user:
    the spool folder may be writable by others (a shared data dir), and a planted link or file
    must not make us read, append to or delete something that isn't ours."""
    try:
        fd = os.open(path, flags | NOFOLLOW | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as exc:
        if os.path.islink(path):
            raise ForeignFile(f"{path} is a symbolic link; spool files are never followed") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ForeignFile(f"{path} is not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ForeignFile(f"{path} is owned by uid {info.st_uid}, not by this user (uid {os.getuid()})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def encode(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for e in events)


@dataclass
class Chunk:
    """Up to `limit` spooled events; `commit(chunk)` after the server accepted them."""

    events: list[dict[str, Any]]
    owner: object  # the _File it came from
    end: int  # own file: sequence number after the last line; claimed file: byte offset after it


class _File:
    """An open, locked spool file."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def size(self) -> int:
        return os.fstat(self.fd).st_size


def _create_locked(folder: Path, stem: str) -> _File:
    """Create and lock a new file under a temporary name, then give it its real name: a file
    appears under `*.jsonl` only once locked, so no other process can mistake it for an orphan."""
    tmp = folder / f"{stem}.{uuid.uuid4().hex[:8]}.tmp"
    # O_APPEND: every write lands at the end, also after a failed write was truncated away
    fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    if not _try_lock(fd):  # pragma: no cover - a fresh unique file is never locked
        os.close(fd)
        raise OSError(f"could not lock new spool file {tmp}")
    final = folder / f"{stem}{SUFFIX}"
    os.replace(tmp, final)
    return _File(final, fd)


def _complete_lines(data: bytes) -> list[bytes]:
    """The newline-terminated lines in `data`; an unterminated tail (a write cut short) is left out."""
    return data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]


class Spool:
    """Thread-safe: the sender thread reads and commits; any thread may append (queue overflow,
    the exit flush)."""

    def __init__(self, folder: Path, max_events: int = 200_000, dead_letter: Path | None = None):
        self.folder = folder
        self.max_events = max_events
        self.dead_letter_path = dead_letter or folder / DEAD_LETTER
        self.dropped = 0
        self.spooled = 0
        self.dead_lettered = 0
        self._lock = threading.Lock()
        self._own: _File | None = None
        self._lines: deque[int] = deque()  # byte length of each undelivered line of the own file
        self._first_seq = 0  # sequence number of the first undelivered line
        self._start = 0  # byte offset of that line
        self._end = 0  # append position
        self._claimed: _File | None = None
        self._claimed_offset = 0
        self._closed = False
        self._foreign: set[str] = set()  # names already warned about (see `open_own`)

    # --- own file ------------------------------------------------------------------------

    def append(self, events: Sequence[dict[str, Any]]) -> None:
        """Write events to this process's file; raises OSError (disk full, read-only folder)."""
        if not events:
            return
        lines = [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for e in events]
        with self._lock:
            if self._closed:
                raise OSError("spool closed")
            own = self._own_file()
            data = b"".join(lines)
            try:
                written = 0
                while written < len(data):
                    written += os.write(own.fd, data[written:])
            except OSError:
                os.ftruncate(own.fd, self._end)  # never leave a half line that the next append would extend
                raise
            self._end += len(data)
            self._lines.extend(len(line) for line in lines)
            self.spooled += len(lines)
            self._enforce_bound()

    def _own_file(self) -> _File:
        if self._own is None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._own = _create_locked(self.folder, f"hook-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            self._lines.clear()
            self._start = self._end = 0
        return self._own

    def _enforce_bound(self) -> None:
        excess = len(self._lines) - self.max_events
        if excess <= 0:
            return
        for _ in range(excess):
            self._start += self._lines.popleft()
        self._first_seq += excess
        self.dropped += excess
        log.warning("llmtray spool is full (%d events): dropped the %d oldest, %d dropped in total",
                    self.max_events, excess, self.dropped)
        if self._start >= COMPACT_MIN_BYTES and self._start * 2 >= self._end:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the own file without its delivered or dropped prefix (under a new lock)."""
        assert self._own is not None
        old = self._own
        try:
            new = _create_locked(self.folder, f"hook-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        except OSError as exc:
            log.warning("llmtray spool: could not compact %s: %s", old.path, exc)
            return
        pos = self._start
        while pos < self._end:
            block = os.pread(old.fd, min(READ_BLOCK, self._end - pos), pos)
            if not block:
                break
            os.write(new.fd, block)
            pos += len(block)
        os.unlink(old.path)
        os.close(old.fd)
        self._own = new
        self._end -= self._start
        self._start = 0

    # --- reading and committing ----------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self._lines) or self._claimed is not None

    def next_chunk(self, limit: int) -> Chunk | None:
        """The oldest undelivered events: a claimed orphan file first, then the own file."""
        with self._lock:
            while self._claimed is not None:
                chunk = self._read_claimed(limit)
                if chunk is not None:
                    return chunk
                self._claim_next()  # that orphan is done: more may be waiting
            if self._closed or not self._lines or self._own is None:
                return None
            n = min(limit, len(self._lines))
            size = sum(self._lines[i] for i in range(n))
            data = os.pread(self._own.fd, size, self._start)
            own, seq, start = self._own, self._first_seq, self._start
        events = self._parse(data.split(b"\n")[:-1], own.path, start)
        return Chunk(events, own, seq + n)

    def _read_claimed(self, limit: int) -> Chunk | None:
        claimed = self._claimed
        assert claimed is not None
        pos = self._claimed_offset
        buf = b""
        while True:
            block = os.pread(claimed.fd, READ_BLOCK, pos + len(buf))
            buf += block
            if not block or buf.count(b"\n") >= limit:
                break
        lines = _complete_lines(buf)[:limit]
        if not lines:
            if buf:
                log.warning("llmtray spool: ignored a half-written last line in %s", claimed.path)
            self._finish_claimed()
            return None
        end = pos + sum(len(line) + 1 for line in lines)
        return Chunk(self._parse(lines, claimed.path, pos), claimed, end)

    def _parse(self, lines: list[bytes], path: Path, offset: int) -> list[dict[str, Any]]:
        """JSON objects from spool lines; any other line is dead-lettered with where it was."""
        events: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        at = offset
        for line in lines:
            try:
                event = json.loads(line)
                reason = "not a JSON object"
            except ValueError as exc:
                event, reason = None, str(exc)
            if isinstance(event, dict):
                events.append(event)
            else:
                bad.append({"error": f"unreadable spool line at byte {at} of {path.name}: {reason}",
                            "line": line[:2000].decode("utf-8", "replace")})
            at += len(line) + 1
        if bad:
            self.dead_letter(bad)
        return events

    def commit(self, chunk: Chunk) -> None:
        """The server accepted `chunk`: forget it, truncating or deleting a file once all of it is."""
        with self._lock:
            if chunk.owner is self._claimed:
                self._claimed_offset = max(self._claimed_offset, chunk.end)
                return
            if chunk.owner is not self._own or self._own is None:
                return
            while self._lines and self._first_seq < chunk.end:
                self._start += self._lines.popleft()
                self._first_seq += 1
            if not self._lines and not self._closed:
                os.ftruncate(self._own.fd, 0)
                self._start = self._end = 0

    def _finish_claimed(self) -> None:
        claimed = self._claimed
        assert claimed is not None
        try:
            os.unlink(claimed.path)
        except FileNotFoundError:
            pass
        os.close(claimed.fd)
        self._claimed = None
        self._claimed_offset = 0

    # --- orphans -------------------------------------------------------------------------

    def claim_orphan(self) -> bool:
        """Take over one spool file left by a process that ended; True if one was claimed."""
        with self._lock:
            return self._claim_next()

    def _claim_next(self) -> bool:
        if self._claimed is not None:
            return True
        if self._closed:
            return False
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return False
        own = self._own.path.name if self._own else None
        for name in names:
            if name == own or name == self.dead_letter_path.name:
                continue
            if name.endswith(".tmp"):
                self._remove_stale_tmp(self.folder / name)
                continue
            if not name.endswith(SUFFIX):
                continue
            claimed = self._try_claim(self.folder / name)
            if claimed is None:
                continue
            if claimed.size() == 0:
                os.unlink(claimed.path)
                os.close(claimed.fd)
                continue
            self._claimed, self._claimed_offset = claimed, 0
            log.info("llmtray spool: delivering %s left by an earlier process", claimed.path.name)
            return True
        return False

    def _try_claim(self, path: Path) -> _File | None:
        try:
            fd = open_own(path, os.O_RDWR)
        except ForeignFile as exc:
            self._warn_foreign(path, exc)
            return None
        except OSError:
            return None
        try:
            # the lock must be on the file the name still points to (its owner may have just
            # compacted it into a new file under the same name)
            if _try_lock(fd) and os.fstat(fd).st_ino == os.lstat(path).st_ino:
                return _File(path, fd)
        except OSError:
            pass
        os.close(fd)
        return None

    def _warn_foreign(self, path: Path, exc: ForeignFile) -> None:
        """Once per path: a planted file is reported, not retried into the log every scan."""
        if path.name not in self._foreign:
            self._foreign.add(path.name)
            log.warning("llmtray spool: skipped a file that is not ours: %s", exc)

    @staticmethod
    def _remove_stale_tmp(path: Path) -> None:
        try:
            fd = open_own(path, os.O_RDWR)
        except OSError:
            return
        try:
            if _try_lock(fd) and os.fstat(fd).st_size == 0:
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)

    # --- dead letters and lifetime ----------------------------------------------------------

    def dead_letter(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append entries (`error`, `event` or `line`) to the dead-letter file, never raising."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = encode({"at": stamp, **e} for e in entries)
        try:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = open_own(self.dead_letter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            self.dead_lettered += len(entries)
            log.warning("llmtray: %d event(s) rejected, kept in %s: %s", len(entries), self.dead_letter_path,
                        entries[0].get("error"))
        except OSError as exc:
            log.error("llmtray: could not write the dead-letter file %s (%s); lost %d event(s): %s",
                      self.dead_letter_path, exc, len(entries), entries[0].get("error"))

    def close(self) -> None:
        """Release the files; an own file with undelivered events stays for a later process."""
        with self._lock:
            self._closed = True
            if self._claimed is not None:
                os.close(self._claimed.fd)  # not finished: the next process claims it again
                self._claimed = None
            if self._own is not None:
                if not self._lines:
                    try:
                        os.unlink(self._own.path)
                    except FileNotFoundError:
                        pass
                os.close(self._own.fd)
                self._own = None

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors without unlocking (the lock belongs
        to the parent's open file; closing a duplicate leaves it held)."""
        for f in (self._own, self._claimed):
            if f is not None:
                try:
                    os.close(f.fd)
                except OSError:
                    pass
        self._own = self._claimed = None
        self._lines = deque()
        self._closed = True
