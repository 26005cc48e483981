"""Helpers for the coding-agent tests: a fake home with the real-format fixtures, and scanning it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from llmtray.agents.scanner import AgentReport, Scanner
from llmtray.agents.settings import AgentsConfig
from llmtray.agents.sinks import StoreSink
from llmtray.core.store import Store

FIXTURES = Path(__file__).parent.parent / "data" / "agents"


WHERE = {"claude": ".claude", "codex": ".codex", "gemini": ".gemini", "opencode": ".local/share/opencode"}


def make_home(tmp_path: Path, *agents: str) -> Path:
    """A HOME with the named agents' folders (default: all) copied from tests/data/agents."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    for name in agents or tuple(WHERE):
        shutil.copytree(FIXTURES / name, home / WHERE[name])
    return home


def scanner(store: Store, home: Path, config: AgentsConfig | None = None, **env: str) -> Scanner:
    return Scanner(store.conn, StoreSink(lambda: store), config or AgentsConfig(), env={"HOME": str(home), **env})


def scan(store: Store, home: Path, config: AgentsConfig | None = None, **env: str) -> dict[str, AgentReport]:
    return {r.source: r for r in scanner(store, home, config, **env).scan()}


def events(store: Store, source: str | None = None) -> dict[str, dict[str, Any]]:
    """Stored events by id (with tags decoded)."""
    import json

    cur = store.conn.execute("SELECT * FROM event" + (" WHERE source = ?" if source else ""), (source,) if source else ())
    cols = [d[0] for d in cur.description]
    out = {}
    for row in cur:
        e = dict(zip(cols, row))
        e["tags"] = json.loads(e["tags"]) if e["tags"] else {}
        out[e["event_id"]] = e
    return out


def rollup_cost(store: Store, source: str) -> int:
    """The 15-minute rollup's cost for `source` (must always equal the events' own sum)."""
    return store.conn.execute("SELECT coalesce(sum(cost_nanos), 0) FROM rollup WHERE source = ?", (source,)).fetchone()[0]
