"""The writer thread on a real SQLite file: group commit, acknowledgement after commit, backlog, failures."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import wait

import pytest

from llmtray.core.commits import Committed
from llmtray.core.events import parse_event
from llmtray.ingest.writer import BacklogFull, StoreFailed, Writer, WriterStopped
from tests.ingest.conftest import count_events, event


def events(*ids: int) -> list:
    return [parse_event(event(i)) for i in ids]


@pytest.fixture
def writer(data_dir):
    w = Writer(data_dir / "llmtray.db")
    w.start()
    yield w
    w.stop()


def test_batches_waiting_together_share_one_commit(data_dir):
    gate, notices = threading.Event(), []

    def hold_first_commit(c: Committed) -> None:
        notices.append(c)
        gate.wait(10)

    w = Writer(data_dir / "llmtray.db")
    w.add_listener(hold_first_commit)
    w.start()
    try:
        first = w.submit(events(0), "api")
        first.result(10)  # committed; the writer is now held in the listener
        later = [w.submit(events(i, i + 100), "hook" if i % 2 else "api") for i in range(1, 6)]
        assert not any(f.done() for f in later)
        gate.set()
        wait(later, timeout=10)
    finally:
        gate.set()
        w.stop()
    assert [(f.result().accepted, f.result().duplicates) for f in later] == [(2, 0)] * 5
    assert len(notices) == 2  # the five queued batches went in one transaction
    assert notices[1].accepted == 10 and notices[1].sources == frozenset({"api", "hook"})
    assert count_events(data_dir / "llmtray.db") == 11


def test_acknowledged_means_readable_by_another_connection(writer, data_dir):
    future = writer.submit(events(1, 2), "api")
    assert future.result(10).accepted == 2
    assert count_events(data_dir / "llmtray.db") == 2


def test_backlog_is_bounded_in_events(data_dir):
    gate = threading.Event()
    w = Writer(data_dir / "llmtray.db", max_backlog=5)
    w.add_listener(lambda c: gate.wait(10))
    w.start()
    try:
        w.submit(events(0), "api").result(10)  # writer now held
        queued = w.submit(events(1, 2, 3), "api")
        with pytest.raises(BacklogFull, match="3 events waiting, limit 5") as info:
            w.submit(events(4, 5, 6), "api")
        assert info.value.retry_after >= 1
        gate.set()
        assert queued.result(10).accepted == 3
        assert w.submit(events(4, 5, 6), "api").result(10).accepted == 3  # room again
    finally:
        gate.set()
        w.stop()


def test_a_failing_batch_fails_alone(writer, data_dir):
    conn = sqlite3.connect(data_dir / "llmtray.db")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON event_row"
                 " WHEN NEW.model = (SELECT id FROM name WHERE text = 'boom') "
                 "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.commit()
    conn.close()
    bad = writer.submit([parse_event(event(1, model="boom"))], "api")
    with pytest.raises(StoreFailed, match="refused"):
        bad.result(10)
    assert writer.submit(events(2), "api").result(10).accepted == 1
    assert writer.backlog == 0


def test_a_broken_listener_does_not_stop_ingest(data_dir, caplog):
    w = Writer(data_dir / "llmtray.db")
    w.add_listener(lambda c: 1 / 0)
    w.start()
    try:
        assert w.submit(events(1), "api").result(10).accepted == 1
        assert w.submit(events(2), "api").result(10).accepted == 1
    finally:
        w.stop()
    assert "commit listener" in caplog.text


def test_stop_commits_everything_submitted_then_refuses(data_dir):
    gate = threading.Event()
    w = Writer(data_dir / "llmtray.db")
    w.add_listener(lambda c: gate.wait(10))
    w.start()
    w.submit(events(0), "api").result(10)
    pending = [w.submit(events(i), "api") for i in range(1, 20)]
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    gate.set()
    stopper.join(20)
    assert all(f.result(0).accepted == 1 for f in pending)
    with pytest.raises(WriterStopped):
        w.submit(events(99), "api")
    assert count_events(data_dir / "llmtray.db") == 20
    wal = data_dir / "llmtray.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed on the way out


def test_open_failure_is_raised_by_start(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    w = Writer(bad)
    with pytest.raises(sqlite3.DatabaseError):
        w.start()
    with pytest.raises(WriterStopped):
        w.submit(events(1), "api")
