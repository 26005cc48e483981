"""Claude Code transcripts (tests/data/agents/claude: real-format lines of 1.0.8 and 2.0.x) into
events: one per API call, final counts, the llmtray token convention, exact prices.

Expected values are computed by hand from the fixture lines and the list prices per MTok:
sonnet-4/4.5 $3 in, $0.30 cache read, $3.75 5-minute write, $6 1-hour write, $15 out;
haiku-4.5 $1 / $0.10 / $1.25 / $2 / $5; opus-4.6 $5 / $0.50 / $6.25 / $10 / $25.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from llmtray.agents.settings import AgentsConfig, AgentSettings
from llmtray.core.store import to_us
from tests.agents.kit import FIXTURES, events, make_home, rollup_cost, scan

SESSION = "7f3c2a9e-1b4d-4c8e-9a2f-5d6e7f8a9b0c"
MAIN = f"projects/-home-dev-work-shop-api/{SESSION}.jsonl"


def usd(text: str) -> int:
    return int(Decimal(text) * 10**9)


# id -> (input incl. cache, cache read, cache write, of it 1h, output, cost in USD or None: unpriced)
EXPECTED = {
    # three streamed lines (output 2, 9, 159) are one call with the final output; its cache
    # write is all 1-hour: 3×3 + 20000×0.3 + 1000×6 + 159×15 per MTok
    "anthropic:msg_01AbCdEf": (21003, 20000, 1000, 1000, 159, "0.014394"),
    # no requestId (gateway style): keyed by message id; 5-minute write: 10×3 + 21000×0.3 + 500×3.75 + 40×15
    "anthropic:msg_01GhIjKl": (21510, 21000, 500, 0, 40, "0.008805"),
    # 1.0.8 shape: no cache split (all 5-minute), costUSD ignored: 5×3 + 2000×3.75 + 100×15
    "anthropic:msg_01OldOld": (2005, 0, 2000, 0, 100, "0.009015"),
    # subagent transcript whose snapshots differ in input and cache fields: each count's maximum
    # 5×1 + 3100×0.1 + 200×1.25 + 88×5
    "anthropic:msg_01SubAg": (3305, 3100, 200, 0, 88, "0.001005"),
    # 20×5 + 30000×0.5 + 300×25 (the 2 web searches are tagged; the price data has no per-search
    # fee field in llmtray's event, see docs/agents.md)
    "anthropic:msg_01MnOpQr": (30020, 30000, 0, 0, 300, "0.0226"),
    # a gateway's model: unpriced, never $0
    "anthropic:msg_gw_0001": (1200, 0, 0, 0, 80, None),
}


def test_each_call_is_stored_once_with_its_final_counts_and_exact_price(store, tmp_path: Path):
    home = make_home(tmp_path, "claude")
    report = scan(store, home)["claude-code"]
    stored = events(store, "claude-code")
    assert set(stored) == set(EXPECTED)  # no <synthetic>, no progress-embedded usage, no compaction figures
    for event_id, (inp, read, write, write_1h, out, cost) in EXPECTED.items():
        e = stored[event_id]
        assert (e["input_tokens"], e["cache_read_tokens"], e["cache_write_tokens"], e["cache_write_1h_tokens"],
                e["output_tokens"]) == (inp, read, write, write_1h, out), event_id
        if cost is None:
            assert e["cost_nanos"] is None and e["cost_source"] == "unpriced"
        else:
            assert (e["cost_nanos"], e["cost_source"]) == (usd(cost), "computed"), event_id
    assert report.added == len(EXPECTED)
    assert rollup_cost(store, "claude-code") == sum(usd(c) for *_, c in EXPECTED.values() if c)


def test_attribution_session_project_version_and_subagent(store, tmp_path: Path):
    scan(store, make_home(tmp_path, "claude"))
    stored = events(store, "claude-code")
    main, sub, old = stored["anthropic:msg_01AbCdEf"], stored["anthropic:msg_01SubAg"], stored["anthropic:msg_01OldOld"]
    assert main["project"] == "shop-api" and main["tags"]["session"] == SESSION
    assert main["tags"]["agent_version"] == "2.0.14" and "subagent" not in main["tags"]
    assert main["ts"] == to_us(datetime(2026, 11, 2, 21, 40, 5, 880_000, tzinfo=UTC))  # the final line's time
    # the subagent's spend rolls up to the session that spawned it
    assert sub["tags"]["session"] == SESSION and sub["tags"]["subagent"] == "true"
    # the project comes from cwd, not from the lossy folder slug
    assert old["project"] == "tenant-library" and old["tags"]["agent_version"] == "1.0.8"
    assert stored["anthropic:msg_01MnOpQr"]["tags"]["web_search_requests"] == "2"


def test_a_second_scan_adds_nothing(store, tmp_path: Path):
    home = make_home(tmp_path, "claude")
    scan(store, home)
    before = events(store)
    again = scan(store, home)["claude-code"]
    assert (again.added, again.updated, again.files_read) == (0, 0, 0)
    assert events(store) == before


def test_a_restart_with_an_empty_state_still_stores_nothing_twice(store, tmp_path: Path):
    """Even with the tailer's state lost, every line re-read has an id already stored."""
    home = make_home(tmp_path, "claude")
    scan(store, home)
    store.conn.execute("DELETE FROM agent_file")
    again = scan(store, home)["claude-code"]
    assert again.added == 0 and again.duplicates == len(EXPECTED)
    assert len(events(store)) == len(EXPECTED)


