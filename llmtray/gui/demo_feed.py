"""`--demo`: fill the demo database with 90 days on first run, then trickle live events so the
charts move. Runs on a plain thread with its own connection (the GUI never writes).

Live events go through the embedded ingest service when there is one — the same door real hooks
use, so the demo exercises the real path — and otherwise straight into a `Store`, announcing
each commit through the same bridge the ingest writer would use.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any

import httpx

from llmtray import demo
from llmtray.core.commits import Committed
from llmtray.core.events import UsageEvent
from llmtray.core.pricing import Pricer
from llmtray.core.store import Store, count_events

log = logging.getLogger(__name__)

LIVE_EVERY_S = (1.5, 4.0)  # a call every couple of seconds looks alive without being noise


class DemoFeed:
    """Start with `start()`; `history_loaded` is set once the database has its history."""

    def __init__(self, db_path: Path, notify: Callable[[Committed], None], *, tz: tzinfo | None,
                 pricer: Callable[[], Pricer] = Pricer, ingest: Any = None, live: bool = True,
                 days: int = 90, per_day: int = demo.DEFAULT_PER_DAY, seed: int = 1,
                 on_loaded: Callable[[], None] | None = None):
        self._db_path, self._notify, self._tz = db_path, notify, tz
        self._pricer, self._ingest, self._live = pricer, ingest, live
        self._days, self._per_day, self._seed = days, per_day, seed
        self._on_loaded = on_loaded
        self.history_loaded = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtray-demo-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        store = Store.open(self._db_path, self._pricer())
        try:
            if count_events(store.conn) == 0:
                log.info("filling the demo database with %d days of traffic", self._days)
                stored = [0]

                def progress(total: int) -> None:  # each chunk is a commit: the charts fill as it loads
                    self._notify(Committed(total - stored[0], 0, None, None, frozenset(demo.SOURCES)))
                    stored[0] = total

                demo.add_budgets(store)  # first: the KPI strip said "no budget" while the history loaded
                demo.fill(store, days=self._days, seed=self._seed, per_day=self._per_day, tz=self._tz,
                          progress=progress)
            self.history_loaded.set()
            if self._on_loaded is not None:
                self._on_loaded()
            if self._live:
                self._trickle(store)
        except Exception:
            log.exception("demo feed stopped")
        finally:
            self.history_loaded.set()
            store.close()

    def _trickle(self, store: Store) -> None:
        rng = random.Random()
        client = httpx.Client(timeout=10) if self._ingest is not None else None
        try:
            while not self._stop.wait(rng.uniform(*LIVE_EVERY_S)):
                events = demo.live_events(rng)
                if not events:
                    continue
                if client is not None:
                    self._post(client, events)
                else:
                    result = store.add(events, "hook")
                    self._notify(Committed(result.accepted, result.duplicates, result.first_ts_us,
                                           result.last_ts_us, frozenset({"hook"})))
        finally:
            if client is not None:
                client.close()

    def _post(self, client: httpx.Client, events: list[UsageEvent]) -> None:
        """Through the real ingest API: the service commits, then its writer tells the bridge."""
        try:
            response = client.post(f"{self._ingest.url}/v1/events", json=[e.to_json() for e in events],
                                   headers={"Authorization": f"Bearer {self._ingest.token}",
                                            "X-LLMTray-Source": "hook"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("demo event not accepted by the ingest service: %s", exc)
