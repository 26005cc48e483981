"""`llmtray reprice`: recompute computed costs after a price-data update or new overrides."""

from __future__ import annotations

import argparse

from llmtray.commands.report import parse_since


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reprice", help="recompute stored costs with current prices",
                       description="Recompute costs that llmtray computed (provider-reported costs stay).")
    p.add_argument("--since", metavar="WHEN", help="only events since WHEN (7d, 2w, 3m or YYYY-MM-DD)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    since = parse_since(args.since, ctx.config.tz) if args.since else None
    examined, changed = ctx.store().reprice(since_us=since)
    print(f"examined {examined} events, {changed} changed")
    return 0
