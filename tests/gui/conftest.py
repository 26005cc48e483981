"""Fixtures for the dashboard tests: demo databases (built once per session) and a window on them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmtray import demo
from llmtray.core.store import Store

DEMO_DAYS, DEMO_PER_DAY, DEMO_SEED = 16, 300, 7


@pytest.fixture(scope="session")
def demo_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three weeks of demo traffic ending now (so today and the live hour have events)."""
    path = tmp_path_factory.mktemp("demo") / "llmtray.db"
    store = Store.open(path)
    try:
        demo.fill(store, days=DEMO_DAYS, per_day=DEMO_PER_DAY, seed=DEMO_SEED, now=datetime.now(UTC))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return path


@pytest.fixture
def demo_db(demo_db_template: Path, tmp_path: Path) -> Path:
    """A private copy, so a test that writes cannot disturb another."""
    path = tmp_path / "demo" / "llmtray.db"
    path.parent.mkdir()
    shutil.copy(demo_db_template, path)
    return path


@pytest.fixture
def make_dashboard(qtbot) -> Iterator[Callable[..., object]]:
    """Build a shown dashboard on a database and wait for its first full refresh."""
    from llmtray.gui.dashboard import Dashboard
    from llmtray.gui.query_worker import Sources

    made = []

    def make(db: Path, **sources):
        window = Dashboard(Sources(db, None, **sources), base_url="http://127.0.0.1:8787", can_import=False)
        qtbot.addWidget(window)
        made.append(window)
        with qtbot.waitSignal(window.settled, timeout=20_000):
            window.show()
        return window

    yield make
    for window in made:
        window.shutdown()
