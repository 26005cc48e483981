"""Things said once about the agents' logs: that llmtray reads them (and how to stop it), and that
Claude Code is about to delete transcripts whose calls llmtray has kept. "Once" is remembered in
`alert_state`, so a restart doesn't repeat it."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping

from llmtray.agents import ledger
from llmtray.agents.claude import cleanup_period_days
from llmtray.agents.settings import LABELS
from llmtray.core.db import BUCKET_US

ANNOUNCED = "agents.announced"
CLEANUP_WARNED = "agents.cleanup_warned"
_DAY_US = 86_400 * 1_000_000

READING = ("llmtray reads the usage logs of coding agents ({agents}) on this machine, so their spend shows "
           "up by itself. To turn it off: Settings → Coding agents, or `[agents] enabled = false` in "
           "config.toml (one agent: `[agents.codex] enabled = false`).")


def first_start(conn: sqlite3.Connection) -> str | None:
    """The "llmtray reads your agents' logs" notice, the first time only."""
    if ledger.get_flag(conn, ANNOUNCED) is not None:
        return None
    ledger.set_flag(conn, ANNOUNCED, str(int(time.time())))
    return READING.format(agents=", ".join(LABELS.values()))


def cleanup_warning(conn: sqlite3.Connection, env: Mapping[str, str] = os.environ, *, once: bool = True) -> str | None:
    """When llmtray holds Claude Code calls older than `cleanupPeriodDays` minus two days, the
    transcripts they came from are (about to be) deleted by Claude Code: say that llmtray's ledger
    is now the history, and how to keep the transcripts. With `once`, only the first time."""
    if once and ledger.get_flag(conn, CLEANUP_WARNED) is not None:
        return None
    days, default = cleanup_period_days(env)
    (oldest,) = conn.execute("SELECT min(bucket) FROM rollup WHERE source = 'claude-code'").fetchone()
    if oldest is None or oldest * BUCKET_US > time.time() * 1_000_000 - max(days - 2, 0) * _DAY_US:
        return None
    if once:
        ledger.set_flag(conn, CLEANUP_WARNED, str(int(time.time())))
    setting = "the default cleanupPeriodDays of 30" if default else f"cleanupPeriodDays = {days}"
    return (f"Claude Code deletes transcripts older than {days} days ({setting}). llmtray has kept every call it "
            "read from them, so its ledger is now your history of that spend; to keep the transcripts "
            "too, raise cleanupPeriodDays in ~/.claude/settings.json.")
