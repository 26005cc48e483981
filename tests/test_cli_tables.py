"""CLI tables line up in a terminal with CJK and emoji names (issue #17, cosmetic): a real
`llmtray` subprocess; widths counted here from the characters the test chose."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from llmtray.core.events import parse_event
from llmtray.core.store import Store

WIDE = set("客服摘要月度预算🚀")  # two terminal columns each
NAMES = ("chat", "客服摘要", "🚀 launch")


def columns(line: str) -> int:
    return len(line) + sum(ch in WIDE for ch in line)


def run(data: Path, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_report_and_budget_tables_align_with_wide_characters(data_dir: Path):
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "feature": name, "cost_usd": f"{i + 1}.25",
                            "ts": datetime.now(UTC).isoformat()}) for i, name in enumerate(NAMES)], "api")
    store.close()
    report = [line for line in run(data_dir, "report", "--by", "feature") if line.strip()]
    table = [line for line in report if not set(line) <= {"-", " "}]
    assert any("客服摘要" in line for line in table) and any("🚀" in line for line in table)
    widths = {columns(line) for line in table if "  " in line}
    assert len(widths) == 1, "\n".join(report)  # right-aligned last column: every row ends at one column

    run(data_dir, "budgets", "add", "--name", "月度预算", "--limit", "100", "--period", "month")
    run(data_dir, "budgets", "add", "--name", "team", "--limit", "50", "--period", "day")
    listed = run(data_dir, "budgets", "list")
    starts = {columns(line[:min(line.find(w) for w in ("PERIOD", "month", "day") if w in line)]) for line in listed}
    assert len(listed) == 3
    assert len(starts) == 1, "\n".join(listed)  # the PERIOD column starts at one column in each row
    status = [line for line in run(data_dir, "status") if "[" in line]
    assert len({columns(line[:line.index("[")]) for line in status}) == 1, "\n".join(status)
