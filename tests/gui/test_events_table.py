"""The events table over a million stored events: it loads pages as the view scrolls, never the lot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from llmtray import demo
from llmtray.core.db import open_db, rebuild_rollups
from llmtray.core.queries import Filters
from llmtray.core.store import Store, count_events
from llmtray.gui.events_table import COLUMNS, EventsModel, EventsTable
from llmtray.gui.query_worker import QueryLane, Sources
from llmtray.gui.views import EVENTS_PAGE

WEEK_US = 7 * 86_400_000_000
TOTAL = 1_000_000


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A week of demo traffic, repeated week after week back in time until there are a million
    events — copied inside SQLite (then the rollups rebuilt from it), since a million
    `Store.add` calls would take minutes."""
    path = tmp_path_factory.mktemp("million") / "llmtray.db"
    store = Store.open(path)
    try:
        seed = demo.fill(store, days=7, per_day=800, seed=3, now=datetime.now(UTC))
        # the compact rows, copied as they are (ids into the same names), without their keys
        cols = [r[1] for r in store.conn.execute("PRAGMA table_info(event_row)")
                if r[1] not in ("id", "event_id", "key_hash", "id_prefix")]
        copies = -(-TOTAL // seed) - 1
        store.conn.execute("BEGIN")
        store.conn.execute(
            f"WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {copies})"
            f" INSERT INTO event_row ({', '.join(cols)})"
            f" SELECT {', '.join(f'e.ts - k.i * {WEEK_US}' if c == 'ts' else f'e.{c}' for c in cols)}"
            " FROM k, event_row e"
        )
        rebuild_rollups(store.conn)  # a plain-SQL copy bypasses the store, which keeps the rollups
        store.conn.execute("COMMIT")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return path


@pytest.mark.slow
def test_a_million_rows_scroll_without_loading_them_all(qtbot, million):
    db = open_db(million)
    conn = db.connection()
    total = count_events(conn)
    newest_first = [r[0] for r in conn.execute("SELECT id FROM event ORDER BY ts DESC, id DESC LIMIT 1200")]
    most_expensive = conn.execute("SELECT max(cost_nanos) FROM event").fetchone()[0]
    db.close()
    assert total >= TOTAL

    lane = QueryLane("events", Sources(million, None))
    model = EventsModel(None)
    model.page_wanted.connect(lane.fetch_page)
    lane.page_ready.connect(model.add_page)
    table = EventsTable(model)
    qtbot.addWidget(table)
    table.resize(1200, 600)
    table.show()
    try:
        model.set_filters(Filters())
        qtbot.waitUntil(lambda: model.rowCount() == EVENTS_PAGE, timeout=10_000)
        for pages in range(2, 6):
            table.view.scrollToBottom()  # the view asks the model for more as it reaches the end
            qtbot.waitUntil(lambda: model.rowCount() == pages * EVENTS_PAGE, timeout=10_000)
        assert model.fetched() == 5 * EVENTS_PAGE
        assert model.fetched() * 100 < total  # a thousand rows in memory, not a million
        assert [row["id"] for row in model._rows] == newest_first[:model.fetched()]
        assert table.status.text().startswith(f"{model.fetched():,} ")

        cost = [key for _, key in COLUMNS].index("cost_nanos")
        with qtbot.waitSignal(model.modelReset, timeout=10_000):
            table.view.sortByColumn(cost, Qt.SortOrder.DescendingOrder)
        qtbot.waitUntil(lambda: model.rowCount() == EVENTS_PAGE, timeout=30_000)
        assert model._rows[0]["cost_nanos"] == most_expensive
    finally:
        lane.stop()
