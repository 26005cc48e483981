"""What is already stored from another path, for the calls OTLP can't give a shared id.

Claude Code's OTLP records know only the request id (`req_…`); its log files, read by the agents'
tailer, key each call by `message.id` (always present, unlike `requestId`) and keep the request id
in `request_id`. So a call read from the files first would be stored again when its OTLP record
arrives: `request_seen` finds it through the session (the tag index narrows it to one session's
calls). `session_seen` tells the metrics fallback whether a session has per-request records at all.

Both open a read-only connection per call: they run on the server's worker thread, a few times per
export, never on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from llmtray.core import db as dbmod


def _connect(db_path: Path) -> sqlite3.Connection:
    return dbmod.connect(db_path, read_only=True)


def session_stored(db_path: Path) -> Callable[[str], bool]:
    """Whether any per-request event (any source: OTLP, the agents' logs, the proxy, hooks) carries
    tag `session` = this session; events made from metrics don't count."""
    def known(session: str) -> bool:
        conn = _connect(db_path)
        try:
            row = conn.execute(
                "SELECT 1 FROM event_tag t JOIN event e ON e.id = t.event WHERE t.key = 'session' AND t.value = ? "
                "AND coalesce(json_extract(e.tags, '$.otel_profile'), '') NOT LIKE '%-metrics' LIMIT 1",
                (session,)).fetchone()
        finally:
            conn.close()
        return row is not None

    return known


def request_stored(db_path: Path) -> Callable[[str, str, str], bool]:
    """Whether a call with this provider request id is stored for this session (under another id)."""
    def known(provider: str, session: str, request_id: str) -> bool:
        conn = _connect(db_path)
        try:
            row = conn.execute(
                "SELECT 1 FROM event_tag t JOIN event e ON e.id = t.event WHERE t.key = 'session' AND t.value = ? "
                "AND e.provider = ? AND e.request_id = ? LIMIT 1", (session, provider, request_id)).fetchone()
        finally:
            conn.close()
        return row is not None

    return known
