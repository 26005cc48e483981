"""`llmtray block / unblock / blocks / guards`: DESIGN §15 from a terminal or a script. Mistakes
exit 2 with a message naming the option, and leave the stored blocks and guards as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtray.cli import main


def run(data: Path, capsys, *args: str, expect: int = 0) -> tuple[str, str]:
    assert main(["--data-dir", str(data), *args]) == expect
    out = capsys.readouterr()
    return out.out, out.err


def listed(data: Path, capsys) -> list[dict]:
    return json.loads(run(data, capsys, "blocks", "--json")[0])["blocks"]


def test_block_prints_its_id_lists_and_unblocks(data_dir, capsys):
    out, err = run(data_dir, capsys, "block", "--feature", "agent", "--tag", "team=a", "--for", "2h",
                   "--reason", "loop")
    first = int(out)
    assert err.startswith(f"blocked feature agent, tag team=a until ") and err.endswith(f"(block #{first})\n")
    second = int(run(data_dir, capsys, "block", "--all")[0])
    blocks = listed(data_dir, capsys)
    assert [(b["id"], b["scope"], b["reason"], b["refused"]) for b in blocks] == [
        (first, {"feature": "agent", "tags": {"team": "a"}}, "loop", 0),
        (second, {}, "blocked from the command line", 0)]
    assert blocks[0]["until"] is not None and blocks[1]["until"] is None
    table, _ = run(data_dir, capsys, "blocks")
    assert table.splitlines()[0].split() == ["ID", "SCOPE", "UNTIL", "BY", "REFUSED", "REASON"]
    assert json.loads(run(data_dir, capsys, "status", "--json")[0])["blocks"][1]["scope"] == {}
    assert "BLOCKED     #2 all calls until lifted" in run(data_dir, capsys, "status")[0]
    assert run(data_dir, capsys, "unblock", str(first))[0] == f"lifted block #{first} (feature agent, tag team=a)\n"
    assert run(data_dir, capsys, "unblock", "--all")[0] == f"lifted block #{second} (all calls)\n"
    assert listed(data_dir, capsys) == []


@pytest.mark.parametrize("args, message", [
    (("block",), "name what to block"),
    (("block", "--all", "--feature", "x"), "or give --all, not both"),
    (("block", "--feature", "x", "--for", "2 weeks"), "duration: expected a number and a unit"),
    (("block", "--feature", "x", "--for", "0m"), "duration: must be more than 0"),
    (("block", "--feature", " "), "scope feature: must be 1–200 characters"),
    (("block", "--tag", "novalue"), "tag: expected KEY=VALUE"),
    (("block", "--feature", "x", "--reason", ""), "reason: must be 1–500"),
    (("unblock", "7"), "no block #7; active blocks: #1"),
    (("guards", "add", "--name", "g", "--max-request-usd", "0"), "limit: must be more than $0"),
    (("guards", "add", "--name", "g", "--max-avg-request-usd", "1", "--window", "0"), "window: must be 1"),
    (("guards", "add", "--name", "g", "--max-request-usd", "1", "--block-for", "soon"), "duration: expected"),
    (("guards", "remove", "nope"), "no guard named 'nope'; guards: kept"),
])
def test_mistakes_are_named_and_change_nothing(data_dir, capsys, args, message):
    kept = int(run(data_dir, capsys, "block", "--feature", "kept")[0])
    run(data_dir, capsys, "guards", "add", "--name", "kept", "--max-request-usd", "1")
    out, err = run(data_dir, capsys, *args, expect=2)
    assert message in err and out == ""
    assert [b["id"] for b in listed(data_dir, capsys)] == [kept]
    assert [g["name"] for g in json.loads(run(data_dir, capsys, "guards", "list", "--json")[0])["guards"]] == ["kept"]


def test_guards_add_list_remove(data_dir, capsys):
    out, _ = run(data_dir, capsys, "guards", "add", "--name", "big", "--feature", "agent", "--max-request-usd", "0.50")
    assert out == "added guard 'big': a call above $0.50 in feature agent blocks them for 1 h\n"
    run(data_dir, capsys, "guards", "add", "--name", "avg", "--model", "gpt-4o-mini", "--max-avg-request-usd", "$0.05",
        "--window", "10", "--block-for", "forever")
    assert run(data_dir, capsys, "guards", "list")[0].splitlines() == [
        "avg: an average above $0.05 over the last 10 calls in model gpt-4o-mini blocks them until unblocked",
        "big: a call above $0.50 in feature agent blocks them for 1 h"]
    entries = json.loads(run(data_dir, capsys, "guards", "list", "--json")[0])["guards"]
    assert entries[0] == {"name": "avg", "scope": {"model": "gpt-4o-mini"}, "max_request_usd": None,
                          "max_avg_request_usd": "0.05", "window": 10, "block_seconds": None}
    _, err = run(data_dir, capsys, "guards", "add", "--name", "BIG", "--max-request-usd", "1", expect=2)
    assert "a guard named 'BIG' already exists" in err
    run(data_dir, capsys, "guards", "remove", "big")
    assert [g["name"] for g in json.loads(run(data_dir, capsys, "guards", "list", "--json")[0])["guards"]] == ["avg"]
