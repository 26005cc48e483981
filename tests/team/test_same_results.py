"""Every command gives the same answer on SQLite and on the team's PostgreSQL.

One script of commands — imports, posts through `serve`, reports, budgets, blocks, guards, export,
reprice, digest, removing an import — runs against a data dir's SQLite file and against a
PostgreSQL database; their outputs must match (the machine tag, which only team events carry,
aside)."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.team.test_machines import start_serve

DATA = Path(__file__).resolve().parent.parent / "data" / "import"
IMPORTS = ("openai_usage.csv", "anthropic_cost.csv", "openrouter_generations.csv", "litellm_spendlogs.csv",
           "openai_cost.csv")


def run_script(data: Path, env: dict[str, str]) -> dict[str, object]:
    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args], env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    out: dict[str, object] = {}
    for name in IMPORTS:
        out[f"import {name}"] = cli("import", "--overlap", "keep", str(DATA / name)).replace(str(DATA), "")
    proc, url, token = start_serve(data, env)
    try:
        events = [{"id": f"live-{i}", "ts": f"2026-05-0{1 + i % 3}T1{i % 10}:00:00Z", "provider": "openai",
                   "model": "gpt-4o-mini", "input_tokens": 1234 * i, "output_tokens": 56 * i, "feature": f"f{i % 4}",
                   "user": f"u{i % 3}", "tags": {"team": "a" if i % 2 else "b"}, "latency_ms": 100 + 7 * i}
                  for i in range(60)]
        reply = httpx.post(f"{url}/v1/events", json=events, headers={"Authorization": f"Bearer {token}"})
        out["post"] = reply.json()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    for by in ("day", "provider", "model", "feature", "user", "source", "tag:team"):
        out[f"report {by}"] = cli("report", "--since", "2024-01-01", "--by", by, "--format", "json")
    cli("budgets", "add", "--name", "may", "--limit", "50", "--period", "month", "--feature", "f1")
    out["budgets"] = cli("budgets", "list")
    cli("block", "--feature", "f2", "--reason", "test")
    out["blocks"] = [{k: v for k, v in b.items() if k not in ("created", "until")}
                     for b in json.loads(cli("blocks", "--json"))["blocks"]]
    cli("guards", "add", "--name", "big", "--max-request-usd", "5")
    out["guards"] = cli("guards", "list", "--json")
    out["reprice"] = cli("reprice")
    out["digest"] = cli("digest", "--date", "2026-05-02")
    out["export"] = sorted(_without_machine(json.loads(line)) for line in cli("export").splitlines())
    listed = cli("import", "--list")
    out["import list"] = re.sub(r"\d\d-\d\d \d\d:\d\d", "MM-DD HH:MM", listed)  # when each import ran
    first = next(line.split()[0] for line in listed.splitlines() if line.split() and line.split()[0].isdigit())
    out["remove"] = cli("import", "--remove", first)
    out["after remove"] = cli("report", "--since", "2024-01-01", "--by", "source", "--format", "json")
    return out


def _without_machine(event: dict) -> str:
    tags = {k: v for k, v in event.get("tags", {}).items() if k != "machine"}
    event = {k: v for k, v in event.items() if k != "tags"} | ({"tags": tags} if tags else {})
    return json.dumps(event, sort_keys=True)


def test_every_command_answers_the_same_on_both_backends(tmp_path, team_url):
    local, team = tmp_path / "local", tmp_path / "team"
    local.mkdir()
    team.mkdir()
    base = {k: v for k, v in os.environ.items() if k != "LLMTRAY_DATABASE_URL"}
    on_sqlite = run_script(local, base)
    on_postgres = run_script(team, {**base, "LLMTRAY_DATABASE_URL": team_url, "LLMTRAY_MACHINE": "m"})
    for key in on_sqlite:
        assert on_postgres[key] == on_sqlite[key], key
