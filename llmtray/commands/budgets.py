"""`llmtray budgets add|list|remove`: manage budgets from scripts (the Budgets dialog does the same).

Works while the app runs: it writes through its own connection (WAL), and the monitor sees the
new budget at its next check.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from llmtray.commands.scope_args import add_scope_arguments, scope_from_args
from llmtray.core import periods
from llmtray.core.budgets import (
    SCOPE_FIELDS,
    Budget,
    BudgetBook,
    Scope,
    entry,
    evaluate,
    load_budgets,
    parse_limit,
    parse_thresholds,
)
from llmtray.core.model_names import alias_of
from llmtray.core.money import format_usd
from llmtray.core.queries import Queries
from llmtray.core.wording import display_width, pad


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("budgets", help="add, list or remove budgets",
                       description="Spending limits per day, week or month, for everything or a scope "
                                   "(provider, model, feature, user, project, env, tags). Alerts fire once per "
                                   "threshold and period.")
    actions = p.add_subparsers(dest="budgets_action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a budget",
                             description="Add a budget. Scope options narrow what it counts (all must match; "
                                         "--tag may be repeated); without any it counts all spend. Values are "
                                         "matched as events carry them; a model alias (gpt-4o-mini) also covers "
                                         "its dated snapshots (gpt-4o-mini-2024-07-18).")
    add.add_argument("--name", required=True, help="unique name (case-insensitive)")
    add.add_argument("--limit", required=True, metavar="USD", help="limit in dollars, e.g. 50 or 1200.50")
    add.add_argument("--period", required=True, choices=periods.PERIODS,
                     help="calendar period in your time zone (week start from config)")
    add_scope_arguments(add, "count")
    add.add_argument("--thresholds", default="50,80,100", metavar="PCTS",
                     help="alert when spend reaches these percentages of the limit; default 50,80,100")
    add.add_argument("--enforce", action="store_true",
                     help="hard cap: once exhausted, the proxy answers 429 and enforcing hooks raise")
    add.set_defaults(run=run_add)

    ls = actions.add_parser("list", help="list budgets with their current spend",
                            description="Every budget with its spend in the current period, percent, "
                                        "projection and state.")
    ls.add_argument("--json", action="store_true", help='print {"budgets": [...]} as JSON')
    ls.set_defaults(run=run_list)

    rm = actions.add_parser("remove", help="remove a budget", description="Remove a budget by name "
                            "(its past alerts stay in the alert log).")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=run_remove)


def run_add(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    scope = scope_from_args(args)
    budget = Budget(name=args.name, limit_nanos=parse_limit(args.limit), period=args.period, scope=scope,
                    thresholds=parse_thresholds(args.thresholds), enforce=args.enforce)
    store = ctx.store()
    added = BudgetBook(store.db).add(budget)
    for note in unseen_scope_values(Queries(store.conn, ctx.config.tz), scope):
        print(f"note: {note}", file=sys.stderr)
    enforced = "; enforced (hard cap)" if added.enforce else ""
    print(f"added budget {added.name!r}: {format_usd(added.limit_nanos)} per {added.period}, "
          f"{added.scope.describe()}, alerts at {'/'.join(map(str, added.thresholds))}%{enforced}")
    return 0


def unseen_scope_values(queries: Queries, scope: Scope) -> list[str]:
    """Scope values no stored event carries — usually a typo (models are listed by alias, which
    covers their dated snapshots). Only a note: the traffic may simply not have started yet."""
    if queries.totals().events == 0:
        return []
    notes = []
    for dim in SCOPE_FIELDS:
        wanted = getattr(scope, dim)
        if wanted is not None:
            seen = queries.distinct(dim)
            if (alias_of(wanted) if dim == "model" else wanted) not in seen:
                shown = ", ".join(seen[:8]) + (", …" if len(seen) > 8 else "")
                notes.append(f"no event so far has {dim} {wanted!r} (seen: {shown or 'none'})")
    keys = set(queries.tag_keys())
    notes += [f"no event so far has a tag {k!r}" for k, _ in scope.tags if k not in keys]
    return notes


def run_list(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    queries, now = ctx.queries(), datetime.now(UTC)
    statuses = [evaluate(queries, b, now, ctx.config.week_start) for b in load_budgets(queries.conn)]
    if args.json:
        json.dump({"budgets": [entry(s, queries.tz) for s in statuses]}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not statuses:
        print("no budgets yet; add one: llmtray budgets add --name NAME --limit USD --period month")
        return 0
    rows = [["NAME", "PERIOD", "LIMIT", "SPENT", "USE", "STATE", "PROJECTED", "ALERTS", "SCOPE"]]
    rows += [[s.budget.name, s.budget.period, format_usd(s.budget.limit_nanos), format_usd(s.spent_nanos),
              f"{s.percent:.0f}%", s.state + (" (enforced)" if s.budget.enforce else ""),
              format_usd(s.projected_nanos), "/".join(map(str, s.budget.thresholds)) + "%",
              s.budget.scope.describe()] for s in statuses]
    widths = [max(display_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(pad(c, w) for c, w in zip(r, widths)).rstrip())
    return 0


def run_remove(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    removed = BudgetBook(ctx.store().db).remove(args.name)
    print(f"removed budget {removed.name!r} (its past alerts stay in the alert log)")
    return 0
