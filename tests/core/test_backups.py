"""Daily backups: real copies of a real database, checked before they rotate older ones out."""

from __future__ import annotations

import sqlite3
import time
from datetime import date, timedelta
from pathlib import Path

from llmtray.core.backups import KEEP, backup_if_due, list_backups
from llmtray.core.damage import damage_marker
from llmtray.core.events import parse_event
from llmtray.core.recovery import ensure_usable
from llmtray.core.store import Store
from tests.core.test_recovery import damage, fill
from tests.ingest.conftest import make_service

DAY = date(2026, 11, 20)


def events(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT event_id, cost_nanos, ts FROM event ORDER BY id").fetchall()
    finally:
        conn.close()


def test_a_copy_a_day_with_what_was_committed(data_dir):
    db = data_dir / "llmtray.db"
    fill(db)
    store = Store.open(db)  # committed but not checkpointed: in the WAL only, and still in the copy
    store.add([parse_event({"id": "late", "provider": "openai", "model": "gpt-4o", "input_tokens": 5})], "api")
    try:
        copy = backup_if_due(db, DAY)
        assert copy == data_dir / "backups" / "llmtray-2026-11-20.db"
        assert events(copy) == events(db) and ("late",) == events(copy)[-1][:1]
        assert not Path(f"{copy}-wal").exists()  # one self-contained file
        assert backup_if_due(db, DAY) is None  # one a day
    finally:
        store.close()


def test_the_newest_copies_are_kept(data_dir):
    db = data_dir / "llmtray.db"
    fill(db)
    for n in range(5):
        assert backup_if_due(db, DAY + timedelta(days=n)) is not None
    assert [p.name for p in list_backups(db)] == [f"llmtray-2026-11-{20 + n}.db" for n in range(5 - KEEP, 5)]


def test_a_damaged_database_makes_no_copy_and_is_marked_for_repair(data_dir):
    db = data_dir / "llmtray.db"
    fill(db)
    good = backup_if_due(db, DAY)
    damage(db, "event_row")
    assert backup_if_due(db, DAY + timedelta(days=1)) is None
    assert list_backups(db) == [good] and not list(good.parent.glob("*.partial"))
    assert damage_marker(db).exists()
    recovered = ensure_usable(db)  # the next start repairs, and points at the copy from before
    assert recovered is not None and recovered.backup is not None and recovered.backup.name == good.name
    assert recovered.backup.parent.name.startswith("before-recovery-") and str(recovered.backup) in recovered.message()
    for n in range(2, 2 + KEEP + 1):  # the next days' copies of the salvaged database don't rotate it out
        assert backup_if_due(db, DAY + timedelta(days=n)) is not None
    assert recovered.backup.exists() and len(list_backups(db)) == KEEP


def test_the_ingest_service_backs_up_in_the_background(data_dir):
    fill(data_dir / "llmtray.db")
    service = make_service(data_dir, backup_after=0.05)
    try:
        deadline = time.monotonic() + 30
        while not list_backups(data_dir / "llmtray.db"):
            assert time.monotonic() < deadline, "no backup was written"
            time.sleep(0.05)
    finally:
        service.stop()
    (copy,) = list_backups(data_dir / "llmtray.db")
    assert copy.name == f"llmtray-{date.today().isoformat()}.db" and len(events(copy)) == 6001


def test_stopping_midway_leaves_no_partial_copy_and_a_failed_round_none_either(data_dir):
    import threading

    db = data_dir / "llmtray.db"
    fill(db)
    stopping = threading.Event()
    stopping.set()  # quit while the copy is being taken
    assert backup_if_due(db, DAY, stopping=stopping) is None
    folder = data_dir / "backups"
    assert list_backups(db) == [] and list(folder.iterdir()) == [] and not damage_marker(db).exists()
    (folder / "llmtray-2026-11-20.db.partial").write_bytes(b"x" * 1000)  # a round killed meanwhile
    assert backup_if_due(db, DAY) is not None and [p.name for p in folder.iterdir()] == ["llmtray-2026-11-20.db"]


def test_a_copy_completes_while_the_writer_keeps_committing(data_dir, monkeypatch):
    """Copied in steps while events arrive: one read snapshot keeps SQLite from restarting the
    copy at every commit (without it a busy database never got a backup)."""
    import threading

    from llmtray.core import backups

    db = data_dir / "llmtray.db"
    fill(db)
    monkeypatch.setattr(backups, "_STEP_PAGES", 1)  # a step per page: a commit between most of them
    stop, written = threading.Event(), []

    def writer() -> None:
        store = Store.open(db)
        try:
            while not stop.is_set():
                n = len(written)
                store.add([parse_event({"id": f"live-{n}", "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 1})], "api")
                written.append(n)
        finally:
            store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    give_up = threading.Event()
    timer = threading.Timer(60, give_up.set)  # without the snapshot the copy restarts for ever
    timer.start()
    try:
        while len(written) < 5:
            time.sleep(0.01)
        started = time.monotonic()
        copy = backup_if_due(db, DAY, stopping=give_up)
        took = time.monotonic() - started
    finally:
        timer.cancel()
        stop.set()
        thread.join()
    assert copy is not None and written, "the copy must finish while commits go on"
    assert 6001 <= len(events(copy)) <= 6001 + len(written)  # a consistent snapshot from during the copy
    print(f"\nbacked up in {took:.2f} s while {len(written)} commits happened")
