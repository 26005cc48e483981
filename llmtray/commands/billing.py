"""`llmtray billing connect|disconnect|sync|status` (DESIGN §13): the provider's own bill.

`sync` exits 1 when any source failed (auth, scope, rate limit, network), after trying the
others, with the source's own message on stderr; its state is kept for `status` and the app.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any

from llmtray.billing import ledger
from llmtray.billing.errors import BillingError, NotConnected
from llmtray.billing.keys import SPECS, check_class, load_key, save_key
from llmtray.billing.sources import SOURCES, utc_today
from llmtray.billing.sync import connected_sources, sync_source, transport_for
from llmtray.commands.report import parse_since
from llmtray.core.errors import LLMTrayError
from llmtray.core.money import format_usd, nanos_to_str


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
    source = SOURCES[args.source]
    try:
        key = check_class(args.source, _read_key(args.source, args.stdin))
        source.check(transport_for(source, ctx.config, key), utc_today())
    except BillingError as exc:
        print(f"llmtray: error: {exc}", file=sys.stderr)
        return 1
    try:
        save_key(args.source, key)
    except Exception as exc:  # noqa: BLE001 - keyring backends raise their own types
        raise LLMTrayError(f"the key works, but no keyring could store it ({type(exc).__name__}: {exc}); "
                           f"set {SPECS[args.source].env} in the environment instead") from None
    print(f"{args.source}: connected; the key is in the system keyring. Sync with `llmtray billing sync`.")
    return 0


def run_disconnect(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    save_key(args.source, None)
    conn = ledger.open_ledger(ctx.paths.db)
    try:
        ledger.forget(conn, args.source)
    finally:
        conn.close()
    print(f"{args.source}: disconnected (the bill already synced stays in the ledger)")
    return 0


def run_sync(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    since = None
    if args.since:
        since = datetime.fromtimestamp(parse_since(args.since, UTC) / 1_000_000, UTC).date()
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


def status(ctx) -> list[dict[str, Any]]:  # noqa: ANN001
    """Per source, for `status --json` and the Settings section."""
    conn = ledger.open_ledger(ctx.paths.db)
    try:
        states = ledger.states(conn)
        out = []
        for name in SOURCES:
            try:
                load_key(name)
                connected, key_problem = True, None
            except NotConnected:
                connected, key_problem = False, None
            except BillingError as exc:
                connected, key_problem = False, str(exc)
            st, cov = states.get(name), ledger.coverage(conn, name)
            out.append({"source": name, "connected": connected, "key_problem": key_problem,
                        "state": st.state if st else "never_synced", "message": st.message if st else None,
                        "last_sync": _iso(st.last_success) if st else None,
                        "last_attempt": _iso(st.last_attempt) if st else None,
                        "retry_at": _iso(st.retry_at) if st else None,
                        "days": cov.days, "first_day": cov.first, "last_day": cov.last,
                        "provisional_days": cov.provisional_days, "billed_usd": nanos_to_str(cov.billed_nanos)})
        return out
    finally:
        conn.close()


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if ts else None


def run_status(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    rows = status(ctx)
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
