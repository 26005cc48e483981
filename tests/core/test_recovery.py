"""A damaged database is set aside and salvaged, never a start-up loop: real files with real
damage (pages overwritten on disk), the real CLI and `llmtray serve`."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmtray.cli import main
from llmtray.core.events import parse_event
from llmtray.core.damage import damage_marker, is_corruption
from llmtray.core.recovery import ensure_usable
from llmtray.core.store import COLUMNS, Store
from llmtray.ingest import discovery
from tests.importers.conftest import assert_rollups_exact

N = 6000


def fill(path: Path) -> dict[int, tuple]:
    """N events (tags on every third, a reported cost on every fifth) plus an import with a row;
    checkpointed into the main file and closed. Returns the event rows by id."""
    store = Store.open(path)
    try:
        events = [parse_event({"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100 + i,
                               "output_tokens": i % 50, "ts": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                               "user": f"u{i % 5}", "latency_ms": 10.0 + i % 7,
                               **({"tags": {"team": "ab"[i % 2]}} if i % 3 == 0 else {}),
                               **({"cost_usd": "0.25"} if i % 5 == 0 else {})}) for i in range(N)]
        for i in range(0, N, 500):
            store.add(events[i:i + 500], "hook")
        dataset = store.create_dataset("usage.csv", "openai-usage", "/tmp/usage.csv")
        store.add([parse_event({"id": "imp-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 7,
                                "ts": "2026-09-01T00:00:00Z"})], "import:openai-usage", dataset)
        store.finish_dataset(dataset, rows_read=1, imported=1, duplicates=0, errors=0)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = {r[0]: r for r in store.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM event")}
    finally:
        store.close()
    return rows


def damage(path: Path, table: str, pages: int | None = 2) -> None:
    """Overwrite `pages` leaf pages in the middle of `table` (None: all of them) with garbage, on disk."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'"
                                             " ORDER BY pageno", (table,))]
    finally:
        conn.close()
    middle = len(leaves) // 2
    with open(path, "r+b") as f:
        for page in leaves if pages is None else leaves[middle:middle + pages]:
            f.seek((page - 1) * page_size)
            f.write(random.Random(page).randbytes(page_size))


def test_a_healthy_database_is_left_alone(data_dir):
    path = data_dir / "llmtray.db"
    fill(path)
    before = sorted(p.name for p in data_dir.iterdir())
    assert ensure_usable(path) is None
    assert ensure_usable(data_dir / "missing.db") is None  # a first start: nothing to check
    assert sorted(p.name for p in data_dir.iterdir()) == before


