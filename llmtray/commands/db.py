"""`llmtray db copy --to URL`: move a local history into a team's PostgreSQL (DESIGN §16)."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the database: copy a local history into the team database",
                       description="Operations on the store itself.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    c = dsub.add_parser("copy", help="copy every event into another database (again: adds nothing)",
                        description="Copy every event of this data dir's database (or --database) into URL, "
                                    "with its stored cost, through the target's idempotent write path: running it "
                                    "again, or after an interruption, adds nothing twice.")
    c.add_argument("--to", metavar="URL", required=True, help="postgresql://USER@HOST:PORT/DB or sqlite:///PATH")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.set_defaults(run=run_copy)


def run_copy(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    from llmtray.core import dburl
    from llmtray.team.copy import copy_events

    target = dburl.resolve(args.to, None, ctx.config.machine)
    assert target is not None
    source = ctx.paths.db
    if str(target) == str(source):
        print("llmtray: error: --to names the database being copied", file=sys.stderr)
        return 2
    started = time.monotonic()
    last = [0.0]

    def progress(result, total: int) -> None:  # noqa: ANN001
        now = time.monotonic()
        if args.quiet or (now - last[0] < 1.0 and result.read < total):
            return
        last[0] = now
        share = f" ({100 * result.read / total:.0f} %)" if total else ""
        print(f"copied {result.read:,} of {total:,} events{share}", file=sys.stderr, flush=True)

    result = copy_events(source, target, progress=progress)
    print(f"{result.copied:,} events copied to {target}, {result.already:,} already there "
          f"({time.monotonic() - started:.1f} s)")
    return 0
