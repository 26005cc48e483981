"""`llmtray status`: today, this month and every budget at one glance (`--json` for scripts).

The JSON is `core.status.summary`, the same body as `GET /v1/summary`, so a script, the API and
the tray can never disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from llmtray.core.blocks import describe_scope, scope_from_dict
from llmtray.core.budgets import PERIOD_PHRASE
from llmtray.core.money import format_usd, usd_to_nanos
from llmtray.core.status import summary
from llmtray.core.wording import display_width, pad, plural

_BAR = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="today / month spend and budgets, one glance",
                       description="Spend today and this month, the projected month end and every budget. "
                                   "Money in --json is decimal strings.")
    p.add_argument("--json", action="store_true",
                   help='print {"today_usd", "month_usd", "projected_month_usd", "budgets": [...], "blocks": [...]}')
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    data = summary(ctx.queries(), week_start=ctx.config.week_start)
    if args.json:
        json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(render(data))
    return 0


def render(data: dict[str, Any]) -> str:
    """The human one-glance view (plain ASCII: it ends up in terminals, logs and cron mail)."""
    lines = [
        f"today       {_usd(data['today_usd']):>12}   {plural(data['today_requests'], 'request')}",
        f"this month  {_usd(data['month_usd']):>12}   projected {_usd(data['projected_month_usd'])} by month end",
    ]
    budgets = data["budgets"]
    if budgets:
        width = max(display_width(b["name"]) for b in budgets)
        lines.append("budgets")
        for b in budgets:
            filled = min(_BAR, int(b["percent"] * _BAR // 100))
            state = b["state"].upper() if b["state"] != "ok" else "ok"
            lines.append(
                f"  {pad(b['name'], width)}  [{'#' * filled}{'.' * (_BAR - filled)}] {b['percent']:>5.0f}%  "
                f"{_usd(b['spent_usd'])} of {_usd(b['limit_usd'])} {PERIOD_PHRASE[b['period']]}  {state}"
                f"  (projected {_usd(b['projected_usd'])})"
            )
    else:
        lines.append("budgets     none (add one: llmtray budgets add --name NAME --limit USD --period month)")
    for b in data.get("blocks", []):
        what = describe_scope(scope_from_dict(b["scope"]))
        lines.append(f"BLOCKED     #{b['id']} {what} until {b['until'] or 'lifted'}: {b['reason']}")
    if data.get("unpriced_requests_month"):
        n = data["unpriced_requests_month"]
        lines.append(f"note: {plural(n, 'request')} this month {'has' if n == 1 else 'have'} no known price "
                     f"and {'is' if n == 1 else 'are'} not counted (llmtray report --by model shows which)")
    return "\n".join(lines)


def _usd(text: str) -> str:
    return format_usd(usd_to_nanos(text))
