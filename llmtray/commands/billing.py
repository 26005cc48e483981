"""`llmtray billing connect|disconnect|sync|status` (DESIGN §13): the provider's own bill.

`sync` exits 1 when any source failed (auth, scope, rate limit, network), after trying the
others, with the source's own message on stderr; its state is kept for `status` and the app.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from llmtray.billing.errors import BillingError
from llmtray.billing.keys import SPECS
from llmtray.billing.sources import SOURCES
from llmtray.billing.sync import connect, connected_sources, disconnect, sync_source
from llmtray.billing.view import source_statuses
from llmtray.commands.reconcile import parse_utc_since
from llmtray.core.errors import LLMTrayError
from llmtray.core.money import format_usd


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("billing", help="connect and sync the providers' own bills",
                       description="Pull what OpenAI, Anthropic and OpenRouter say they billed (admin or "
                                   "management keys, kept in the keyring), to set beside what llmtray observed "
                                   "(`llmtray reconcile`).")
    actions = p.add_subparsers(dest="billing_action", metavar="ACTION", required=True)
    c = actions.add_parser("connect", help="store a source's admin/management key (checked with one call)")
    c.add_argument("source", choices=SOURCES)
    c.add_argument("--stdin", action="store_true", help="read the key from stdin instead of a hidden prompt")
    c.set_defaults(run=run_connect)
    d = actions.add_parser("disconnect", help="remove a source's key from the keyring (its synced bill stays)")
    d.add_argument("source", choices=SOURCES)
    d.set_defaults(run=run_disconnect)
    s = actions.add_parser("sync", help="pull the bill now")
    s.add_argument("--source", choices=SOURCES, help="only this source (default: every connected one)")
    s.add_argument("--since", metavar="WHEN", help="backfill from this UTC day: 30d, 4w or YYYY-MM-DD "
                                                   "(default: 30 days the first time, then the last 3)")
    s.set_defaults(run=run_sync)
    st = actions.add_parser("status", help="per source: connected, last sync, days covered, billed total")
    st.add_argument("--json", action="store_true")
    st.set_defaults(run=run_status)


def _read_key(source: str, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(f"{SPECS[source].kind}: ")


def run_connect(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    try:
        connect(ctx.config, args.source, _read_key(args.source, args.stdin))
    except BillingError as exc:
        print(f"llmtray: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - keyring backends raise their own types
        raise LLMTrayError(f"the key works, but no keyring could store it ({type(exc).__name__}: {exc}); "
                           f"set {SPECS[args.source].env} in the environment instead") from None
    print(f"{args.source}: connected; the key is in the system keyring. Sync with `llmtray billing sync`.")
    return 0


def run_disconnect(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    disconnect(ctx.paths.db, args.source)
    print(f"{args.source}: disconnected (the bill already synced stays in the ledger)")
    return 0


def run_sync(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    since = None
    if args.since:
        since = parse_utc_since(args.since)
    names = [args.source] if args.source else connected_sources()
    if not names:
        print("llmtray: error: no billing source is connected; run `llmtray billing connect openai` "
              "(or anthropic, openrouter) or set " + ", ".join(s.env for s in SPECS.values()), file=sys.stderr)
        return 1
    ctx.paths.ensure()
    failed = False
    for name in names:
        try:
            result = sync_source(ctx.paths.db, ctx.config, name, since=since)
        except BillingError as exc:
            print(f"llmtray: error: {exc}", file=sys.stderr)
            failed = True
            continue
        days = result.window.days
        print(f"{name}: {len(days)} days fetched ({days[0]} … {days[-1]}), billed {format_usd(result.billed_nanos)}")
    return 1 if failed else 0


def run_status(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    rows = source_statuses(ctx.paths.db)
    if args.json:
        json.dump({"sources": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        head = "connected" if r["connected"] else (r["key_problem"] or "not connected")
        print(f"{r['source']:<11} {head}")
        if r["message"]:
            print(f"  state      {r['state']}: {r['message']}")
        print(f"  last sync  {r['last_sync'] or 'never'}")
        if r["days"]:
            print(f"  covers     {r['first_day']} … {r['last_day']} ({r['days']} UTC days, "
                  f"{r['provisional_days']} provisional), billed ${r['billed_usd']}")
    return 0
