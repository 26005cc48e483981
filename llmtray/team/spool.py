"""Where a team machine's events wait while the team database can't be reached.

The ingest writer keeps accepting (DESIGN §16): while PostgreSQL is unreachable, each batch is
committed to a SQLite file in the data dir instead — the same store, priced and idempotent, so
acknowledged still means durable — and when the server answers again the file is delivered
through `team.copy` (costs as they were priced, the same ids, id-less events under ids derived
from the spool's identity: a delivery cut short and run again adds nothing twice) and deleted.

Kept apart from the data dir's own `llmtray.db`: that one may hold the machine's history from
before team mode, which only an explicit `llmtray db copy` moves.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from llmtray.core import db as dbmod
from llmtray.core.dburl import PostgresUrl
from llmtray.core.pricing import Pricer
from llmtray.core.store import Store, count_events
from llmtray.team.copy import CopyResult, copy_events

log = logging.getLogger(__name__)
SPOOL_NAME = "team-spool.db"


def broken(store: Store) -> bool:
    """Whether the store's PostgreSQL connection died under it."""
    raw = getattr(store.conn, "raw", None)
    return raw is not None and (raw.closed or raw.broken)


class Spool:
    """The spool file of one data dir; used on the writer thread only."""

    def __init__(self, path: Path, make_pricer: Callable[[], Pricer]):
        self.path = path
        self._make_pricer = make_pricer
        self._store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.path, self._make_pricer())
        return self._store

    def pending(self) -> int:
        """Events waiting for delivery."""
        if self._store is None and not self.path.exists():
            return 0
        try:
            return count_events(self.store().conn)
        except sqlite3.Error as exc:
            log.error("cannot read the team spool %s: %s", self.path, exc)
            return 0

    def deliver(self, target: PostgresUrl) -> CopyResult:
        """Copy every waiting event into `target`, then delete the spool file."""
        result = CopyResult()
        if not self.pending():
            return result
        self.close()
        result = copy_events(self.path, target)
        dbmod.remove_database_files(self.path)
        log.warning("delivered %d events kept while the team database was unreachable (%d were there already)",
                    result.copied, result.already)
        return result

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