def test_a_truncated_line_is_skipped_with_its_line_number_and_the_rest_is_read(store, tmp_path: Path):
    home = make_home(tmp_path, "claude")
    report = scan(store, home)["claude-code"]
    assert report.skipped == 1
    (skipped,) = store.conn.execute("SELECT skipped FROM agent_file WHERE path LIKE ?", (f"%{SESSION}.jsonl",)).fetchone()
    assert json.loads(skipped) == {"malformed JSON (Expecting ',' delimiter)": [1, 12]}
    assert "anthropic:msg_01MnOpQr" in events(store)  # the lines after it were read


def test_a_snapshot_that_grows_after_it_was_stored_replaces_it(store, tmp_path: Path):
    """Live: the first streamed line is read before the final one is written."""
    home = make_home(tmp_path, "claude")
    path = home / ".claude" / MAIN
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))  # up to the first snapshot (output 2)
    scan(store, home)
    assert events(store)["anthropic:msg_01AbCdEf"]["output_tokens"] == 2
    path.write_bytes(b"".join(lines))
    report = scan(store, home)["claude-code"]
    e = events(store)["anthropic:msg_01AbCdEf"]
    assert report.updated == 1 and e["output_tokens"] == 159 and e["cost_nanos"] == usd("0.014394")
    # the rollups follow the replacement exactly (no leftover of the partial copy)
    assert rollup_cost(store, "claude-code") == sum(usd(c) for *_, c in EXPECTED.values() if c)
    assert store.conn.execute("SELECT sum(events) FROM rollup WHERE source = 'claude-code'").fetchone()[0] == len(EXPECTED)


def test_a_resume_copy_with_partial_or_zero_usage_neither_doubles_nor_lowers(store, tmp_path: Path):
    home = make_home(tmp_path, "claude")
    scan(store, home)
    copy = home / ".claude" / "projects" / "-home-dev-work-shop-api" / "c0ffee00-1111-4222-8333-444455556666.jsonl"
    copy.rename(copy.with_name("d00d0000-0000-4000-8000-000000000000.jsonl"))  # found again as a new file
    report = scan(store, home)["claude-code"]
    assert report.added == 0 and report.updated == 0
    assert events(store)["anthropic:msg_01AbCdEf"]["output_tokens"] == 159


