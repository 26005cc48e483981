"""`bench/soak.py` as a test: steady mixed traffic against `llmtray serve`, then nothing lost,
nothing logged as an error, and no resource that keeps growing.

Short mode runs 20 seconds (open file descriptors, threads and the WAL are compared; memory is
still warming up its caches that early). Long mode runs 5 minutes and also bounds memory
growth. The full soak is `python bench/soak.py --minutes 30 --rate 500` (prints the table).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proof.conftest import Mode

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc"),
              pytest.mark.timeout(1200)]  # long mode soaks for 5 minutes: past the suite's 300 s default

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
# Sockets open at the moment of a sample (clients mid-request) come and go: this much is noise.
FD_SLACK = 8
# SQLite keeps up to 32 MB of page cache per connection (writer, proxy budget reader) as the
# database grows; beyond that, growth in a few minutes would be a leak.
RSS_GROWTH_MB = 100


def test_soak(tmp_path: Path, mode: Mode):
    minutes, sample = mode.pick(20 / 60, 5), mode.pick(2, 10)
    out = tmp_path / "soak.json"
    # its own process group: whatever ends this test (a timeout too) ends serve and the upstream with it
    proc = subprocess.Popen([sys.executable, str(SOAK), "--minutes", str(minutes), "--rate", "500",
                             "--proxy-rate", "5", "--sample", str(sample), "--json", str(out),
                             "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=minutes * 60 + 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    print(stdout)
    assert proc.returncode == 0, stdout + stderr
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert checks["lost"] == 0 and checks["stored_api"] == checks["acknowledged"] > 0
    assert checks["proxied_stored"] == checks["proxied_calls"] > 0
    assert checks["client_errors"] == 0, checks["first_errors"]
    assert checks["serve_errors_logged"] == 0 and checks["serve_exit"] == 0 and checks["integrity"] == "ok"
    growth = {r["figure"]: r for r in result["summary"]}
    assert growth["open fds (max)"]["growth"] <= FD_SLACK
    assert growth["threads (max)"]["growth"] <= 2
    assert max(s["wal_mb"] for s in result["samples"]) < 64  # checkpoints keep up
    if mode.long:
        assert growth["RSS MB (mean)"]["growth"] < RSS_GROWTH_MB
