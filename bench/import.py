"""Import throughput: rows/s of `llmtray import` on a per-request OpenRouter export and on a
generic CSV, against SQLite's own `.import` of the same file (no parsing beyond CSV, no
validation, no pricing, no rollups), plus where the time goes per row.

Two limits of this machine are measured next to it, so the figures can be read in scale:
Python's own `.import` (`csv.reader` + `executemany` of the raw fields into a bare table: what
any importer written in Python pays before it does any work), and the ceiling of the event
table itself (`executemany` of the import's pre-built rows into the real schema, whose indexes
the dashboard needs).

Each file is imported twice: read in this process, and read by a second process (what
`llmtray import` does with a big file on a machine with two cores or more), with the CPU time
each process spent per row. The stages are then measured apart on the first `--sample` rows,
including the cost of sending events from the reader process (pickle + unpickle).

    python bench/import.py              # 1M rows per file (a few minutes)
    python bench/import.py --rows 50000 # quick look

Figures only, no assertions: the target is ≥ 100,000 rows/s.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gc
import os
import pickle
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtray.core import db as dbmod  # noqa: E402
from llmtray.core.events import event_errors  # noqa: E402
from llmtray.core.compact import ROW_COLUMNS  # noqa: E402
from llmtray.core.store import Batch, Store  # noqa: E402
from llmtray.importers import detect  # noqa: E402
from llmtray.importers.base import Options, Parsed  # noqa: E402
from llmtray.importers.engine import Importer  # noqa: E402
from llmtray.importers.mapping import ColumnMapping  # noqa: E402
from llmtray.importers.pipeline import CHUNK_ROWS, pack, unpack  # noqa: E402
from tests.importers.generate import generic_rows, openrouter_generations  # noqa: E402

SQLITE = shutil.which("sqlite3") or "/usr/bin/sqlite3"
CEILING = "ceiling: executemany, event table"
GENERIC_MAPPING = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model", "input_tokens": "Prompt",
                                 "output_tokens": "Completion"})  # no cost column: every row is priced


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def llmtray_import(path: Path, db: Path, fmt: str | None, mapping: ColumnMapping | None,
                   parallel: bool, dry_run: bool = False) -> tuple[float, int, float, float]:
    """(seconds, rows imported, CPU s of this process, CPU s of the reader process)."""
    store = Store.open(db)
    try:
        store.pricer.price  # noqa: B018 - prices load once per process, not per import
        cpu, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = Importer(store, parallel=parallel).run(path, format_name=fmt, mapping=mapping, dry_run=dry_run)
        seconds = time.perf_counter() - start
        return (seconds, result.imported, _cpu(resource.RUSAGE_SELF) - cpu,
                _cpu(resource.RUSAGE_CHILDREN) - children)
    finally:
        store.close()


def sqlite_import(path: Path, work: Path) -> float:
    db = work / "plain.db"
    start = time.perf_counter()
    subprocess.run([SQLITE, str(db), ".mode csv", f".import {path} t"], check=True, capture_output=True)
    return time.perf_counter() - start


def python_import(path: Path, work: Path) -> float:
    """Seconds for `csv.reader` + `executemany` of every raw field into a bare table, 5,000 rows per
    transaction in WAL: the floor of any importer written in Python, before mapping or validation."""
    conn = sqlite3.connect(work / "python-import.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute("PRAGMA synchronous = normal")
        start = time.perf_counter()
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            width = len(next(reader))
            conn.execute(f"CREATE TABLE t ({', '.join(f'c{i}' for i in range(width))})")
            sql = f"INSERT INTO t VALUES ({', '.join('?' * width)})"
            while chunk := list(islice(reader, 5000)):
                conn.execute("BEGIN")
                conn.executemany(sql, chunk)
                conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def table_ceiling(store: Store, events: list, work: Path) -> float:
    """µs per row of `executemany` of these events' rows (priced, ids assigned) into a fresh
    database of the real schema, 5,000 per transaction: the event table's own price per row."""
    rows, links = store.prebuilt(Batch(events, "bench"))
    db = work / "ceiling.db"
    dbmod.migrate(db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma, value in dbmod.PRAGMAS.items():
            conn.execute(f"PRAGMA {pragma} = {value}")
        sql = f"INSERT INTO event_row ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
        start = time.perf_counter()
        done = 0  # links of the rows inserted so far (links come in row order)
        for i in range(0, len(rows), 5000):
            chunk = rows[i:i + 5000]
            upto = bisect.bisect_right(links, (chunk[-1][0], 2**63))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, chunk)
            conn.executemany("INSERT INTO event_tag_link (event, tag) VALUES (?, ?)", links[done:upto])
            conn.execute("COMMIT")
            done = upto
        return (time.perf_counter() - start) / (len(rows) or 1) * 1e6
    finally:
        conn.close()


