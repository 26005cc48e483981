"""`llmtray budgets` and `llmtray status` as a user runs them: real subprocesses on a data dir,
also while the app's writer and budget monitor hold the same database."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from llmtray.cli import main
from llmtray.config import Config
from llmtray.core.commits import Committed
from llmtray.core.monitor import BudgetMonitor
from llmtray.core.store import to_us
from tests.core.budget_kit import RecordingSink, event, open_store


def llmtray(data_dir: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect, f"{args} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc


def listed(data_dir: Path) -> list[dict]:
    return json.loads(llmtray(data_dir, "budgets", "list", "--json").stdout)["budgets"]


def spend_now(data_dir: Path, *costs: str, **attribution) -> list:
    """Calls that just happened, with exact reported costs (seconds ago: same local day as the CLI)."""
    now = datetime.now(UTC)
    events = [event(now - timedelta(seconds=2 + i), c, **attribution) for i, c in enumerate(costs)]
    store = open_store(data_dir / "llmtray.db")
    try:
        store.add(events, "hook")
    finally:
        store.close()
    return events


def test_add_list_remove_round_trip(data_dir):
    out = llmtray(data_dir, "budgets", "add", "--name", "Search team", "--limit", "$1,250.5", "--period", "week",
                  "--provider", "openai", "--model", "gpt-4o-2024-08-06", "--feature", "search", "--user", "u1",
                  "--project", "web", "--env", "prod", "--tag", "team=search", "--tag", "tier=pro",
                  "--thresholds", "25,75,100,150", "--enforce").stdout
    assert out.strip() == ("added budget 'Search team': $1,250.50 per week, provider openai, model gpt-4o-2024-08-06, "
                           "feature search, user u1, project web, env prod, tag team=search, tag tier=pro, "
                           "alerts at 25/75/100/150%; enforced (hard cap)")
    (b,) = listed(data_dir)
    assert {k: b[k] for k in ("name", "period", "limit_usd", "spent_usd", "percent", "state", "thresholds",
                              "enforce", "scope")} == {
        "name": "Search team", "period": "week", "limit_usd": "1250.5", "spent_usd": "0", "percent": 0.0,
        "state": "ok", "thresholds": [25, 75, 100, 150], "enforce": True,
        "scope": {"provider": "openai", "model": "gpt-4o-2024-08-06", "feature": "search", "user": "u1",
                  "project": "web", "env": "prod", "tags": {"team": "search", "tier": "pro"}}}
    table = llmtray(data_dir, "budgets", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "PERIOD", "LIMIT", "SPENT", "USE", "STATE", "PROJECTED", "ALERTS", "SCOPE"]
    assert table[1].startswith("Search team  week    $1,250.50  $0.00  0%   ok (enforced)")
    assert llmtray(data_dir, "budgets", "remove", "search TEAM").stdout.strip() == (
        "removed budget 'Search team' (its past alerts stay in the alert log)")
    assert listed(data_dir) == []
    assert "no budgets yet" in llmtray(data_dir, "budgets", "list").stdout


BAD_ADDS = [
    (["--name", "API", "--limit", "5", "--period", "day"], "a budget named 'API' already exists"),
    (["--name", "x", "--limit", "ten", "--period", "day"], "limit: not a dollar amount: 'ten'"),
    (["--name", "x", "--limit", "0", "--period", "day"], "limit: must be more than $0, got '0'"),
    (["--name", "x", "--limit", "5", "--period", "day", "--thresholds", "50,x"],
     "thresholds: item 2 ('x') of '50,x' is not a whole percentage"),
    (["--name", "x", "--limit", "5", "--period", "day", "--thresholds", "50,50"], "repeats a value"),
    (["--name", "x", "--limit", "5", "--period", "day", "--tag", "team"], "tag: expected KEY=VALUE, got 'team'"),
    (["--name", "x", "--limit", "5", "--period", "day", "--tag", "t=a", "--tag", "t=b"], "tag 't' is given twice"),
    (["--name", "x", "--limit", "5", "--period", "year"], "invalid choice: 'year'"),
]


def test_bad_input_is_named_and_nothing_is_stored(data_dir):
    llmtray(data_dir, "budgets", "add", "--name", "api", "--limit", "10", "--period", "month")
    before = listed(data_dir)
    for args, message in BAD_ADDS:
        proc = llmtray(data_dir, "budgets", "add", *args, expect=2)
        assert message in proc.stderr and proc.stdout == "", (args, proc.stderr)
    assert listed(data_dir) == before


def test_removing_an_unknown_budget_names_the_known_ones(data_dir):
    llmtray(data_dir, "budgets", "add", "--name", "api", "--limit", "10", "--period", "month")
    proc = llmtray(data_dir, "budgets", "remove", "apii", expect=2)
    assert proc.stderr.strip() == "llmtray: error: no budget named 'apii'; budgets: api"


def test_a_scope_value_no_event_carries_gets_a_note(data_dir):
    spend_now(data_dir, "0.1")
    proc = llmtray(data_dir, "budgets", "add", "--name", "4o", "--limit", "10", "--period", "day",
                   "--model", "gpt4o", "--tag", "team=a")
    assert "note: no event so far has model 'gpt4o' (seen: gpt-4o)" in proc.stderr  # models listed by alias
    assert "note: no event so far has a tag 'team'" in proc.stderr
    assert [b["name"] for b in listed(data_dir)] == ["4o"]  # a note, not an error
    alias = llmtray(data_dir, "budgets", "add", "--name", "alias", "--limit", "10", "--period", "day",
                    "--model", "gpt-4o")  # covers the gpt-4o-2024-08-06 events: nothing to note
    assert alias.stderr == ""
    assert [b["spent_usd"] for b in listed(data_dir) if b["name"] == "alias"] == ["0.1"]


def test_status_json_follows_the_contract(data_dir):
    spend_now(data_dir, "1.25", "0.5", feature="chat")
    spend_now(data_dir, "0.25")
    llmtray(data_dir, "budgets", "add", "--name", "chat", "--limit", "2", "--period", "day", "--feature", "chat")
    llmtray(data_dir, "budgets", "add", "--name", "all", "--limit", "100", "--period", "month")
    data = json.loads(llmtray(data_dir, "status", "--json").stdout)
    assert (data["today_usd"], data["month_usd"]) == ("2", "2")
    Decimal(data["projected_month_usd"])
    budgets = {b["name"]: b for b in data["budgets"]}
    assert {k: budgets["chat"][k] for k in ("name", "period", "limit_usd", "spent_usd", "percent", "state")} == {
        "name": "chat", "period": "day", "limit_usd": "2", "spent_usd": "1.75", "percent": 87.5, "state": "warning"}
    assert budgets["all"]["state"] == "ok" and budgets["all"]["spent_usd"] == "2"
    for b in data["budgets"]:
        assert set(b) >= {"name", "period", "limit_usd", "spent_usd", "percent", "projected_usd", "state"}
    human = llmtray(data_dir, "status").stdout.splitlines()
    assert human[0].split() == ["today", "$2.00", "3", "requests"]
    assert human[1].startswith("this month") and "projected" in human[1]
    assert human[2] == "budgets"
    assert human[4].split()[:8] == ["chat", "[########..]", "88%", "$1.75", "of", "$2.00", "today", "WARNING"]


def test_status_on_an_empty_data_dir(data_dir):
    data = json.loads(llmtray(data_dir, "status", "--json").stdout)
    assert {k: data[k] for k in ("today_usd", "month_usd", "projected_month_usd", "budgets")} == {
        "today_usd": "0", "month_usd": "0", "projected_month_usd": "0", "budgets": []}
    assert "budgets     none" in llmtray(data_dir, "status").stdout


def test_commands_work_while_the_app_runs(data_dir):
    """The app's writer holds a write transaction open and its monitor runs; the CLI reads
    through its own connection (WAL) and a budget it adds is picked up by the running monitor."""
    path = data_dir / "llmtray.db"
    app_store = open_store(path)
    sink = RecordingSink()
    monitor = BudgetMonitor(path, Config(spike_floor_usd=Decimal(10**6)), [sink], min_interval_s=0.0,
                            notify_interval_s=0.0)
    monitor.start()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        spend_now(data_dir, "3")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO dataset (name, format, created) VALUES ('pending', 'x', 0)")
        data = json.loads(llmtray(data_dir, "status", "--json").stdout)  # not blocked by the writer
        assert data["today_usd"] == "3"
        writer.execute("COMMIT")
        llmtray(data_dir, "budgets", "add", "--name", "daily", "--limit", "5", "--period", "day")
        batch = spend_now(data_dir, "1")
        ts = to_us(batch[0].ts)
        monitor.on_commit(Committed(1, 0, ts, ts))
        assert monitor.sync(30)
        assert [a.title for a in sink.sent] == ["Budget “daily” at 80%"]
        assert [b["state"] for b in listed(data_dir)] == ["warning"]
    finally:
        writer.close()
        monitor.stop()
        app_store.close()


def test_help_is_there_for_every_action(capsys):
    for args in (["budgets", "--help"], ["budgets", "add", "--help"], ["budgets", "list", "--help"],
                 ["budgets", "remove", "--help"], ["status", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0 and "usage: llmtray" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["budgets"])
    assert done.value.code == 2 and "required: ACTION" in capsys.readouterr().err
