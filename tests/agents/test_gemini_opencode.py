"""Gemini CLI (JSONL + legacy JSON) and opencode (SQLite + legacy JSON files) into events.

Hand-computed, per MTok: gemini-2.5-pro $1.25 in, $0.125 cached, $10 out; gemini-2.5-flash $0.30 /
$2.50; gpt-5 $1.25 / $0.125 / $10; claude-sonnet-4.5 $3 / $0.30 read / $3.75 write / $15.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

from tests.agents.kit import events, make_home, scan, scanner

GEMINI_LOG = ".gemini/tmp/shop-api/chats/session-2026-11-06T10-00-5e1f0c4a.jsonl"


def usd(text: str) -> int:
    return int(Decimal(text) * 10**9)


def test_gemini_messages_upserted_by_id_with_thoughts_as_output_and_cached_inside_input(store, tmp_path: Path):
    report = scan(store, make_home(tmp_path, "gemini"))["gemini-cli"]
    stored = events(store, "gemini-cli")
    got = {k: (e["model"], e["input_tokens"], e["cache_read_tokens"], e["output_tokens"], e["reasoning_tokens"],
               e["cost_nanos"]) for k, e in stored.items()}
    assert got == {
        # re-appended three times (no tokens, tokens, tool-call update) and in a $set checkpoint
        # and the legacy .json: one call. 4000×1.25 + 8000×0.125 + (300+120)×10
        "gemini-cli:g-1": ("gemini-2.5-pro", 12000, 8000, 420, 120, usd("0.0102")),
        # the tool-use prompt is input: 2200×1.25 + 12000×0.125 + 50×10
        "gemini-cli:g-2": ("gemini-2.5-pro", 14200, 12000, 50, 0, usd("0.00475")),
        # after a $rewindTo: still billed. 9000×0.3 + 120×2.5
        "gemini-cli:g-3": ("gemini-2.5-flash", 9000, 0, 120, 40, usd("0.003")),
    }
    assert report.added == 3 and report.skipped == 0
    assert all(e["project"] == "shop-api" and e["tags"]["session"] == "5e1f0c4a-7d2b-4e9a-b3c8-1a2b3c4d5e6f"
               for e in stored.values())


def test_gemini_tokens_arriving_after_the_message_was_read(store, tmp_path: Path):
    home = make_home(tmp_path, "gemini")
    (home / GEMINI_LOG).with_suffix(".json").unlink()
    log = home / GEMINI_LOG
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:3]))  # g-1 without tokens yet
    live = scanner(store, home)
    assert live.scan()[2].added == 0
    log.write_text("".join(lines))
    assert live.scan(discover=False)[2].added == 3
    assert events(store)["gemini-cli:g-1"]["output_tokens"] == 420


def test_opencode_messages_from_the_database_and_legacy_files_once(store, tmp_path: Path):
    report = scan(store, make_home(tmp_path, "opencode"))["opencode"]
    stored = events(store, "opencode")
    got = {k: (e["provider"], e["model"], e["input_tokens"], e["cache_read_tokens"], e["cache_write_tokens"],
               e["output_tokens"], e["reasoning_tokens"], e["cost_nanos"], e["tags"].get("agent_cost_usd"))
           for k, e in stored.items()}
    assert got == {
        # in the legacy JSON and the database: once. 10×3 + 20000×0.3 + 1500×3.75 + 400×15;
        # opencode's own figure kept beside it
        "opencode:msg_legacy001": ("anthropic", "claude-sonnet-4-5", 21510, 20000, 1500, 400, 0, usd("0.017655"), "0.0129"),
        # input excludes cache, reasoning is beside output: 7000×1.25 + 3000×0.125 + 800×10
        "opencode:msg_a0000001": ("openai", "gpt-5", 10000, 3000, 0, 800, 300, usd("0.017125"), "0.01"),
        # a subscription provider with no price data: unpriced, never $0
        "opencode:msg_a0000002": ("github-copilot", "claude-opus-4.5", 100, 0, 0, 200, 0, None, "0"),
    }
    assert report.added == 3  # the step-finish part and the session's totals are copies: not counted
    assert stored["opencode:msg_a0000001"]["ts"] // 1000 == 1762500005000  # time.completed


def test_opencode_rows_written_later_are_read_from_the_watermark(store, tmp_path: Path):
    home = make_home(tmp_path, "opencode")
    live = scanner(store, home)
    live.scan()
    db = home / ".local/share/opencode/opencode.db"
    conn = sqlite3.connect(db)  # opencode keeps its database in WAL mode, writes land in the WAL
    conn.execute("PRAGMA journal_mode=wal")
    live.scan(discover=False)  # the switch changed the file; the first reader creates the WAL
    live.scan(discover=False)
    assert live.scan(discover=False)[3].files_read == 0  # nothing changed since: no query
    data = {"role": "assistant", "time": {"created": 1762500020000, "completed": 1762500021000}, "modelID": "gpt-5",
            "providerID": "openai", "path": {"cwd": "/w/x"}, "tokens": {"input": 1000, "output": 10, "reasoning": 0,
                                                                       "cache": {"read": 0, "write": 0}}}
    conn.execute("INSERT INTO message VALUES ('msg_a0000004', 'ses_db01', 1762500021000, 1762500021000, ?)", (json.dumps(data),))
    conn.execute("INSERT INTO message VALUES ('msg_bad', 'ses_db01', 1762500022000, 1762500022000, 'not json')")
    conn.commit()  # the connection stays open: the rows are in the WAL only
    report = live.scan(discover=False)[3]
    conn.close()
    assert (report.added, report.skipped) == (1, 1)
    assert events(store)["opencode:msg_a0000004"]["cost_nanos"] == usd("0.00135")  # 1000×1.25 + 10×10
    assert live.scan(discover=False)[3].skipped == 0  # the bad row is not counted again each poll
