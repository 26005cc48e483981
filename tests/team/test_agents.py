"""Coding agents' logs in team mode: each machine keeps its own record of the files it read (two
CI runners have the same paths), while the calls go to the team database once."""

from __future__ import annotations

import json
from pathlib import Path

from llmtray.cli import main
from llmtray.core import dburl
from llmtray.core.store import Store
from tests.agents.test_cli_live import agent_env  # noqa: F401 - a home with every agent's logs


def scan(capsys, data: Path, url: str) -> dict[str, dict]:  # noqa: ANN001
    assert main(["--data-dir", str(data), "--database", url, "agents", "scan", "--json"]) == 0
    return {a["agent"]: a for a in json.loads(capsys.readouterr().out)["agents"]}


def test_each_machine_reads_its_own_files_and_the_team_stores_each_call_once(agent_env, tmp_path, team_url, capsys,
                                                                              monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("LLMTRAY_MACHINE", "runner-a")
    first = scan(capsys, a, team_url)
    assert first["claude-code"]["added"] == 6 and first["claude-code"]["files_read"] > 0
    monkeypatch.setenv("LLMTRAY_MACHINE", "runner-b")  # same paths, same files: its own ledger reads them all
    other = scan(capsys, b, team_url)
    assert other["claude-code"]["files_read"] == first["claude-code"]["files_read"]
    assert [x["added"] for x in other.values()] == [0] * 4  # the team has every call already
    monkeypatch.setenv("LLMTRAY_MACHINE", "runner-a")
    again = scan(capsys, a, team_url)
    assert [x["files_read"] for x in again.values()] == [0] * 4  # a's ledger is a's, untouched by b
    store = Store.open(dburl.parse(team_url))
    try:
        assert store.conn.execute("SELECT count(*) FROM agent_file").fetchone() == (0,)  # no machine's paths there
        assert store.conn.execute("SELECT count(*) FROM event WHERE source = 'claude-code'").fetchone() == (6,)
    finally:
        store.close()
