"""Several machines, one PostgreSQL: concurrent `serve` processes, a kill -9 among them, and the
same exact team totals, budgets and blocks seen from every machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmtray.core import dburl
from llmtray.core.store import Store
from tests.ingest.test_serve import Load, start_serve as serve_process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def machine_env(name: str, url: str) -> dict[str, str]:
    return {**os.environ, "LLMTRAY_MACHINE": name, "LLMTRAY_DATABASE_URL": url}


def start_serve(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    return serve_process(data, env=env)


def cli(data: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_three_machines_write_at_once_one_is_killed_and_nothing_acknowledged_is_lost(tmp_path, team_url):
    machines = [(f"m{i}", tmp_path / f"m{i}") for i in range(3)]
    servers, loads = [], []
    for name, data in machines:
        data.mkdir()
        servers.append(start_serve(data, machine_env(name, team_url)))
    try:
        for (name, _), (_, url, token) in zip(machines, servers):
            loads.append(Load(url, token, clients=2, batch=50, prefix=name))
        for load in loads:
            load.wait_for(400)
        servers[1][0].kill()  # kill -9 mid-stream: its clients lose their connection
        servers[1][0].communicate(timeout=30)
        for load in (loads[0], loads[2]):
            load.wait_for(len(load.acked) + 500)
    finally:
        for load in loads:
            load.finish()
        for proc, _, _ in servers:
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=60)
    store = Store.open(dburl.parse(team_url))
    try:
        conn = store.conn
        stored = {r[0] for r in conn.execute("SELECT event_id FROM event")}
        acked = set().union(*(load.acked for load in loads))
        assert acked <= stored  # every acknowledged event of every machine, the killed one's too
        assert stored <= set().union(*(load.sent for load in loads))
        # each event says which machine recorded it
        per_machine = dict(conn.execute("SELECT value, count(*) FROM event_tag WHERE key = 'machine' GROUP BY 1"))
        assert sum(per_machine.values()) == len(stored) and set(per_machine) == {"m0", "m1", "m2"}
        # exact money: every rollup level sums to the events, and event ids were handed out once
        (count, cost, tokens) = conn.execute("SELECT count(*), sum(cost_nanos), sum(input_tokens) FROM event").fetchone()
        for table in ("rollup", "rollup_hour", "rollup_day"):
            assert conn.execute(f"SELECT sum(events), sum(cost_nanos), sum(input_tokens) FROM {table}").fetchone() == (
                count, cost, tokens), table
        assert conn.execute("SELECT count(DISTINCT id) FROM event").fetchone() == (count,)
    finally:
        store.close()


def without_projections(status: dict) -> dict:
    """A status without what depends on the second it was asked (projections extrapolate to now)."""
    drop = ("projected_month_usd", "projected_usd", "pace")
    status = {k: v for k, v in status.items() if k not in drop}
    status["budgets"] = [{k: v for k, v in b.items() if k not in drop} for b in status["budgets"]]
    return status


def test_two_machines_see_the_same_team_totals_budgets_and_blocks(tmp_path, team_url):
    (a, b) = (tmp_path / "a", tmp_path / "b")
    a.mkdir()
    b.mkdir()
    env_a, env_b = machine_env("alice-laptop", team_url), machine_env("ci-runner", team_url)
    proc_a, url_a, token_a = start_serve(a, env_a)
    proc_b, url_b, token_b = start_serve(b, env_b)
    try:
        for url, token, feature in ((url_a, token_a, "chat"), (url_b, token_b, "eval")):
            events = [{"id": f"{feature}-{i}", "ts": "2026-12-07T08:00:00Z", "provider": "openai", "model": "gpt-4o",
                       "input_tokens": 10_000, "output_tokens": 1000, "feature": feature} for i in range(20)]
            reply = httpx.post(f"{url}/v1/events", json=events, headers={"Authorization": f"Bearer {token}"})
            assert reply.json() == {"accepted": 20, "duplicates": 0}
        cli(a, env_a, "budgets", "add", "--name", "team", "--limit", "1", "--period", "month")
        cli(b, env_b, "block", "--feature", "eval", "--reason", "eval loop ran away")
        status_a = without_projections(json.loads(cli(a, env_a, "status", "--json")))
        status_b = without_projections(json.loads(cli(b, env_b, "status", "--json")))
        assert status_a == status_b and status_a["today_usd"] == "1.4"
        assert [x["name"] for x in status_a["budgets"]] == ["team"] and status_a["blocks"][0]["scope"] == {
            "feature": "eval"}
        report = cli(b, env_b, "report", "--by", "tag:machine")
        assert "alice-laptop" in report and "ci-runner" in report
        # the block made on machine b refuses machine a's calls too
        enforce = httpx.get(f"{url_a}/v1/enforce", params={"provider": "openai", "model": "gpt-4o", "feature": "eval"},
                            headers={"Authorization": f"Bearer {token_a}"}).json()
        assert enforce["allowed"] is False and "eval loop ran away" in enforce["message"]
    finally:
        for proc in (proc_a, proc_b):
            proc.terminate()
            proc.communicate(timeout=60)
