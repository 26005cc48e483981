"""`llmtray export`: every stored event as CSV or JSON lines (readable back by `llmtray import`)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import IO

from llmtray.core.csvcells import guard
from llmtray.core.events import EVENT_FIELDS, TOKEN_FIELDS
from llmtray.core.store import event_json, iter_event_rows

META_FIELDS = ("source", "cost_source", "pricing_version", "priced_model")
CSV_FIELDS = tuple(f for f in EVENT_FIELDS if f != "cost_usd") + ("cost_usd",) + META_FIELDS
# Columns holding numbers or booleans: written as they are (a negative amount is not a formula).
NUMERIC_FIELDS = frozenset((*TOKEN_FIELDS, "requests", "cost_usd", "latency_ms", "ttft_ms", "stream"))
TEXT_FIELDS = frozenset(CSV_FIELDS) - NUMERIC_FIELDS  # spreadsheet-guarded (`core.csvcells`)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write all events as CSV or JSON lines",
                       description="Write every stored event, oldest first, with its cost and how it was priced.")
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    store = ctx.store(writes=False)
    if not args.output and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(newline="")  # rows end in CRLF themselves; no "\r\r\n" on Windows
    out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        write(store.conn, out, args.format)
    finally:
        if args.output:
            out.close()
    return 0


def write(conn, out: IO[str], fmt: str) -> int:  # noqa: ANN001
    n = 0
    if fmt == "jsonl":
        for row in iter_event_rows(conn):
            out.write(json.dumps(event_json(row), ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
        return n
    # CRLF rows (RFC 4180): the csv module quotes a cell only for characters of the line
    # terminator, so with "\n" a lone "\r" in an error text went out bare and split the row.
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="raise", lineterminator="\r\n")
    writer.writeheader()
    for row in iter_event_rows(conn):
        record = event_json(row)
        if "tags" in record:
            record["tags"] = json.dumps(record["tags"], ensure_ascii=False, sort_keys=True)
        writer.writerow({k: guard(v) if k in TEXT_FIELDS and isinstance(v, str) else v for k, v in record.items()})
        n += 1
    return n
