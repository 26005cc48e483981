"""The real `llmtray serve` pulls the bill from the stub on its own, and a settled day that
differs from what it observed raises one drift alert (not one per round)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from llmtray.billing import ledger
from llmtray.billing.drift import drift_alerts
from llmtray.core.alerts import AlertLog
from llmtray.core.db import open_db
from tests.billing.stub import KEYS, openai_cost, openai_usage
from tests.billing.test_cli import ENVS, point_at


def bill_alerts(db_path: Path) -> list:
    db = open_db(db_path)
    try:
        return [a for a in AlertLog(db).history() if a.kind == "bill_drift"]
    finally:
        db.close()


def test_serve_syncs_the_bill_and_alerts_drift_once(data_dir, stub):
    point_at(data_dir, stub)
    today = datetime.now(UTC).date()
    day = today - timedelta(days=3)
    stub.data.openai_costs[day] = [openai_cost("1.25", "gpt-4o-2024-08-06, input")]
    stub.data.openai_usage[day] = [openai_usage("gpt-4o-2024-08-06", 1, 100, 10)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), ENVS["openai"]: KEYS["openai"]}
    env.pop(ENVS["anthropic"], None)
    env.pop(ENVS["openrouter"], None)
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        token = json.loads((data_dir / "ingest.json").read_text())["token"]
        ts = datetime(day.year, day.month, day.day, 9, tzinfo=UTC).isoformat()
        r = httpx.post(f"{url}/v1/events", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                       json={"id": "e1", "provider": "openai", "model": "gpt-4o", "cost_usd": "1.00", "ts": ts,
                             "input_tokens": 100, "output_tokens": 10})
        assert r.json() == {"accepted": 1, "duplicates": 0}
        deadline = time.monotonic() + 40  # the first round starts 5 s after start-up
        while time.monotonic() < deadline and not bill_alerts(data_dir / "llmtray.db"):
            time.sleep(0.3)
        conn = ledger.open_ledger(data_dir / "llmtray.db")
        try:
            state = ledger.states(conn)["openai"]
            cov = ledger.coverage(conn, "openai")
        finally:
            conn.close()
        assert (state.state, cov.days, cov.billed_nanos) == ("ok", 30, 1_250_000_000)
        (alert,) = bill_alerts(data_dir / "llmtray.db")
        assert alert.title == f"openai bill for {day} differs from what llmtray saw"
        assert "billed $1.25, observed $1.00" in alert.body and "price data" in alert.body
        assert drift_alerts(data_dir / "llmtray.db", "openai") == []  # once per day and source
        deadline = time.monotonic() + 20  # handed to the budget monitor, which sends it to the sinks
        while time.monotonic() < deadline and not bill_alerts(data_dir / "llmtray.db")[0].delivered:
            time.sleep(0.2)
        assert bill_alerts(data_dir / "llmtray.db")[0].delivered
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "billing: openai synced" in err and KEYS["openai"] not in err
    assert proc.returncode == 0, err


def test_the_demo_service_never_syncs_the_real_bill(data_dir):
    from llmtray.config import Config
    from llmtray.ingest.service import IngestService
    from llmtray.paths import resolve

    demo = IngestService(resolve(data_dir), Config(), port=0, sync_bills=False)
    real = IngestService(resolve(data_dir), Config(), port=0)
    assert demo.billing is None and real.billing is not None
