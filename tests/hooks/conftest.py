"""Fixtures for the hook tests: a stub provider upstream, the real ingest service on a real SQLite
file, and a hook sender that lives and dies with each test (its data dir is the test's)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtray import paths
from llmtray.config import Config
from llmtray.core.store import event_json, iter_event_rows
from llmtray.hooks import enforce, sender
from llmtray.ingest.service import IngestService
from tests.hooks.stub_upstream import StubUpstream


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test starts (senders, servers, stubs) is gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while (left := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads left running: {[t.name for t in left]}"


@pytest.fixture
def hook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private data dir for the hooks (spool, ingest.json); the sender is stopped afterwards."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("LLMTRAY_DATA_DIR", str(data))
    monkeypatch.delenv("LLMTRAY_URL", raising=False)
    monkeypatch.delenv("LLMTRAY_TOKEN", raising=False)
    sender.shutdown(timeout=2)
    enforce.reset()
    yield data
    sender.shutdown(timeout=2)
    enforce.reset()


@pytest.fixture
def upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()
    yield stub
    stub.close()


def start_tray(data: Path) -> IngestService:
    """The real ingest service on a free port, announcing itself in `data`/ingest.json."""
    service = IngestService(paths.resolve(data), Config(), port=0)
    service.start()
    assert service.wait_ready(30)
    return service


@pytest.fixture
def tray(hook_env: Path) -> Iterator[IngestService]:
    service = start_tray(hook_env)
    yield service
    service.stop()


def stored(data: Path) -> list[dict[str, Any]]:
    """Every event in the tray's database, as exported JSON (cost, cost_source included)."""
    db = paths.resolve(data).db
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [event_json(row) for row in iter_event_rows(conn)]
    finally:
        conn.close()


def delivered(data: Path, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Flush the hook sender (it must succeed) and read back what the tray stored."""
    assert sender.get().flush(timeout), sender.get().stats()
    return stored(data)


def drained(data: Path, timeout: float = 10.0) -> list[dict[str, Any]]:
    """What the tray stored once no spool file is left: a file left by an ended process is
    delivered by whoever claims it first (the tray's own drain or a hooked process), and removed
    only after all of it was delivered or dead-lettered."""
    folder = paths.resolve(data).spool_dir
    deadline = time.monotonic() + timeout
    while list(folder.glob("hook-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(folder.glob("hook-*.jsonl")), "the spool was not delivered in time"
    return stored(data)


def plant(folder: Path, name: str, text: str) -> Path:
    """A spool file as an ended process leaves it: appearing whole (hooks write under a temporary
    name and rename), so a claimer never reads it half-written."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.planting"
    tmp.write_text(text)
    return tmp.rename(folder / name)
