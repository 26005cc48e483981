"""How damage to the database is recognised and remembered until the next start repairs it.

Kept apart from `recovery` (which repairs) so that everything that meets damage — a CLI command,
a dashboard reader, the writer, the daily backup's check — can report it without the repair
machinery, and without import cycles.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

DAMAGED = "The database is damaged"  # how messages about it start, wherever they are shown
_CORRUPTION_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes of the extended ones)


def is_corruption(exc: BaseException) -> bool:
    """SQLite's own verdict: the file is damaged, or not a database at all."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPTION_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def damage_marker(path: Path) -> Path:
    return path.with_name(path.name + ".damaged")


def mark_damaged(path: Path, exc: BaseException) -> None:
    """A reader or the writer met damage the start-up probe could not see: the next start repairs.
    (Moving a file that other threads and processes have open is not safe while running.)
    Written once: a dashboard refreshing every second on a damaged page keeps the first report."""
    if not isinstance(path, Path):  # a team's server repairs itself; nothing to set aside here
        log.error("the team database %s reported damage: %s", path, exc)
        return
    if damage_marker(path).exists():
        return
    try:
        damage_marker(path).write_text(f"{datetime.now().isoformat(timespec='seconds')} {exc}\n", encoding="utf-8")
    except OSError as err:
        log.error("could not mark %s as damaged: %s", path, err)
