"""A 1M-row file imports in constant memory: the peak RSS of a child process importing 1M
rows stays within a fixed bound of the same child importing 20k rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from llmtray.core.store import Store
    from llmtray.importers.engine import Importer
    from llmtray.importers.mapping import ColumnMapping
    from tests.importers.generate import generic_rows

    n, folder = int(sys.argv[1]), Path(sys.argv[2])
    path = generic_rows(folder / "big.csv", n)
    store = Store.open(folder / "data" / "llmtray.db")
    mapping = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model", "input_tokens": "Prompt",
                             "output_tokens": "Completion", "cost_usd": "Spend"})
    start = time.perf_counter()
    result = Importer(store).run(path, format_name="generic-csv", mapping=mapping)
    elapsed = time.perf_counter() - start
    sums = store.conn.execute("SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cost_nanos) FROM event").fetchone()
    print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "imported": result.imported,
                      "errors": result.error_count, "sums": sums, "seconds": elapsed}))
""")
MIB = 1024


def _child(n: int, folder: Path) -> dict:
    folder.mkdir()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _expected(n: int) -> list[int]:
    """generate.generic_rows: row i has 100 + i % 1000 prompt, 10 + i % 100 completion tokens, i µ$."""
    full, rest = divmod(n, 1000)
    prompt = full * sum(100 + j for j in range(1000)) + sum(100 + j for j in range(rest))
    full, rest = divmod(n, 100)
    completion = full * sum(10 + j for j in range(100)) + sum(10 + j for j in range(rest))
    return [n, prompt, completion, 1000 * n * (n - 1) // 2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_million_rows_in_constant_memory(tmp_path):
    small = _child(20_000, tmp_path / "small")
    big = _child(1_000_000, tmp_path / "big")
    assert (big["imported"], big["errors"]) == (1_000_000, 0)
    assert big["sums"] == _expected(1_000_000) and small["sums"] == _expected(20_000)
    growth_mib = (big["rss_kb"] - small["rss_kb"]) / MIB
    # 1M events held in memory would take well over 500 MiB; streaming keeps one chunk.
    assert growth_mib < 64, f"peak RSS grew {growth_mib:.0f} MiB from 20k to 1M rows"
    print(f"1M rows: {big['seconds']:.1f} s, peak RSS {big['rss_kb'] / MIB:.0f} MiB (+{growth_mib:.1f} MiB over 20k)")
