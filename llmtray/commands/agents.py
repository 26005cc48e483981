"""`llmtray agents [--json]` and `llmtray agents scan [--agent NAME] [--json]` (DESIGN §11).

The status reads only the tailer's state and the rollups (no walk of the logs). The scan is one
pass over every enabled agent's logs, stored straight into the database (safe while the app or
`serve` runs: ids are deterministic, so whichever stores a call first wins, the other counts a
duplicate). A scan with nothing new never loads the price data, so it stays a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any

from llmtray.agents.settings import LABELS, SOURCES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agents", help="coding agents' spend from their local logs (Claude Code, Codex, …)",
                       description="Per agent: enabled, log folders found, files, calls stored, lines skipped "
                                   "(and why), newest call. `agents scan` reads the logs now.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run_status)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    scan = actions.add_parser("scan", help="read every agent's logs now (backfill or catch-up)",
                              description="One pass over all logs; a second scan adds nothing.")
    scan.add_argument("--agent", choices=SOURCES, help="only this agent")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    scan.set_defaults(run=run_scan)


def _connect(ctx: Any) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The events' database, and where this machine's file states and notices are (the same
    one, except in team mode: `ledger.connect_local`)."""
    from llmtray.agents.ledger import connect_local
    from llmtray.core import db as dbmod

    ctx.paths.ensure()
    dbmod.migrate(ctx.paths.db)
    conn = dbmod.connect(ctx.paths.db, autocommit=True)
    conn.execute(f"PRAGMA busy_timeout = {dbmod.PRAGMAS['busy_timeout']}")
    return conn, connect_local(ctx.paths.db, ctx.paths.local_db) or conn


def run_scan(args: argparse.Namespace, ctx: Any) -> int:
    from llmtray.agents.notices import cleanup_warning
    from llmtray.agents.scanner import Scanner
    from llmtray.agents.sinks import StoreSink

    conn, local = _connect(ctx)
    sink = StoreSink(ctx.store)
    try:
        reports = Scanner(conn, sink, ctx.config.agents, parallel=True, ledger_conn=local,
                          make_pricer=lambda: sink.opened().pricer).scan(args.agent)  # pricing.toml too
        warning = cleanup_warning(local)
    finally:
        sink.close()
        conn.close()
        local.close()
    if args.json:
        json.dump({"agents": [r.as_json() for r in reports], "notices": [warning] if warning else []},
                  sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not reports:
        print("no coding agent is enabled (see [agents] in config.toml)")
    for r in reports:
        print(f"{LABELS[r.source]:<12} {r.files:>6} files ({r.files_read} read)  {r.added:>7} calls added  "
              f"{r.updated} updated  {r.duplicates} duplicates  {r.skipped} lines skipped")
        for error in r.errors:
            print(f"  cannot read {error}")
        if not r.roots:
            print("  no logs found")
    if warning:
        print(f"note: {warning}")
    return 0


def run_status(args: argparse.Namespace, ctx: Any) -> int:
    from llmtray.agents.notices import cleanup_warning
    from llmtray.agents.status import status

    conn, local = _connect(ctx)
    try:
        agents = status(conn, ctx.config.agents, ledger_conn=local)
        warning = cleanup_warning(local, once=False)
    finally:
        conn.close()
        local.close()
    if args.json:
        json.dump({"enabled": ctx.config.agents.enabled, "agents": agents, "notices": [warning] if warning else []},
                  sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not ctx.config.agents.enabled:
        print("reading coding agents' logs is off ([agents] enabled = false in config.toml)")
    for a in agents:
        state = ("on" if a["enabled"] else "off") + (", subscription" if a["billing"] == "subscription" else "")
        print(f"{LABELS[a['agent']]} ({state})")
        print(f"  logs     {', '.join(a['roots']) or 'none found'}")
        print(f"  files    {a['files']}   calls stored {a['events']}   newest {a['newest_event'] or '-'}")
        if a["billing"] == "subscription":
            print(f"  value    ${a['api_equivalent_usd']} at API prices (covered by the subscription: not spend)")
        for reason, s in a["skipped"].items():
            print(f"  skipped  {s['lines']} lines: {reason} (first at {s['first']})")
    if warning:
        print(f"note: {warning}")
    return 0
