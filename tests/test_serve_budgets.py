"""`llmtray serve` runs the budget monitor: a threshold crossing in the current period lands in
the alert history exactly once, and `/v1/summary` and `/v1/enforce` report the budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from llmtray.core.alerts import AlertLog
from llmtray.core.db import open_db


def cli(data: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def alerts(data: Path) -> list:
    db = open_db(data / "llmtray.db")
    try:
        return AlertLog(db).history()
    finally:
        db.close()


def test_serve_alerts_once_and_enforces(data_dir: Path):
    cli(data_dir, "budgets", "add", "--name", "daily", "--limit", "1", "--period", "day", "--enforce")
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("llmtray serve: ingest API on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        token = json.loads((data_dir / "ingest.json").read_text())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            for i in range(3):  # $0.45 each: crosses 50 % then 100 %
                r = client.post("/v1/events", json={"id": f"e{i}", "provider": "openai", "model": "gpt-4o",
                                                   "cost_usd": "0.45"})
                assert r.json() == {"accepted": 1, "duplicates": 0}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("100" in a.title or "exceeded" in a.title.lower()
                                                          for a in alerts(data_dir)):
                time.sleep(0.2)
            history = alerts(data_dir)
            assert [a.kind for a in history].count("threshold") >= 1
            assert all(a.budget == "daily" for a in history if a.kind == "threshold")
            summary = client.get("/v1/summary").json()
            (budget,) = summary["budgets"]
            assert (budget["name"], budget["spent_usd"], budget["state"]) == ("daily", "1.35", "exceeded")
            verdict = client.get("/v1/enforce", params={"provider": "openai", "model": "gpt-4o"}).json()
            assert verdict["allowed"] is False and verdict["budget"] == "daily"
            assert "$1.35 of $1" in verdict["message"]
            assert client.get("/v1/enforce", params={"model": "x"}).status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    first = [(a.kind, a.title) for a in alerts(data_dir)]
    # a restart neither repeats nor loses a crossing
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("llmtray serve")
        time.sleep(1.5)  # give a (wrong) repeat the chance to happen; no assertion depends on timing
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        proc.stdout.close()
    assert [(a.kind, a.title) for a in alerts(data_dir)] == first


def test_a_budget_added_by_the_cli_while_serve_runs_is_checked_at_once(data_dir: Path):
    """#17 item 8: the spend is already there; the budget comes later, from another process."""
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        token = json.loads((data_dir / "ingest.json").read_text())["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            r = client.post("/v1/events", json={"id": "x1", "provider": "openai", "model": "gpt-4o", "cost_usd": "2"})
            assert r.json() == {"accepted": 1, "duplicates": 0}
        time.sleep(1.0)  # the monitor has checked that commit (no budget yet: no budget alert)
        assert [a for a in alerts(data_dir) if a.kind == "threshold"] == []
        cli(data_dir, "budgets", "add", "--name", "late", "--limit", "1", "--period", "day")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not [a for a in alerts(data_dir) if a.kind == "threshold"]:
            time.sleep(0.1)
        assert [(a.budget, a.title) for a in alerts(data_dir) if a.kind == "threshold"] == [
            ("late", "Budget “late” exceeded")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
