"""`llmtray reconcile`: observed vs billed per UTC day × provider × model, each gap labelled
(DESIGN §13). Money in --json is decimal strings; billed and observed are never added together."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta

from llmtray.billing import ledger
from llmtray.billing.reconcile import Reconciliation, reconcile
from llmtray.billing.sources import SOURCES, utc_today
from llmtray.commands.report import parse_since
from llmtray.core.money import format_usd, usd_to_nanos
from llmtray.core.queries import Queries


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="observed vs billed per UTC day and model, differences explained",
                       description="Set what llmtray observed beside what each provider billed, per UTC day, "
                                   "provider and model, with Δ, status and the most likely cause.")
    p.add_argument("--since", default="30d", metavar="WHEN", help="30d (default), 4w or a UTC day YYYY-MM-DD")
    p.add_argument("--source", choices=SOURCES, help="only this billing source")
    p.add_argument("--json", action="store_true", help='print {"rows": [...], "totals": {...}}')
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    first = parse_utc_since(args.since)
    store = ctx.store()  # migrates; its read connection serves the observed side
    conn = ledger.open_ledger(ctx.paths.db)
    try:
        result = reconcile(conn, Queries(store.conn), first, utc_today() + timedelta(days=1),
                           [args.source] if args.source else None)
    finally:
        conn.close()
        store.close()
    if args.json:
        json.dump(result.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 0


def parse_utc_since(text: str) -> date:
    """`--since` (30d, 4w, 3m, YYYY-MM-DD) as a UTC day: bills are kept by UTC day."""
    return datetime.fromtimestamp(parse_since(text, UTC) / 1_000_000, UTC).date()


def render(result: Reconciliation) -> str:
    head = f"{'UTC day':<10}  {'provider':<10}  {'model':<28}  {'observed':>10}  {'billed':>10}  {'Δ':>10}  " \
           f"{'Δ%':>7}  {'status':<13}  cause"
    lines = [head]
    for line in result.lines:
        r = line.as_json()
        billed = format_usd(line.billed_nanos) if r["billed_usd"] is not None else "—"
        delta = format_usd(line.delta_nanos) if r["delta_usd"] is not None else "—"
        pct = f"{r['delta_pct']}%" if r["delta_pct"] is not None else "—"
        lines.append(f"{r['day']:<10}  {r['provider']:<10}  {r['model'][:28]:<28}  "
                     f"{format_usd(line.observed_nanos):>10}  {billed:>10}  {delta:>10}  {pct:>7}  "
                     f"{r['status']:<13}  {r['cause'] or ''}")
    if not result.lines:
        lines.append("nothing observed or billed in this range (connect a source: `llmtray billing connect …`)")
    t = result.totals()
    lines.append(f"observed {format_usd(_n(t['observed_usd']))}   billed {format_usd(_n(t['billed_usd']))}   "
                 f"(never added together; billed through: "
                 + ", ".join(f"{s} {d or '—'}" for s, d in t["billed_through"].items()) + ")")
    return "\n".join(lines)


def _n(text: str | None) -> int:
    return usd_to_nanos(text or "0")