def test_damage_found_by_a_reader_is_repaired_at_the_next_start(data_dir, capsys):
    """The start-up probe can't see a damaged page deep in the event table; the first command that
    reads it says what to do and leaves a marker; the next start salvages every other row."""
    path = data_dir / "llmtray.db"
    original = fill(path)
    damage(path, "event_row")
    assert ensure_usable(path) is None  # the probe reads the roots only

    assert main(["--data-dir", str(data_dir), "export"]) == 2
    err = capsys.readouterr().err
    assert "is damaged (database disk image is malformed)" in err and "salvages every event it can read" in err
    assert damage_marker(path).exists()

    recovered = ensure_usable(path)
    assert recovered is not None and recovered.moved_to.exists() and not damage_marker(path).exists()
    assert recovered.moved_to.name.startswith("llmtray.db.damaged-")
    conn = sqlite3.connect(path)
    try:
        salvaged = {r[0]: r for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM event")}
        assert recovered.events == len(salvaged) and recovered.datasets == 1
        lost = set(original) - set(salvaged)
        assert 0 < len(lost) < N // 20 and recovered.unreadable == len(lost)  # two pages' worth, no more
        assert all(salvaged[i] == original[i] for i in salvaged)  # every salvaged row exactly as it was
        tags = {(e, k, v) for e, k, v in conn.execute("SELECT event, key, value FROM event_tag")}
        assert tags == {(i, k, v) for i, r in salvaged.items() if r[COLUMNS.index("tags")]
                        for k, v in json.loads(r[COLUMNS.index("tags")]).items()}
        assert conn.execute("SELECT name, state FROM dataset").fetchall() == [("usage.csv", "done")]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert_rollups_exact(conn)
    finally:
        conn.close()
    assert "The database was damaged" in recovered.message() and f"{len(lost):,} rows" in recovered.message()


def test_a_file_that_is_not_a_database_is_set_aside(data_dir):
    path = data_dir / "llmtray.db"
    path.write_bytes(random.Random(1).randbytes(64 * 1024))
    recovered = ensure_usable(path)
    assert recovered is not None and (recovered.events, recovered.datasets) == (0, 0)
    assert recovered.moved_to.read_bytes() == random.Random(1).randbytes(64 * 1024)  # kept as it was
    store = Store.open(path)  # a fresh, working database
    try:
        assert store.add([parse_event({"provider": "openai", "model": "gpt-4o", "input_tokens": 1})], "api").accepted == 1
    finally:
        store.close()


def test_imports_whose_dataset_row_is_lost_get_a_placeholder(data_dir):
    path = data_dir / "llmtray.db"
    fill(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("DROP TABLE dataset")  # as good as a lost page: its rows can't be read
    conn.commit()
    conn.close()
    damage_marker(path).write_text("test\n")
    recovered = ensure_usable(path)
    assert recovered is not None and recovered.events == N + 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name, format, state FROM dataset").fetchall() == [
            ("salvaged import 1", "unknown", "done")]
    finally:
        conn.close()
    assert main(["--data-dir", str(data_dir), "import", "--remove", "1"]) == 0  # still removable


def test_other_errors_are_not_mistaken_for_damage(tmp_path):
    path = tmp_path / "llmtray.db"
    path.mkdir()  # a directory where the file should be: SQLite can't open it, but nothing is damaged
    with pytest.raises(sqlite3.OperationalError) as caught:
        ensure_usable(path)
    assert not is_corruption(caught.value) and path.is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_starts_on_a_damaged_database_and_records(data_dir):
    path = data_dir / "llmtray.db"
    fill(path)
    damage(path, "sqlite_schema", pages=1)  # even the schema: nothing readable, still no start-up loop
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    try:
        deadline = time.monotonic() + 60
        while (found := discovery.read(data_dir / "ingest.json")) is None or found.pid != proc.pid:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reply = httpx.post(f"{found.url}/v1/events", headers={"Authorization": f"Bearer {found.token}"},
                           json={"id": "after", "provider": "openai", "model": "gpt-4o", "input_tokens": 3})
        assert reply.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "llmtray serve: The database was damaged. It was moved to" in err
    assert len([p for p in data_dir.glob("llmtray.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))]) == 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT event_id FROM event").fetchall() == [("after",)]
    finally:
        conn.close()


def test_budgets_and_alert_state_survive_a_repair(data_dir):
    path = data_dir / "llmtray.db"
    fill(path)
    assert main(["--data-dir", str(data_dir), "budgets", "add", "--name", "team", "--limit", "50",
                 "--period", "month"]) == 0
    damage(path, "event_row")
    damage_marker(path).write_text("test\n")
    recovered = ensure_usable(path)
    assert recovered is not None and recovered.lost == ()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name, limit_nanos, period FROM budget").fetchall() == [("team", 50 * 10**9, "month")]
    finally:
        conn.close()


def test_a_repair_cut_short_leaves_the_damaged_file_for_the_next_start(data_dir, monkeypatch):
    """Killed while salvaging (logout, out of memory): nothing was moved yet, the marker is still
    there, and the next start salvages everything, as if the first had never begun."""
    from llmtray.core import recovery

    path = data_dir / "llmtray.db"
    original = fill(path)
    damage(path, "event_row")
    damage_marker(path).write_text("test\n")
    real_copy = recovery._copy

    def killed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt  # what a signal does to the salvage, midway

    monkeypatch.setattr(recovery, "_copy", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_usable(path)
    assert damage_marker(path).exists() and not list(data_dir.glob("llmtray.db.damaged-*"))
    monkeypatch.setattr(recovery, "_copy", real_copy)
    recovered = ensure_usable(path)
    assert recovered is not None and N - N // 20 < recovered.events < len(original)
    assert not (data_dir / "llmtray.db.salvage").exists()


def test_a_marker_about_a_file_that_is_gone_is_forgotten(data_dir):
    """The user deleted the damaged file: the new database must not be 'repaired' next time."""
    path = data_dir / "llmtray.db"
    damage_marker(path).write_text("test\n")
    assert ensure_usable(path) is None and not damage_marker(path).exists()
    fill(path)
    assert ensure_usable(path) is None and not list(data_dir.glob("llmtray.db.damaged-*"))


def test_the_writer_marks_damage_it_meets(data_dir):
    """An index page the start-up probe never reads: the first write that needs it fails (and
    says so to its client), and the writer leaves the marker for the next start to repair."""
    from llmtray.ingest.writer import StoreFailed, Writer

    path = data_dir / "llmtray.db"
    fill(path)
    damage(path, "event_row_key", pages=None)  # the index of idempotency keys
    assert ensure_usable(path) is None
    writer = Writer(path)
    writer.start()
    try:
        future = writer.submit([parse_event({"id": "e-new", "provider": "openai", "model": "gpt-4o",
                                             "input_tokens": 1})], "api")
        with pytest.raises(StoreFailed, match="malformed"):
            future.result(30)
    finally:
        writer.stop()
    assert damage_marker(path).exists()
    assert ensure_usable(path) is not None


def test_a_start_killed_during_the_swap_finishes_it_next_time(data_dir, monkeypatch):
    """Killed between moving the damaged file aside and moving the salvage in: the next start
    finds the plan, finishes the swap and reports the repair (no empty database, nothing lost)."""
    from llmtray.core import recovery

    path = data_dir / "llmtray.db"
    fill(path)
    damage(path, "event_row")
    damage_marker(path).write_text("test\n")
    real_replace = os.replace

    def killed(src, dst):  # noqa: ANN001, ANN202
        if Path(dst) == path:  # the salvage's move into place (not the plan's)
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(recovery.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_usable(path)
    assert not path.exists() and (data_dir / "llmtray.db.salvage").exists()
    monkeypatch.setattr(recovery.os, "replace", real_replace)
    recovered = ensure_usable(path)
    assert recovered is not None and recovered.events > N - N // 20 and recovered.moved_to.exists()
    assert not damage_marker(path).exists() and not (data_dir / "llmtray.db.swap").exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM event").fetchone()[0] == recovered.events
    finally:
        conn.close()
    assert ensure_usable(path) is None  # and the next start is an ordinary one