def phases(path: Path, fmt: str | None, mapping: ColumnMapping | None, work: Path, sample: int) -> dict[str, float]:
    """µs per row of each stage, measured apart on the first `sample` rows (with the garbage
    collector's view of the heap frozen at the start, as during an import)."""
    gc.freeze()
    try:
        return _phases(path, fmt, mapping, work, sample)
    finally:
        gc.unfreeze()


def _phases(path: Path, fmt: str | None, mapping: ColumnMapping | None, work: Path, sample: int) -> dict[str, float]:
    detection = detect(path, format_name=fmt)
    options = Options(mapping=mapping)
    start = time.perf_counter()
    items = []
    for item in detection.format.items(path, options):
        items.append(item)
        if len(items) >= sample:
            break
    read = time.perf_counter() - start
    now = datetime.now(UTC)
    start = time.perf_counter()
    events = [event_errors(i.data, now=now)[0] for i in items if isinstance(i, Parsed)]
    validate = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(events), CHUNK_ROWS):  # as the reader process sends them
        sent = pickle.dumps(pack(events[i:i + CHUNK_ROWS]), protocol=pickle.HIGHEST_PROTOCOL)
        list(unpack(pickle.loads(sent)))
    transfer = time.perf_counter() - start
    store = Store.open(work / "phases.db")
    try:
        start = time.perf_counter()
        priced = [store.pricer.price(e) for e in events]
        price = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(events), 5000):
            store.add_many([Batch(events[i:i + 5000], "bench", priced=priced[i:i + 5000])])
        insert = time.perf_counter() - start
        ceiling = table_ceiling(store, events, work)
    finally:
        store.close()
    n = len(events) or 1
    return {"read + map": read / n * 1e6, "validate (event_errors)": validate / n * 1e6,
            "reader → main (pickle)": transfer / n * 1e6,
            "price": price / n * 1e6, "insert (Store.add_many)": insert / n * 1e6,
            CEILING: ceiling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per generated file (default 1M)")
    parser.add_argument("--sample", type=int, default=50_000, help="rows used for the per-stage breakdown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [
            ("OpenRouter per-request", openrouter_generations(root / "openrouter.csv", args.rows), None, None),
            ("generic CSV", generic_rows(root / "generic.csv", args.rows), "generic-csv", GENERIC_MAPPING),
        ]
        print(f"{args.rows:,} rows per file; sqlite3 CLI at {SQLITE}; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}\n")
        print(f"{'file':<24}{'llmtray import':>18}{'2 processes':>16}{'sqlite3 .import':>18}{'ratio':>8}"
              f"{'Python .import':>18}")
        for name, path, fmt, mapping in cases:
            work = root / name.replace(" ", "_")
            work.mkdir()
            alone = llmtray_import(path, work / "alone.db", fmt, mapping, parallel=False)
            paired = llmtray_import(path, work / "paired.db", fmt, mapping, parallel=True)
            base = sqlite_import(path, work)
            floor = python_import(path, work)
            best = max(alone[1] / alone[0], paired[1] / paired[0])
            print(f"{name:<24}{alone[1] / alone[0]:>14,.0f} r/s{paired[1] / paired[0]:>12,.0f} r/s"
                  f"{args.rows / base:>14,.0f} r/s{best * base / args.rows:>8.2f}{args.rows / floor:>14,.0f} r/s")
            n = paired[1] or 1
            print(f"    CPU per row, 2 processes: main {paired[2] / n * 1e6:.1f} µs, "
                  f"reader {paired[3] / n * 1e6:.1f} µs"
                  f" (one process: {alone[2] / (alone[1] or 1) * 1e6:.1f} µs)")
            for label, parallel in (("one process", False), ("2 processes", True)):
                dry = llmtray_import(path, work / f"dry-{parallel}.db", fmt, mapping, parallel, dry_run=True)
                print(f"    --dry-run, {label} (all but price + store): {dry[1] / dry[0]:,.0f} r/s; CPU per row "
                      f"{dry[2] / (dry[1] or 1) * 1e6:.1f} µs" + (f" + reader {dry[3] / (dry[1] or 1) * 1e6:.1f} µs"
                                                               if parallel else ""))
            breakdown = phases(path, fmt, mapping, work, min(args.sample, args.rows))
            for stage, us in breakdown.items():
                print(f"    {stage:<28}{us:>8.1f} µs/row  (≈ {1e6 / us:,.0f} rows/s alone)")
            one = sum(us for stage, us in breakdown.items() if "pickle" not in stage and stage != CEILING)
            print(f"    {'sum (one process)':<28}{one:>8.1f} µs/row (≈ {1e6 / one:,.0f} rows/s)")

if __name__ == "__main__":
    main()
