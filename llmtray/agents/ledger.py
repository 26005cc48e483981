"""The tailer's persisted state (`agent_file`, DB migration 7) and what is already stored.

Read on the scanner's own connection. State rows are written *after* the calls they cover were
committed: a crash in between re-reads those lines on the next start, and their deterministic ids
make that a no-op.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from llmtray.agents.calls import TOKEN_KEYS
from llmtray.agents.tailer import FileState
from llmtray.core import compact, db as dbmod
from llmtray.core.dburl import Database, PostgresUrl

_COLUMNS = ("path", "source", "dev", "ino", "size", "mtime_ns", "offset", "head_hash", "head_len",
            "state", "skipped", "events")


def load(conn: sqlite3.Connection, source: str) -> dict[str, FileState]:
    out: dict[str, FileState] = {}
    for row in conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM agent_file WHERE source = ?", (source,)):
        path, src, dev, ino, size, mtime_ns, offset, head_hash, head_len, state, skipped, events = row
        extra = json.loads(state) if state else {}
        out[path] = FileState(path, src, dev, ino, size, mtime_ns, offset, head_hash, head_len,
                              extra.get("line", 0), extra.get("reader"), json.loads(skipped) if skipped else {},
                              events)
    return out


def save(conn: sqlite3.Connection, states: Iterable[FileState]) -> None:
    rows = [(fs.path, fs.source, fs.dev, fs.ino, fs.size, fs.mtime_ns, fs.offset, fs.head_hash, fs.head_len,
             fs.state_json(), json.dumps(fs.skipped, ensure_ascii=False) if fs.skipped else None, fs.events)
            for fs in states]
    if not rows:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(f"INSERT INTO agent_file ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
                         f" ON CONFLICT (path) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}",
                         rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def forget(conn: sqlite3.Connection, paths: Sequence[str]) -> None:
    """Files that are gone (Claude Code's clean-up, Codex's archiving): their events stay."""
    if paths:
        conn.executemany("DELETE FROM agent_file WHERE path = ?", [(p,) for p in paths])


def stored(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """For the ids already stored: their source and token counts (to tell a duplicate from a
    call that grew since it was stored)."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    cols = ", ".join(TOKEN_KEYS)
    rows = compact.find(conn, ids)  # by the index of key hashes
    by_row = {row_id: event_id for event_id, row_id in rows.items()}
    found = list(by_row)
    for start in range(0, len(found), 500):
        chunk = found[start:start + 500]
        for row_id, source, *tokens in conn.execute(
            f"SELECT id, source, {cols} FROM event WHERE id IN ({', '.join('?' * len(chunk))})", chunk
        ):
            out[by_row[row_id]] = (source, tuple(tokens))
    return out


def get_flag(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM alert_state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_flag(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO alert_state (key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def stored_count(conn: sqlite3.Connection, source: str) -> int:
    """Events stored for `source`, from the 15-minute rollup (no scan of the events)."""
    return conn.execute("SELECT coalesce(sum(events), 0) FROM rollup WHERE source = ?", (source,)).fetchone()[0]


def connect_local(database: Database, local: Path) -> sqlite3.Connection | None:
    """In team mode, this machine's own ledger: the files one machine has read, and its notices,
    are nobody else's (two CI runners have the same paths), so they stay in the data dir's SQLite
    file while the events go to the team database. None when the events' database is that file."""
    if not isinstance(database, PostgresUrl):
        return None
    local.parent.mkdir(parents=True, exist_ok=True)
    dbmod.migrate(local)
    conn = dbmod.connect(local, autocommit=True)
    conn.execute(f"PRAGMA busy_timeout = {dbmod.PRAGMAS['busy_timeout']}")
    return conn