def test_the_same_call_stored_by_the_proxy_is_kept_and_not_doubled(store, tmp_path: Path):
    from llmtray.core.events import parse_event

    proxied = parse_event({"id": "anthropic:msg_01GhIjKl", "ts": "2026-11-02T21:40:09Z", "provider": "anthropic",
                           "model": "claude-sonnet-4-5", "input_tokens": 21510, "cache_read_tokens": 21000,
                           "cache_write_tokens": 500, "output_tokens": 40})
    store.add([proxied], "proxy")
    report = scan(store, make_home(tmp_path, "claude"))["claude-code"]
    assert report.duplicates >= 1
    assert events(store)["anthropic:msg_01GhIjKl"]["source"] == "proxy"


def test_the_same_call_stored_by_another_path_under_its_request_id_is_not_doubled(store, tmp_path: Path):
    from llmtray.core.events import parse_event

    otel = parse_event({"id": "anthropic:req_011CUa1", "ts": "2026-11-02T21:40:05Z", "provider": "anthropic",
                        "model": "claude-sonnet-4-5", "input_tokens": 21003, "output_tokens": 159})
    store.add([otel], "otel")
    report = scan(store, make_home(tmp_path, "claude"))["claude-code"]
    assert report.added == len(EXPECTED) - 1 and "anthropic:msg_01AbCdEf" not in events(store)


def test_subscription_usage_is_its_api_value_never_spend(store, tmp_path: Path):
    config = AgentsConfig(agents={"claude-code": AgentSettings(billing="subscription")})
    scan(store, make_home(tmp_path, "claude"), config)
    e = events(store)["anthropic:msg_01AbCdEf"]
    assert (e["cost_nanos"], e["cost_source"]) == (0, "reported")
    assert e["tags"]["billing"] == "subscription" and e["tags"]["api_equivalent_usd"] == "0.014394"
    assert events(store)["anthropic:msg_gw_0001"]["tags"]["api_equivalent_usd"] == "unpriced"
    assert rollup_cost(store, "claude-code") == 0


def test_roots_follow_claude_config_dir_list_and_both_default_folders(store, tmp_path: Path):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    shutil.copytree(FIXTURES / "claude", home / ".config" / "claude")  # the 1.0.30 location
    extra = tmp_path / "work-profile"
    (extra / "projects" / "p").mkdir(parents=True)
    (extra / "projects" / "p" / "s.jsonl").write_text((FIXTURES / "claude" / MAIN).read_text().splitlines()[4] + "\n")
    report = scan(store, home, CLAUDE_CONFIG_DIR=f"{extra}, {tmp_path / 'missing'}")["claude-code"]
    assert report.roots == [str(extra / "projects"), str(home / ".config" / "claude" / "projects")]
    assert report.added == len(EXPECTED)  # the call in both roots is stored once


def test_a_disabled_agent_is_not_read(store, tmp_path: Path):
    config = AgentsConfig(agents={"claude-code": AgentSettings(enabled=False)})
    assert "claude-code" not in scan(store, make_home(tmp_path, "claude"), config)
    assert events(store) == {}


def test_the_finished_copy_gives_the_call_its_time_whichever_file_is_read_last(store, tmp_path: Path):
    """A resume copy of the first snapshot, read after the original: the call keeps the final
    line's time (and counts), not the copy's."""
    home = make_home(tmp_path, "claude")
    copy = home / ".claude" / "projects" / "-home-dev-work-shop-api" / "c0ffee00-1111-4222-8333-444455556666.jsonl"
    lines = copy.read_text().splitlines(keepends=True)
    copy.write_text(lines[0].replace("2026-11-02T21:40:03.120Z", "2026-11-09T08:00:00.000Z"))  # copied a week later
    os.utime(copy, (1_700_000_000, 1_700_000_000))  # older file: read after the original (newest first)
    scan(store, home)
    e = events(store)["anthropic:msg_01AbCdEf"]
    assert e["ts"] == to_us(datetime(2026, 11, 2, 21, 40, 5, 880_000, tzinfo=UTC)) and e["output_tokens"] == 159
