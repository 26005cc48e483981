"""`llmtray guards add|list|remove`: per-call cost limits that block their scope when broken.

The budget monitor of the running app or `llmtray serve` checks them after each commit
(`core.guards`); a trip creates a block and notifies.
"""

from __future__ import annotations

import argparse
import json
import sys

from llmtray.commands.scope_args import add_scope_arguments, scope_from_args
from llmtray.core.blocks import describe_duration, describe_scope, parse_duration
from llmtray.core.budgets import parse_limit
from llmtray.core.guards import DEFAULT_WINDOW, Guard, GuardBook


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("guards", help="add, list or remove guards (cost limits per call that block)",
                       description="A guard blocks its scope when one call costs more than --max-request-usd, or "
                                   "the last --window calls average more than --max-avg-request-usd.")
    actions = p.add_subparsers(dest="guards_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a guard", description="Add a guard; scope options narrow which "
                             "calls it watches (all must match); without any it watches every call.")
    add.add_argument("--name", required=True, help="unique name (case-insensitive)")
    add_scope_arguments(add, "watch")
    limit = add.add_mutually_exclusive_group(required=True)
    limit.add_argument("--max-request-usd", metavar="USD", help="trip on a single call costing more than this")
    limit.add_argument("--max-avg-request-usd", metavar="USD", help="trip when the last --window calls average more")
    add.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="N",
                     help=f"calls averaged by --max-avg-request-usd (default {DEFAULT_WINDOW})")
    add.add_argument("--block-for", default="1h", metavar="DURATION",
                     help="how long a trip blocks the scope, e.g. 30m, 2h (default 1h), or 'forever'")
    add.set_defaults(run=run_add)
    ls = actions.add_parser("list", help="list guards")
    ls.add_argument("--json", action="store_true", help='print {"guards": [...]}')
    ls.set_defaults(run=run_list)
    rm = actions.add_parser("remove", help="remove a guard (blocks it made stay until they end)")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=run_remove)


def run_add(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    per_call = parse_limit(args.max_request_usd) if args.max_request_usd else None
    average = parse_limit(args.max_avg_request_usd) if args.max_avg_request_usd else None
    block_s = None if args.block_for.strip().lower() == "forever" else parse_duration(args.block_for)
    guard = GuardBook(ctx.store().conn).add(Guard(args.name, scope_from_args(args), per_call, average, args.window,
                                                  block_s))
    print(f"added guard {guard.name!r}: {_line(guard)}")
    return 0


def run_list(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    guards = GuardBook(ctx.store().conn).list()
    if args.json:
        json.dump({"guards": [g.entry() for g in guards]}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    elif not guards:
        print("no guards yet; add one: llmtray guards add --name N --feature F --max-request-usd 0.50")
    else:
        for g in guards:
            print(f"{g.name}: {_line(g)}")
    return 0


def _line(g: Guard) -> str:
    block = f"for {describe_duration(g.block_s)}" if g.block_s else "until unblocked"
    return f"{g.describe()} in {describe_scope(g.scope)} blocks them {block}"


def run_remove(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    removed = GuardBook(ctx.store().conn).remove(args.name)
    print(f"removed guard {removed.name!r} (blocks it made stay until they end or are lifted)")
    return 0
