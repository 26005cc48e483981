"""`llmtray report`: a spend table by day, model, provider, feature, user, project or tag."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import date, timedelta, tzinfo
from typing import Any

from llmtray.core import periods
from llmtray.core.csvcells import guard
from llmtray.core.errors import LLMTrayError
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import GROUPABLE, Filters, Totals
from llmtray.core.wording import display_width, pad

BY_CHOICES = ("day", *GROUPABLE)


class UsageError(LLMTrayError):
    """A command-line value that can't be understood."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="spend table by day, model, feature, … or tag",
                       description="Spend over a time range, grouped one way. Unpriced requests are counted "
                                   "separately and never shown as $0.")
    p.add_argument("--since", default="7d", metavar="WHEN",
                   help="7d (today and the 6 days before), 2w, 3m (90 days) or a date YYYY-MM-DD; default 7d")
    p.add_argument("--by", default="day", metavar="DIM",
                   help=f"group by {', '.join(BY_CHOICES)} or tag:KEY; default day")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(run=run)


def parse_since(text: str, tz: tzinfo | None, today: date | None = None) -> int:
    """UTC µs of the local midnight that starts the range."""
    today = today or periods.today(tz)
    m = re.fullmatch(r"(\d{1,4})([dwm])", text.strip())
    if m:
        n = int(m.group(1))
        if n < 1:
            raise UsageError(f"--since {text!r}: the count must be ≥ 1")
        days = n * {"d": 1, "w": 7, "m": 30}[m.group(2)]
        return periods.midnight_us(today - timedelta(days=days - 1), tz)
    try:
        return periods.midnight_us(date.fromisoformat(text.strip()), tz)
    except ValueError:
        raise UsageError(f"--since {text!r}: expected 7d, 2w, 3m or a date such as 2026-01-31") from None


def rows_for(queries, by: str, since_us: int) -> list[tuple[str, Totals]]:  # noqa: ANN001
    f = Filters(start_us=since_us)
    if by == "day":
        first = periods.local_date(since_us, queries.tz)
        last = periods.today(queries.tz)
        out = []
        for i in range((last - first).days + 1):
            day = first + timedelta(days=i)
            t = queries.totals(Filters(start_us=periods.midnight_us(day, queries.tz),
                                       end_us=periods.midnight_us(day + timedelta(days=1), queries.tz)))
            out.append((day.isoformat(), t))
        return out
    if by not in GROUPABLE and not (by.startswith("tag:") and len(by) > 4):
        raise UsageError(f"--by {by!r}: choose one of {', '.join(BY_CHOICES)} or tag:KEY")
    return queries.by(by, f)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    queries = ctx.queries()
    since = parse_since(args.since, queries.tz)
    rows = rows_for(queries, args.by, since)
    total = Totals()
    for _, t in rows:
        total.add(t)
    records = [_record(args.by, key, t) for key, t in rows]
    no_usage = queries.usage_missing(Filters(start_us=since))
    if args.format == "json":
        json.dump({"since": periods.local_date(since, queries.tz).isoformat(), "by": args.by, "rows": records,
                   "total": _record(args.by, "total", total),
                   "usage_missing": [{"provider": p, "model": m, "requests": n} for p, m, n in no_usage]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, list(_record(args.by, "", total)), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, args.by: guard(r[args.by])} for r in records)  # the key column is text
    else:
        _table(args.by, records + [_record(args.by, "TOTAL", total)])
        if no_usage:
            print(usage_missing_note(no_usage))
    return 0


def usage_missing_note(rows: list[tuple[str, str, int]]) -> str:
    """Why some unpriced requests have no cost: said in words, since $0 would be a lie."""
    n = sum(r for _, _, r in rows)
    listed = ", ".join(f"{p}/{m} ({r:,})" for p, m, r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    return (f"note: {n:,} of the unpriced requests have no usage from the provider (for OpenAI streams, pass "
            f"stream_options={{\"include_usage\": true}}); their cost is unknown and not in cost_usd: {listed}")


def _record(by: str, key: str, t: Totals) -> dict[str, Any]:
    return {
        by: key if key != "" else "(none)",
        "requests": t.requests,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cost_usd": nanos_to_str(t.cost_nanos),
        "unpriced_requests": t.unpriced,
    }


def _table(by: str, records: list[dict[str, Any]]) -> None:
    headers = list(records[0])
    cells = [[str(r[h]) for h in headers] for r in records]
    widths = [max(display_width(h), *(display_width(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(pad(v, w, right=i > 0) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for c in cells[:-1]:
        print(line(c))
    print("  ".join("-" * w for w in widths))
    print(line(cells[-1]))
