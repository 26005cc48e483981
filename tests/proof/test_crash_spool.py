"""SIGKILL a process that uses `llmtray.hooks` while its spool is being written or delivered,
then let a new process deliver the orphaned spool, and hold the hooks to DESIGN §6: when the
tray is not running events are spooled and delivered later — nothing lost, nothing twice.

The child records events with the tray down (they go to its spool; it notes on a side file,
fsync'd, once `flush()` reports them on disk), waits for the tray, then records more while its
sender delivers — writing each id to the side file before recording it, and noting every
`flush()` that confirmed delivery. It is killed at a random point: mid-spooling (tray down), or
mid-delivery (aimed at a random share of the spool being stored). A new process's `flush()`
then claims the orphan. Every event confirmed spooled or delivered must be stored exactly once;
any other stored event must be one the child said it recorded; no spool file or dead letter
is left over.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmtray.ingest.service import IngestService
from tests.hooks.conftest import start_tray
from tests.proof.conftest import Mode, id_counts, row_count
from tests.proof.test_crash_serve import seed

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

CHILD = r"""
import json, os, sys, time
import llmtray.hooks as lt

side, down, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

def note(line):
    os.write(fd, (line + "\n").encode())
    os.fsync(fd)

def record(event_id, i):
    lt.record(provider="openai", model="gpt-4o-mini", input_tokens=i + 1, output_tokens=7, id=event_id,
              feature="proof")

note("ids " + " ".join(f"down-{i}" for i in range(down)))
for i in range(down):
    record(f"down-{i}", i)
delivered = lt.flush(10)  # nobody listens: what was queued is now in the spool file
note("spooled " + json.dumps({"delivered": delivered, **lt.stats()}))
while not os.path.exists(go):
    time.sleep(0.005)
i = 0
while True:
    ids = [f"up-{i + k}" for k in range(10)]
    note("ids " + " ".join(ids))
    for k, event_id in enumerate(ids):
        record(event_id, i + k)
    i += 10
    if i % 200 == 0:
        note(f"flushed {i} {lt.flush(10)}")
"""
FLUSH_ORPHANS = "import sys, llmtray.hooks as lt; sys.exit(0 if lt.flush(60) else 1)"


def _env(data: Path) -> dict[str, str]:
    env = {**os.environ, "LLMTRAY_DATA_DIR": str(data)}
    env.pop("LLMTRAY_URL", None)
    env.pop("LLMTRAY_TOKEN", None)
    return env


class SideFile:
    """What the child wrote down before it died."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def recorded(self) -> set[str]:
        return {x for line in self.lines() if line.startswith("ids ") for x in line.split()[1:]}

    def spooled(self) -> dict[str, object] | None:
        found = [json.loads(line[8:]) for line in self.lines() if line.startswith("spooled ")]
        return found[0] if found else None

    def confirmed_up(self) -> int:
        """up-0 … up-(n-1) were delivered: a flush() said so."""
        done = [int(line.split()[1]) for line in self.lines() if line.startswith("flushed ") and line.endswith("True")]
        return max(done, default=0)


def _wait(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _spool_files(data: Path) -> list[Path]:
    return sorted((data / "spool").glob("hook-*.jsonl"))


def _run_round(data: Path, rng: random.Random, down: int, kind: str) -> str:
    data.mkdir()
    side, go = SideFile(data / "side.txt"), data / "go"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(side.path), str(down), str(go)], env=_env(data),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tray: IngestService | None = None
    try:
        if kind == "spooling":  # the tray is down: kill while the sender writes the spool
            _wait(lambda: any(_spool_files(data)) or child.poll() is not None)
            time.sleep(rng.uniform(0, 0.4))
            how = "while spooling"
        else:
            _wait(lambda: side.spooled() is not None or child.poll() is not None)
            spooled = side.spooled()
            assert spooled is not None, child.communicate()[1]
            assert spooled["delivered"] is False and spooled["queued"] == 0 and spooled["pending_in_spool"], spooled
            tray = start_tray(data)
            go.touch()
            share = rng.random()
            _wait(lambda: row_count(tray.paths.db, "WHERE event_id LIKE 'down-%'") >= share * down
                  or child.poll() is not None)
            time.sleep(rng.uniform(0, 0.05))
            how = f"mid-delivery (aimed at {share:.0%} of the spool stored)"
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, f"the child ended on its own: {err}"
        stored_before = row_count(tray.paths.db) if tray else 0
        if tray is None:
            tray = start_tray(data)
        orphans = len(_spool_files(data))
        flusher = subprocess.run([sys.executable, "-c", FLUSH_ORPHANS], env=_env(data), capture_output=True,
                                 text=True, timeout=120)
        assert flusher.returncode == 0, flusher.stderr
        duplicates = tray.api.activity_snapshot().duplicates
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        if tray is not None:
            tray.stop()

    counts = {**id_counts(tray.paths.db, "down-"), **id_counts(tray.paths.db, "up-")}
    assert set(counts.values()) <= {1}, "an event stored twice"
    assert set(counts) <= side.recorded(), "an event the child never recorded"
    if side.spooled() is not None:
        assert {f"down-{i}" for i in range(down)} <= set(counts), "a spooled event was lost"
    assert {f"up-{i}" for i in range(side.confirmed_up())} <= set(counts), "a delivered event was lost"
    assert _spool_files(data) == [], "an orphan spool was left undelivered"
    assert not (data / "spool" / "dead-letter.jsonl").exists()
    return (f"killed {how}: {stored_before} stored before, {orphans} orphan spool file(s), "
            f"{len(counts)} stored after, {duplicates} resent duplicate(s) recognised")


def test_hook_process_killed_mid_spool_loses_nothing_it_spooled(tmp_path: Path, mode: Mode):
    rng = random.Random(s := seed())
    print(f"\nseed {s} (LLMTRAY_PROOF_SEED={s} replays it)")
    rounds = int(mode.pick(3, 20))
    for r in range(rounds):
        kind = "spooling" if r % 3 == 2 else "delivery"
        print(f"round {r}: " + _run_round(tmp_path / f"r{r}", rng, int(mode.pick(10_000, 20_000)), kind))
