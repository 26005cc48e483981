"""Said once: that llmtray reads the agents' logs, and that Claude Code's clean-up will delete
transcripts whose calls llmtray has kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.agents.notices import cleanup_warning, first_start
from llmtray.core.events import parse_event


def claude_call(days_ago: int):
    ts = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    return parse_event({"id": f"anthropic:msg_{days_ago}", "ts": ts, "provider": "anthropic",
                        "model": "claude-sonnet-4-5", "input_tokens": 10, "output_tokens": 5})


def test_the_first_start_notice_is_said_once_with_how_to_turn_it_off(store):
    text = first_start(store.conn)
    assert text is not None and "[agents] enabled = false" in text and "Settings" in text
    assert first_start(store.conn) is None


def test_kept_calls_older_than_the_default_clean_up_warn_once(store, tmp_path: Path):
    env = {"HOME": str(tmp_path)}
    store.add([claude_call(5)], "claude-code")
    assert cleanup_warning(store.conn, env) is None  # nothing near 30 days yet
    store.add([claude_call(29)], "claude-code")
    text = cleanup_warning(store.conn, env)
    assert text is not None and "30 days (the default cleanupPeriodDays of 30)" in text
    assert cleanup_warning(store.conn, env) is None  # once
    assert cleanup_warning(store.conn, env, once=False) == text  # `llmtray agents` keeps showing it


def test_a_long_cleanup_period_in_claude_settings_means_no_warning(store, tmp_path: Path):
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps({"cleanupPeriodDays": 3650}))
    store.add([claude_call(200)], "claude-code")
    assert cleanup_warning(store.conn, {"HOME": str(tmp_path)}) is None
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps({"cleanupPeriodDays": 90}))
    assert "cleanupPeriodDays = 90" in cleanup_warning(store.conn, {"HOME": str(tmp_path)})
