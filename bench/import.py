"""Import throughput: rows/s of `llmtray import` on a per-request OpenRouter export and on a
generic CSV, against SQLite's own `.import` of the same file (the floor: no parsing beyond
CSV, no validation, no pricing, no rollups), plus where the time goes per row.

    python bench/import.py              # 1M rows per file (a few minutes)
    python bench/import.py --rows 50000 # quick look

Figures only, no assertions: the target is ≥ 100,000 rows/s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtray.core.events import event_errors  # noqa: E402
from llmtray.core.store import Batch, Store  # noqa: E402
from llmtray.importers import detect  # noqa: E402
from llmtray.importers.base import Options, Parsed  # noqa: E402
from llmtray.importers.engine import Importer  # noqa: E402
from llmtray.importers.mapping import ColumnMapping  # noqa: E402
from tests.importers.generate import generic_rows, openrouter_generations  # noqa: E402

SQLITE = shutil.which("sqlite3") or "/usr/bin/sqlite3"
GENERIC_MAPPING = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model", "input_tokens": "Prompt",
                                 "output_tokens": "Completion"})  # no cost column: every row is priced


def llmtray_import(path: Path, work: Path, fmt: str | None, mapping: ColumnMapping | None) -> tuple[float, int]:
    store = Store.open(work / "llmtray.db")
    try:
        start = time.perf_counter()
        result = Importer(store).run(path, format_name=fmt, mapping=mapping)
        return time.perf_counter() - start, result.imported
    finally:
        store.close()


def sqlite_import(path: Path, work: Path) -> float:
    db = work / "plain.db"
    start = time.perf_counter()
    subprocess.run([SQLITE, str(db), ".mode csv", f".import {path} t"], check=True, capture_output=True)
    return time.perf_counter() - start


def phases(path: Path, fmt: str | None, mapping: ColumnMapping | None, work: Path, sample: int) -> dict[str, float]:
    """µs per row of each stage, measured apart on the first `sample` rows."""
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
    store = Store.open(work / "phases.db")
    try:
        start = time.perf_counter()
        priced = [store.pricer.price(e) for e in events]
        price = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(events), 5000):
            store.add_many([Batch(events[i:i + 5000], "bench", priced=priced[i:i + 5000])])
        insert = time.perf_counter() - start
    finally:
        store.close()
    n = len(events) or 1
    return {"read + map": read / n * 1e6, "validate (event_errors)": validate / n * 1e6,
            "price": price / n * 1e6, "insert (Store.add_many)": insert / n * 1e6}


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
        print(f"{args.rows:,} rows per file; sqlite3 CLI at {SQLITE}\n")
        print(f"{'file':<24}{'llmtray import':>18}{'sqlite3 .import':>18}{'ratio':>8}")
        for name, path, fmt, mapping in cases:
            work = root / name.replace(" ", "_")
            work.mkdir()
            seconds, imported = llmtray_import(path, work, fmt, mapping)
            base = sqlite_import(path, work)
            print(f"{name:<24}{imported / seconds:>14,.0f} r/s{args.rows / base:>14,.0f} r/s{base / seconds:>8.2f}")
            breakdown = phases(path, fmt, mapping, work, min(args.sample, args.rows))
            for stage, us in breakdown.items():
                print(f"    {stage:<28}{us:>8.1f} µs/row")
            print(f"    {'sum of stages':<28}{sum(breakdown.values()):>8.1f} µs/row "
                  f"(≈ {1e6 / sum(breakdown.values()):,.0f} rows/s)")


if __name__ == "__main__":
    main()
