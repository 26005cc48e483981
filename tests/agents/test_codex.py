"""Codex rollouts (tests/data/agents/codex, cli 0.46/0.50 shapes) into events: rises of the
cumulative `token_count` totals, re-emitted totals and forks stored once, resets, model changes.

Hand-computed from the fixture: gpt-5 and gpt-5-codex cost $1.25 in, $0.125 cached, $10 out per
MTok (input includes the cached tokens; output includes reasoning).
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

from llmtray.agents.settings import AgentsConfig
from tests.agents.kit import events, make_home, rollup_cost, scanner, scan

PARENT = "019a4f2e-7c1d-7b30-9e55-0d1c2b3a4f5e"
CHILD = "019a5000-aaaa-7bbb-8ccc-dddddddddddd"
PARENT_FILE = f"sessions/2026/11/03/rollout-2026-11-03T10-00-00-{PARENT}.jsonl"
CHILD_FILE = f"sessions/2026/11/03/rollout-2026-11-03T13-00-00-{CHILD}.jsonl"


def usd(text: str) -> int:
    return int(Decimal(text) * 10**9)


# (session, model, input, cached, output, reasoning, cost)
CALLS = [
    (PARENT, "gpt-5-codex", 10000, 2000, 500, 200, "0.01525"),  # 8000×1.25 + 2000×0.125 + 500×10
    (PARENT, "gpt-5-codex", 15000, 10000, 400, 100, "0.01150"),  # the rise 10000→25000; its repeat adds nothing
    (PARENT, "gpt-5", 15000, 8000, 600, 200, "0.01575"),  # after the model change
    (PARENT, "gpt-5", 3000, 0, 100, 0, "0.00475"),  # resumed: the total fell, this call is last_token_usage
    (CHILD, "gpt-5", 12000, 10000, 300, 100, "0.00675"),  # the fork's own turn; its copied history is the parent's
]


def as_calls(stored: dict) -> list[tuple]:
    rows = sorted(stored.values(), key=lambda e: (e["ts"], e["event_id"]))
    return [(e["tags"]["session"], e["model"], e["input_tokens"], e["cache_read_tokens"], e["output_tokens"],
             e["reasoning_tokens"], e["cost_nanos"]) for e in rows if e["provider"] == "openai"]


def expected() -> list[tuple]:
    return sorted(((s, m, i, c, o, r, usd(cost)) for s, m, i, c, o, r, cost in CALLS),
                  key=lambda t: [e[:6] for e in CALLS].index(t[:6]))


def test_rises_of_the_cumulative_total_are_the_calls(store, tmp_path: Path):
    report = scan(store, make_home(tmp_path, "codex"))["codex"]
    stored = events(store, "codex")
    assert sorted(as_calls(stored)) == sorted(expected())
    assert report.added == len(CALLS) + 1  # + the local model's call
    assert rollup_cost(store, "codex") == sum(usd(c) for *_, c in CALLS)
    fork = next(e for e in stored.values() if e["tags"]["session"] == CHILD)
    assert fork["tags"]["forked_from"] == PARENT and fork["project"] == "billing"
    assert all(e["operation"] == "responses" and e["tags"]["agent_version"] for e in stored.values())


def test_a_fork_read_before_its_parent_still_bills_the_copied_history_once(store, tmp_path: Path):
    home = make_home(tmp_path, "codex")
    parent = home / ".codex" / PARENT_FILE
    held = tmp_path / "parent.jsonl"
    shutil.move(parent, held)
    first = scan(store, home)["codex"]
    # without the parent, the child's copy of its history is billed once (fail open)
    assert first.added == 4 + 1
    shutil.move(held, parent)
    scan(store, home)
    # the same calls and money; the copied calls are attributed to the fork's session, which
    # stored them first (a copied row can't be told from the fork's own by its content)
    assert sorted(c[1:] for c in as_calls(events(store, "codex"))) == sorted(c[1:] for c in expected())


def test_an_archived_copy_of_a_rollout_adds_nothing(store, tmp_path: Path):
    home = make_home(tmp_path, "codex")
    scan(store, home)
    archived = home / ".codex" / "archived_sessions" / Path(PARENT_FILE).name
    shutil.move(home / ".codex" / PARENT_FILE, archived)
    report = scan(store, home)["codex"]
    assert report.added == 0 and report.files_read == 1
    assert sorted(as_calls(events(store, "codex"))) == sorted(expected())
    # the moved file's old state is forgotten, its new path is tracked
    paths = {p for (p,) in store.conn.execute("SELECT path FROM agent_file WHERE source = 'codex'")}
    assert str(archived) in paths and str(home / ".codex" / PARENT_FILE) not in paths


def test_a_non_openai_provider_is_not_priced_at_openai_rates(store, tmp_path: Path):
    scan(store, make_home(tmp_path, "codex"))
    (local,) = [e for e in events(store, "codex").values() if e["provider"] != "openai"]
    assert (local["provider"], local["model"], local["cost_source"], local["cost_nanos"]) == \
        ("ollama", "gpt-oss:20b", "unpriced", None)


def test_reading_resumes_mid_file_after_a_restart_without_rebilling(store, tmp_path: Path):
    """The running totals are saved with the offset: a new process continues the deltas."""
    home = make_home(tmp_path, "codex")
    (home / ".codex" / CHILD_FILE).unlink()
    path = home / ".codex" / PARENT_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:8]))  # up to the second rise
    scan(store, home)
    path.write_bytes(b"".join(lines))
    scan(store, home)  # a new Scanner: state from the database only
    parent_calls = [c for c in as_calls(events(store, "codex")) if c[0] == PARENT]
    assert sorted(parent_calls) == sorted(c for c in expected() if c[0] == PARENT)


def test_a_resumed_session_appended_to_an_old_file_is_read_live(store, tmp_path: Path):
    """Resumes append to the original file in an old date folder: never only "today's" folder."""
    home = make_home(tmp_path, "codex")
    (home / ".codex" / CHILD_FILE).unlink()
    path = home / ".codex" / PARENT_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:12]))
    live = scanner(store, home, AgentsConfig())
    live.scan()
    with path.open("ab") as f:
        f.write(b"".join(lines[12:]))
    report = live.scan(discover=False)[1]
    assert report.added == 1
    assert sorted(c for c in as_calls(events(store, "codex")) if c[0] == PARENT) == \
        sorted(c for c in expected() if c[0] == PARENT)


def test_token_counts_without_a_running_total_are_each_one_call(store, tmp_path: Path):
    """Rollouts that log only the turn's usage (early builds: the counts right in the payload, or
    `info` without `total_token_usage`) still bill every turn, once."""
    home = tmp_path / "home"
    folder = home / ".codex" / "sessions" / "2025" / "08" / "01"
    folder.mkdir(parents=True)
    usage = {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 50, "reasoning_output_tokens": 10,
             "total_tokens": 1050}
    rows = [
        {"timestamp": "2025-08-01T10:00:00Z", "type": "session_meta", "payload": {"id": "t-early", "cwd": "/w/cli"}},
        {"timestamp": "2025-08-01T10:00:01Z", "type": "turn_context", "payload": {"model": "gpt-5"}},
        {"timestamp": "2025-08-01T10:00:05Z", "type": "event_msg", "payload": {"type": "token_count", **usage}},
        {"timestamp": "2025-08-01T10:01:05Z", "type": "event_msg",
         "payload": {"type": "token_count", "info": {"last_token_usage": usage, "total_token_usage": None}}},
    ]
    (folder / "rollout-2025-08-01T12-00-00-t-early.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = scan(store, home)["codex"]
    assert (report.added, report.skipped) == (2, 0)
    # 800×1.25 + 200×0.125 + 50×10 per MTok, twice
    assert sum(e["cost_nanos"] for e in events(store, "codex").values()) == 2 * usd("0.001525")
