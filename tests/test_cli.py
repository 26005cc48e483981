"""The CLI as a user runs it: a real subprocess on an empty and a filled data dir."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmtray import __version__
from llmtray.core.events import parse_event
from llmtray.core.store import Store


def llmtray(*args: str, data_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llmtray", *(["--data-dir", str(data_dir)] if data_dir else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def filled(data_dir: Path) -> Path:
    now = datetime.now(UTC)
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1_000_000,
                            "output_tokens": 100_000, "feature": "chat", "tags": {"team": "a"},
                            "ts": (now - timedelta(minutes=m)).isoformat()}) for m in range(3)], "api")
    store.add([parse_event({"provider": "acme", "model": "secret", "input_tokens": 5, "id": "x1",
                            "ts": now.isoformat()})], "hook")
    store.close()
    return data_dir


def test_version_and_help():
    assert llmtray("--version").stdout.strip() == f"llmtray {__version__}"
    out = llmtray("--help").stdout
    for command in ("report", "export", "reprice"):
        assert command in out


def test_every_command_has_help_and_is_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    from llmtray.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert llmtray(name, "--help").stdout.startswith("usage: llmtray " + name)
        assert f"llmtray {name}" in readme, f"`llmtray {name}` is not documented in README.md"


def test_report_and_export_on_empty_data_dir(data_dir: Path):
    out = llmtray("report", "--format", "json", data_dir=data_dir).stdout
    assert json.loads(out)["total"]["cost_usd"] == "0"
    assert llmtray("export", data_dir=data_dir).stdout == ""
    assert llmtray("export", "--format", "csv", data_dir=data_dir).stdout.startswith("provider,model,ts,id,")


def test_report_on_filled_data_dir(filled: Path):
    rows = json.loads(llmtray("report", "--by", "model", "--format", "json", data_dir=filled).stdout)["rows"]
    by_model = {r["model"]: r for r in rows}
    # gpt-4o-mini: 3 × (1M × $0.15 + 100k × $0.60) = 3 × 0.21
    assert by_model["gpt-4o-mini"]["cost_usd"] == "0.63"
    assert by_model["secret"]["unpriced_requests"] == 1 and by_model["secret"]["cost_usd"] == "0"
    table = llmtray("report", "--by", "tag:team", data_dir=filled).stdout
    assert "a " in table and "TOTAL" in table
    csv_out = llmtray("report", "--by", "feature", "--format", "csv", data_dir=filled).stdout.splitlines()
    assert csv_out[0] == "feature,requests,input_tokens,output_tokens,cost_usd,unpriced_requests"


def test_export_jsonl_carries_cost_provenance(filled: Path):
    lines = [json.loads(x) for x in llmtray("export", data_dir=filled).stdout.splitlines()]
    assert len(lines) == 4
    priced = [x for x in lines if x["model"] == "gpt-4o-mini"][0]
    assert (priced["cost_usd"], priced["cost_source"], priced["priced_model"], priced["source"]) == (
        "0.21", "computed", "gpt-4o-mini", "api")
    unpriced = [x for x in lines if x["model"] == "secret"][0]
    assert (unpriced["cost_usd"], unpriced["cost_source"], unpriced["id"]) == (None, "unpriced", "x1")


def test_bad_arguments_say_what_is_wrong(filled: Path):
    proc = llmtray("report", "--since", "yesterday", data_dir=filled, check=False)
    assert proc.returncode == 2 and "--since 'yesterday': expected 7d, 2w, 3m or a date" in proc.stderr
    proc = llmtray("report", "--by", "colour", data_dir=filled, check=False)
    assert proc.returncode == 2 and "--by 'colour'" in proc.stderr


def test_bad_config_is_named(data_dir: Path):
    (data_dir / "config.toml").write_text("[display]\ntimezone = 'Mars/Olympus'\n")
    proc = llmtray("report", data_dir=data_dir, check=False)
    assert proc.returncode == 2
    assert "display.timezone 'Mars/Olympus' is not an IANA zone" in proc.stderr


def test_reprice_command(filled: Path):
    assert llmtray("reprice", data_dir=filled).stdout.strip() == "examined 4 events, 0 changed"
