"""A copy of the database each day, the last few kept (DESKTOP.md: rotated daily backups).

Salvaging a damaged file (`recovery`) saves every readable row, but a damaged schema page leaves
nothing readable; yesterday's copy bounds that loss to a day. The copy is taken with SQLite's
online backup API from a read snapshot, so the writer keeps committing meanwhile (WAL). Each
copy must pass `quick_check` before it joins the rotation: one that fails means the database
itself is damaged, so the copy is dropped (a good old backup is never rotated out for a bad new
one) and the database is marked for repair at the next start. No Qt here: the ingest service runs
`BackupScheduler` in the tray app and in `llmtray serve` alike.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import threading
from datetime import date
from pathlib import Path

from llmtray.core.damage import is_corruption, mark_damaged
from llmtray.core.db import remove_database_files
from llmtray.core.periodic import Periodic

log = logging.getLogger(__name__)

KEEP = 3
FIRST_AFTER_S = 600.0  # not in the start-up rush; a tray started at login backs up ten minutes later
CHECK_EVERY_S = 3600.0  # a machine that stays on makes its next day's copy within the hour
_STEP_PAGES = 4096  # 16 MB per backup step at SQLite's default page size: quitting waits for one step
_NAME = re.compile(r"llmtray-\d{4}-\d{2}-\d{2}\.db")


def backups_dir(db: Path) -> Path:
    return db.parent / "backups"


def list_backups(db: Path) -> list[Path]:
    """The daily copies of `db`, oldest first."""
    folder = backups_dir(db)
    return sorted(p for p in folder.iterdir() if _NAME.fullmatch(p.name)) if folder.is_dir() else []


def set_aside_backups(db: Path, stamp: str) -> Path | None:
    """After a repair: move the daily copies out of the rotation (to `before-recovery-<stamp>/`),
    so the next days' copies of the salvaged database never delete them. Returns the newest."""
    copies = list_backups(db)
    if not copies:
        return None
    folder = backups_dir(db) / f"before-recovery-{stamp}"
    folder.mkdir(mode=0o700, exist_ok=True)
    for copy in copies:
        copy.rename(folder / copy.name)
    return folder / copies[-1].name


class _Stopped(Exception):
    pass


def backup_if_due(db: Path, today: date, keep: int = KEEP, stopping: threading.Event | None = None) -> Path | None:
    """Make today's copy unless it exists, then delete all but the newest `keep`. Returns the new
    copy, or None when there was nothing to do (made already, no database, too little disk) or
    `stopping` was set meanwhile (the copy of a multi-GB database is taken in steps, so quitting
    does not wait for it; a partial copy never stays behind)."""
    target = backups_dir(db) / f"llmtray-{today.isoformat()}.db"
    if target.exists() or not db.exists():
        return None
    target.parent.mkdir(mode=0o700, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    for leftover in target.parent.glob("llmtray-*.db.partial"):  # stopped or failed rounds, any day:
        remove_database_files(leftover)  # before the space check, as they take space
    needed = db.stat().st_size * 2  # the copy, and room to spare for the database to grow
    if shutil.disk_usage(target.parent).free < needed:
        log.warning("no daily backup of %s: less than %d MB free in %s", db, needed >> 20, target.parent)
        return None

    def check_stop(*_: object) -> int:
        if stopping is not None and stopping.is_set():
            raise _Stopped
        return 0

    source, copy = sqlite3.connect(db, timeout=30), sqlite3.connect(partial)
    try:
        # One read snapshot for the whole copy: without it, each commit of the writer between two
        # steps makes SQLite restart the copy from page 1, and a busy database never gets one.
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()
        source.backup(copy, pages=_STEP_PAGES, progress=check_stop)
        source.execute("ROLLBACK")
        copy.set_progress_handler(lambda: int(stopping is not None and stopping.is_set()), 100_000)
        verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
    except _Stopped:
        verdict = None
    except sqlite3.DatabaseError as exc:
        if stopping is not None and stopping.is_set():
            verdict = None  # the check was interrupted
        elif is_corruption(exc):
            verdict = str(exc)
        else:
            copy.close()
            remove_database_files(partial)
            raise
    finally:
        copy.close()
        source.close()
    if verdict != "ok":
        remove_database_files(partial)
        if verdict is not None:
            log.error("the daily backup of %s failed its check (%s): the database is damaged", db, verdict)
            mark_damaged(db, sqlite3.DatabaseError(f"daily backup check: {verdict}"))
        return None
    partial.replace(target)
    for old in list_backups(db)[:-keep]:
        old.unlink()
    log.info("daily backup written: %s", target)
    return target


class BackupScheduler(Periodic):
    """Calls `backup_if_due` `first_after` seconds after start, then every `every` seconds; a
    failure (full disk, I/O error) is logged and retried next round."""

    def __init__(self, db: Path, *, first_after: float = FIRST_AFTER_S, every: float = CHECK_EVERY_S):
        super().__init__("llmtray-backup", first_after)
        self._db, self._every = db, every

    def interval(self) -> float:
        return self._every

    def round(self) -> None:
        try:
            backup_if_due(self._db, date.today(), stopping=self._stopping)
        except (OSError, sqlite3.Error) as exc:
            log.error("daily backup of %s failed: %s", self._db, exc)
