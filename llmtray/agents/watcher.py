"""Live: backfill every agent's history once, then poll the known files and store new calls.

Runs on its own thread inside the app and `llmtray serve`, with its own read connection, storing
through the ingest `Writer` (one writer; the budget monitor, tray and dashboard hear each commit).
Polling a `stat` per known file every second is the mechanism, not a fallback: OS file events are
dropped under load and on network or WSL file systems, and 500 `stat` calls a second cost well
under a millisecond. New files and folders are found by a walk of the roots every 30 s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from llmtray.core import db as dbmod
from llmtray.agents.ledger import connect_local
from llmtray.agents.notices import cleanup_warning, first_start
from llmtray.agents.scanner import AgentReport, Scanner
from llmtray.agents.settings import AgentsConfig
from llmtray.agents.sinks import WriterSink
from llmtray.core.db import PRAGMAS
from llmtray.core.dburl import Database
from llmtray.ingest.writer import Writer

if TYPE_CHECKING:
    from llmtray.core.pricing import Pricer

log = logging.getLogger(__name__)

POLL_S = 1.0
DISCOVER_S = 30.0
_BACKOFF_S = 30.0  # after an unexpected error (database busy for long, a bug): try again later


class AgentWatcher:
    def __init__(self, db_path: Database, writer: Writer, config: AgentsConfig, *,
                 env: Mapping[str, str] | None = None, poll_s: float = POLL_S, discover_s: float = DISCOVER_S,
                 make_pricer: Callable[[], Pricer] | None = None, local_db: Path | None = None):
        """`local_db`: the data dir's own file, where this machine's ledger is kept in team mode."""
        self._db_path, self._writer, self._config = db_path, writer, config
        self._local_db = local_db
        self._make_pricer = make_pricer
        self._env = os.environ if env is None else env
        self._poll_s, self._discover_s = poll_s, discover_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backfilled = threading.Event()
        self.last: list[AgentReport] = []  # the latest pass that read something (bench/agents.py reports it)
        # Called on the watcher's thread with what to tell the user once (first start, Claude
        # Code's clean-up); the app forwards it to its window, `serve` logs it.
        self.on_notice: Callable[[str], None] = lambda text: log.warning("%s", text)

    def reconfigure(self, config: AgentsConfig) -> None:
        """New `[agents]` settings (Settings saved): which agents are read and how they bill,
        from the next pass on. Turning reading on when it was off at start needs a restart."""
        self._config = config

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llmtray-agents", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn = dbmod.connect(self._db_path, autocommit=True)
        conn.execute(f"PRAGMA busy_timeout = {PRAGMAS['busy_timeout']}")
        local = (connect_local(self._db_path, self._local_db) if self._local_db is not None else None) or conn
        try:
            scanner = Scanner(conn, WriterSink(self._writer), self._config, env=self._env, stopping=self._stop.is_set,
                              make_pricer=self._make_pricer, ledger_conn=local)
            if notice := first_start(local):
                self.on_notice(notice)
            next_discovery = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                discover = now >= next_discovery
                if discover:
                    next_discovery = now + self._discover_s
                scanner.config = self._config
                try:
                    reports = scanner.scan(discover=discover)
                except Exception:  # noqa: BLE001 - the watcher must outlive a bad pass
                    log.exception("reading the coding agents' logs failed; trying again in %.0f s", _BACKOFF_S)
                    self._stop.wait(_BACKOFF_S)
                    continue
                if discover and (warning := cleanup_warning(local, self._env)):  # days pass while we run
                    self.on_notice(warning)
                if not self.backfilled.is_set():
                    self.last = reports
                    self.backfilled.set()
                    added = sum(r.added for r in reports)
                    if added:
                        log.info("coding agents: %d calls read from %d log files",
                                 added, sum(r.files for r in reports))
                elif any(r.files_read or r.errors for r in reports):
                    self.last = reports
                self._stop.wait(self._poll_s)
        finally:
            conn.close()
            if local is not conn:
                local.close()
