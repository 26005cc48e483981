"""`llmtray block`, `unblock` and `blocks`: stop a scope's calls now, from a script or a terminal.

Works while the app or `llmtray serve` runs: the block is a row in the shared database, and the
proxy re-reads the active blocks within a second (`core.blocks`).
"""

from __future__ import annotations

import argparse
import json
import sys

from llmtray.commands.scope_args import add_scope_arguments, scope_from_args
from llmtray.core.blocks import Block, BlockBook, BlockError, parse_duration


def add_parser(sub: argparse._SubParsersAction) -> None:
    block = sub.add_parser("block", help="refuse a scope's calls (proxy, enforcing hooks) for a while or until lifted",
                           description="Block the calls a scope matches: the proxy answers 429 naming the block and "
                                       "nothing goes upstream; instrument(..., enforce=True) raises Blocked. Prints "
                                       "the block's id. A model alias also covers its dated snapshots.")
    add_scope_arguments(block, "block")
    block.add_argument("--all", action="store_true", help="block every call (no scope)")
    block.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h, 1d; default: until unblocked")
    block.add_argument("--reason", default="blocked from the command line", help="shown to refused callers")
    block.set_defaults(run=run_block)

    unblock = sub.add_parser("unblock", help="lift a block (or all)", description="Lift a block by id, or every "
                             "active block with --all; the proxy lets calls through again within a second.")
    target = unblock.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", type=int, metavar="ID", help="the block's id (llmtray blocks lists them)")
    target.add_argument("--all", action="store_true", help="lift every active block")
    unblock.set_defaults(run=run_unblock)

    ls = sub.add_parser("blocks", help="list active blocks", description="The active blocks with the calls each "
                        "has refused so far.")
    ls.add_argument("--json", action="store_true", help='print {"blocks": [{"id", "scope", "reason", "until", …}]}')
    ls.set_defaults(run=run_list)


def run_block(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    scope = scope_from_args(args)
    if args.all != scope.is_everything:
        raise BlockError("name what to block (--feature, --model, --provider, --project, --user, --env, --tag) "
                         "or give --all, not both" if args.all else
                         "name what to block (--feature, --model, --provider, --project, --user, --env, --tag), "
                         "or --all to block every call")
    for_s = parse_duration(args.duration) if args.duration else None
    block = BlockBook(ctx.store().conn).add(scope, args.reason, "user", for_s)
    print(block.id)
    print(f"blocked {block.what} {block.until_text} (block #{block.id})", file=sys.stderr)
    return 0


def run_unblock(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    book = BlockBook(ctx.store().conn)
    lifted = book.lift_all() if args.all else [book.lift(args.id)]
    for b in lifted:
        print(f"lifted block #{b.id} ({b.what})")
    if not lifted:
        print("no block was active")
    return 0


def run_list(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    book = BlockBook(ctx.store().conn)
    active, refused = book.active(), book.refused()
    if args.json:
        json.dump({"blocks": [{**b.entry(), "refused": refused.get(b.id, 0)} for b in active]}, sys.stdout,
                  indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not active:
        print("no active blocks; block a scope: llmtray block --feature F --for 1h")
        return 0
    print(render(active, refused))
    return 0


def render(blocks: list[Block], refused: dict[int, int]) -> str:
    rows = [["ID", "SCOPE", "UNTIL", "BY", "REFUSED", "REASON"]]
    rows += [[str(b.id), b.what, b.until_text.removeprefix("until "), b.created_by, str(refused.get(b.id, 0)),
              b.reason] for b in blocks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
