"""The spool file itself: append-only lines, commit-then-truncate, the bound and compaction, and
the lock that tells a live process's file from an orphan — on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmtray.hooks import spool as spool_module
from llmtray.hooks.spool import Spool


def ev(i: int, pad: int = 0) -> dict:
    return {"id": f"s{i:05}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": i, "tags": {"pad": "x" * pad}}


def own_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("hook-*.jsonl"))


def drain(s: Spool, limit: int = 500) -> list[str]:
    ids = []
    while (chunk := s.next_chunk(limit)) is not None:
        ids += [e["id"] for e in chunk.events]
        s.commit(chunk)
    return ids


def test_lines_stay_until_committed_then_the_file_is_truncated(tmp_path: Path):
    s = Spool(tmp_path)
    s.append([ev(i) for i in range(5)])
    (path,) = own_files(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    chunk = s.next_chunk(3)
    assert chunk is not None and [e["id"] for e in chunk.events] == ["s00000", "s00001", "s00002"]
    assert s.next_chunk(3).events[0]["id"] == "s00000"  # not committed: read again
    s.commit(chunk)
    assert len(path.read_text().splitlines()) == 5  # append-only until everything is delivered
    assert drain(s) == ["s00003", "s00004"]
    assert path.read_text() == "" and not s.has_pending()
    s.close()
    assert own_files(tmp_path) == []  # an empty file is removed on close


def test_bound_drops_oldest_and_compacts_the_file(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(spool_module, "COMPACT_MIN_BYTES", 4096)
    s = Spool(tmp_path, max_events=20)
    for i in range(100):
        s.append([ev(i, pad=200)])
    assert s.dropped == 80 and s.spooled == 100
    (path,) = own_files(tmp_path)
    assert path.stat().st_size < 60 * 300  # the dropped prefix was cut out of the file
    assert drain(s) == [f"s{i:05}" for i in range(80, 100)]
    s.close()


def test_a_commit_after_the_bound_dropped_the_chunk_does_not_skip_lines(tmp_path: Path):
    s = Spool(tmp_path, max_events=4)
    s.append([ev(i) for i in range(4)])
    chunk = s.next_chunk(2)  # s0, s1 in flight …
    s.append([ev(4), ev(5)])  # … while the bound drops s0 and s1
    s.commit(chunk)
    assert drain(s) == ["s00002", "s00003", "s00004", "s00005"]
    s.close()


def test_a_live_spool_is_not_an_orphan_and_a_closed_one_is(tmp_path: Path):
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append([ev(1), ev(2)])
    assert second.claim_orphan() is False  # locked by its (live) owner
    first.close()  # the owner ended with undelivered events
    assert len(own_files(tmp_path)) == 1
    assert second.claim_orphan() is True
    assert drain(second) == ["s00001", "s00002"]
    assert own_files(tmp_path) == []  # fully delivered: deleted
    second.close()


def test_claimed_file_left_unfinished_is_claimed_again(tmp_path: Path):
    owner = Spool(tmp_path)
    owner.append([ev(i) for i in range(3)])
    owner.close()
    taker = Spool(tmp_path)
    assert taker.claim_orphan()
    chunk = taker.next_chunk(2)
    taker.commit(chunk)
    taker.close()  # e.g. the process exited before the rest was delivered
    again = Spool(tmp_path)
    assert again.claim_orphan()
    assert drain(again) == ["s00000", "s00001", "s00002"]  # from the start: ids make it harmless
    again.close()


def test_stale_temporary_file_is_removed(tmp_path: Path):
    (tmp_path / "hook-1-abcd.abcd1234.tmp").write_bytes(b"")
    s = Spool(tmp_path)
    assert s.claim_orphan() is False
    assert list(tmp_path.iterdir()) == []
    s.close()


def test_dead_letter_lines_are_json_with_the_reason(tmp_path: Path):
    s = Spool(tmp_path)
    s.dead_letter([{"error": "400 bad", "event": ev(1)}])
    (line,) = (tmp_path / "dead-letter.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["error"] == "400 bad" and entry["event"]["id"] == "s00001" and entry["at"]
    assert s.dead_lettered == 1
    s.close()


def test_write_failure_leaves_no_half_line(tmp_path: Path, monkeypatch):
    s = Spool(tmp_path)
    s.append([ev(1)])
    real_write = os.write

    def short_then_fail(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", fail)
        return real_write(fd, data[: len(data) // 2])

    def fail(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    try:
        s.append([ev(2), ev(3)])
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("the write error must reach the sender")
    monkeypatch.setattr(os, "write", real_write)
    s.append([ev(4)])
    assert drain(s) == ["s00001", "s00004"]
    s.close()
