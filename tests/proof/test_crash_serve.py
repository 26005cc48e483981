"""SIGKILL `llmtray serve` at random points — while it starts on a fresh database, and under
concurrent load — restart it, and hold it to DESIGN §5's promise: an event acknowledged with a
200 is committed. After every kill the database passes `PRAGMA integrity_check`; after all of
them every acknowledged event is there exactly once, nothing is there that nobody sent, and
acknowledged ids sent again (in later rounds, and at the end) come back as duplicates.

Short mode: 1 kill during startup + 3 under load. Long mode: 4 + 20. The seed is printed;
`LLMTRAY_PROOF_SEED=<n>` replays a run's kill points and batch sizes.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.conftest import event, stored_ids
from tests.ingest.test_serve import integrity, start_serve
from tests.proof.conftest import Mode, id_counts

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]


def seed() -> int:
    return int(os.environ.get("LLMTRAY_PROOF_SEED") or time.time_ns() % 2**32)


class Clients:
    """Threads posting batches over keep-alive connections until the server goes away: fresh ids,
    plus now and then ids acknowledged earlier (which must come back as duplicates)."""

    def __init__(self, url: str, token: str, tag: str, earlier: list[str], rng: random.Random, clients: int = 4):
        self.acked: list[str] = []
        self.sent: set[str] = set()
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        host, port = url.split("://")[1].rsplit(":", 1)
        self._threads = [threading.Thread(target=self._client, name=f"proof-client-{c}",
                                          args=(host, int(port), token, f"{tag}-c{c}", earlier,
                                                random.Random(rng.random())))
                         for c in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self, host: str, port: int, token: str, prefix: str, earlier: list[str], rng: random.Random) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        n = 0
        try:
            while not self._stop.is_set():
                fresh = [f"{prefix}-{n + i}" for i in range(rng.randint(1, 60))]
                n += len(fresh)
                again = rng.sample(earlier, min(len(earlier), rng.randint(0, 5))) if rng.random() < 0.3 else []
                with self._lock:
                    self.sent.update(fresh)
                body = json.dumps([event(i, id=x) for i, x in enumerate(fresh + again)])
                try:
                    conn.request("POST", "/v1/events", body, headers)
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    return  # the server is gone: what was acknowledged is what counts
                if response.status != 200:
                    self._problem(f"{response.status} {answer[:200]!r}")
                    continue
                counts = json.loads(answer)
                if counts != {"accepted": len(fresh), "duplicates": len(again)}:
                    self._problem(f"{counts} for {len(fresh)} fresh ids and {len(again)} acknowledged before")
                with self._lock:
                    self.acked.extend(fresh)
        finally:
            conn.close()

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def finish(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


# Where a start can be cut short, by the log line `serve` writes just before each step.
STARTUP_MARKS = ["to version 1", "to version 2", "to version 3", "to version 4", "listening on", None]


def _kill_during_start(data: Path, mark: str | None, delay: float) -> tuple[str, str]:
    """Start `serve` and SIGKILL it `delay` seconds after it logs `mark` (after spawning if None,
    or once it listens if the mark never comes); returns the line it was killed after, and its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    seen = threading.Event()
    trigger: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if mark is not None and not seen.is_set() and (mark in line or "listening on" in line):
                trigger.append(line.split(": ", 1)[-1].strip())
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, name="proof-serve-stderr")
    reader.start()
    if mark is not None:
        seen.wait(60)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    proc.stderr.close()  # type: ignore[union-attr]
    return (trigger[0] if trigger else "spawning"), "".join(lines)


def _kill(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    return err


def _resend_all(url: str, token: str, ids: list[str]) -> dict[str, int]:
    """Post every acknowledged id again (in requests of ≤ 10,000): all must be duplicates."""
    host, port = url.split("://")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    total = {"accepted": 0, "duplicates": 0}
    try:
        for start in range(0, len(ids), 10_000):
            body = json.dumps([event(0, id=x) for x in ids[start:start + 10_000]])
            conn.request("POST", "/v1/events", body, {"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
            response = conn.getresponse()
            answer: dict[str, Any] = json.loads(response.read())
            assert response.status == 200, answer
            for k in total:
                total[k] += answer[k]
    finally:
        conn.close()
    return total


def test_sigkill_at_random_points_loses_no_acknowledged_event(data_dir: Path, mode: Mode):
    rng = random.Random(s := seed())
    print(f"\nseed {s} (LLMTRAY_PROOF_SEED={s} replays it)")
    db = data_dir / "llmtray.db"
    load_kills, startup_kills = int(mode.pick(3, 20)), int(mode.pick(1, 4))
    acked: list[str] = []
    sent: set[str] = set()
    log: list[str] = []
    for round_ in range(load_kills + startup_kills):
        if round_ % 5 == 0 and round_ // 5 < startup_kills:  # the first round kills a fresh database's start
            mark = rng.choice(STARTUP_MARKS)
            delay = rng.uniform(0, 0.01) if mark else rng.uniform(0.1, 1.2)
            after, err = _kill_during_start(data_dir, mark, delay)
            log.append(f"round {round_}: killed {delay:.3f} s after {after!r}")
        else:
            proc, url, token = start_serve(data_dir)
            clients = Clients(url, token, f"r{round_}", list(acked), rng)
            try:
                target = rng.randint(0, 3000)
                clients.wait_for(target)
                time.sleep(rng.uniform(0, 0.3))  # land anywhere: mid-request, mid-commit, between batches
                err = _kill(proc)
            finally:
                clients.finish()
            assert not clients.problems, clients.problems[:5]
            acked += clients.acked
            sent |= clients.sent
            log.append(f"round {round_}: killed after {len(clients.acked)} acknowledged events (aimed at {target})")
        assert "Traceback" not in err, err
        if db.exists():
            assert integrity(db) == "ok", log[-1]
    print("\n".join(log))

    proc, url, token = start_serve(data_dir)  # the stale ingest.json of a killed run is no obstacle
    try:
        stored = stored_ids(db)
        assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events lost"
        assert stored <= sent, "events nobody sent"
        counts = id_counts(db, "r")
        assert set(counts.values()) <= {1}
        assert _resend_all(url, token, acked) == {"accepted": 0, "duplicates": len(acked)}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert integrity(db) == "ok"
    assert not (data_dir / "ingest.json").exists()
    print(f"{len(acked)} acknowledged events over {load_kills + startup_kills} kills, all stored once")
