"""`llmtray import` as a user runs it: output, exit codes, --dry-run, --list, --remove,
--overlap, --skip-bad-rows and column mappings for generic CSVs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llmtray.cli import main
from llmtray.core.events import parse_event
from llmtray.core.store import Store
from tests.importers.conftest import DATA, MALFORMED, assert_rollups_exact


def run(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "import", *args])


def count(data_dir: Path) -> int:
    store = Store.open(data_dir / "llmtray.db")
    try:
        return store.conn.execute("SELECT count(*) FROM event").fetchone()[0]
    finally:
        store.close()


def test_import_prints_counts_and_a_second_run_only_duplicates(data_dir, capsys):
    assert run(data_dir, str(DATA / "openai_usage.csv"), str(DATA / "anthropic_cost.csv")) == 0
    out = capsys.readouterr().out
    assert "openai_usage.csv: OpenAI usage export (CSV) [openai-usage], dataset 1" in out
    assert "  rows read 5, imported 3, duplicates 0, errors 0, skipped 2 without usage" in out
    assert "  rows read 6, imported 5, duplicates 0, errors 0, skipped 1 without usage" in out
    assert run(data_dir, str(DATA / "openai_usage.csv")) == 0
    assert "imported 0, duplicates 3" in capsys.readouterr().out
    assert count(data_dir) == 8


def test_a_file_with_bad_rows_imports_nothing_lists_every_error_and_exits_1(data_dir, tmp_path, capsys):
    header = (DATA / "openrouter_activity.csv").read_text(encoding="utf-8").splitlines()[0]
    good = '"2026-05-12 00:00:00","openai/gpt-5","0.5","0","1","10","10","0"'
    bad = '"2026-05-12 00:00:00","openai/gpt-5","0.5","0","lots","10","10","0"'
    path = tmp_path / "activity.csv"
    path.write_text("\n".join([header, good, *[bad] * 25]) + "\n", encoding="utf-8")
    assert run(data_dir, str(path)) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "Requests: not a number" in line]
    assert errors[0] == "  line 3: Requests: not a number: 'lots'" and errors[-1].startswith("  line 22:")
    assert len(errors) == 20 and "  … and 5 more errors" in captured.err
    assert "imported 0, duplicates 0, errors 25" in captured.out
    assert ("NOT imported: 25 bad rows; nothing was stored from this file. Fix them, or run again with "
            "--skip-bad-rows to import the good rows") in captured.err
    assert count(data_dir) == 0
    assert run(data_dir, "--list") == 0 and "no imported datasets" in capsys.readouterr().out
    conn = sqlite3.connect(data_dir / "llmtray.db")
    try:
        assert_rollups_exact(conn)
    finally:
        conn.close()

    assert run(data_dir, "--skip-bad-rows", str(path)) == 1  # rows still failed
    captured = capsys.readouterr()
    assert "imported 1, duplicates 0, errors 25" in captured.out and "NOT imported" not in captured.err
    assert len([line for line in captured.err.splitlines() if "Requests: not a number" in line]) == 20
    assert count(data_dir) == 1


def test_dry_run_stores_nothing(data_dir, capsys):
    assert run(data_dir, "--dry-run", str(DATA / "litellm_spendlogs.csv")) == 0
    assert "would import 3" in capsys.readouterr().out
    assert count(data_dir) == 0
    assert run(data_dir, "--list") == 0
    assert "no imported datasets" in capsys.readouterr().out


def test_list_and_remove(data_dir, capsys):
    run(data_dir, str(DATA / "openrouter_generations.csv"))
    run(data_dir, str(DATA / "litellm_ui_team.csv"))
    capsys.readouterr()
    assert run(data_dir, "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "imported", "at", "format", "file", "rows", "imported", "duplicates", "errors",
                                "replaced", "state"]
    assert lines[1].split()[3:] == ["openrouter-generations", "openrouter_generations.csv", "3", "3", "0", "0", "0",
                                    "done"]
    assert run(data_dir, "--remove", "1") == 0
    assert capsys.readouterr().out.strip() == "removed dataset 1 (openrouter_generations.csv): 3 events"
    assert count(data_dir) == 2
    assert run(data_dir, "--remove", "1") == 1
    assert "no dataset 1" in capsys.readouterr().err


def test_overlap_is_refused_by_default_then_chosen(data_dir, capsys):
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"ts": "2026-05-01T09:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
                            "input_tokens": 7})], "hook")
    store.close()
    assert run(data_dir, str(DATA / "openai_usage.csv")) == 1
    err = capsys.readouterr().err
    assert "refused: rows fall on days that already have observed events: openai: 2026-05-01" in err
    assert "--overlap keep" in err and "--overlap skip" in err and "--overlap replace" in err
    assert count(data_dir) == 1
    assert run(data_dir, "--overlap", "replace", str(DATA / "openai_usage.csv")) == 0
    assert "overlap with observed events on openai: 2026-05-01: replaced 1 observed events" in capsys.readouterr().out
    assert count(data_dir) == 3
    # removing that import brings the observed event back: replacing never destroys it
    assert run(data_dir, "--remove", "1") == 0
    assert capsys.readouterr().out.strip() == ("removed dataset 1 (openai_usage.csv): 3 events; "
                                               "restored 1 observed events it had replaced")
    store = Store.open(data_dir / "llmtray.db")
    try:
        assert store.conn.execute("SELECT source, input_tokens FROM event").fetchall() == [("hook", 7)]
        assert store.conn.execute("SELECT count(*) FROM replaced_event").fetchone()[0] == 0
        assert_rollups_exact(store.conn)
    finally:
        store.close()


def test_unknown_file_is_an_error_naming_it(data_dir, tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n", encoding="utf-8")
    assert run(data_dir, str(path), str(DATA / "litellm_ui_tag.csv")) == 1
    captured = capsys.readouterr()
    assert "notes.txt: error: notes.txt: unknown CSV columns (hello)" in captured.err
    assert "litellm_ui_tag.csv" in captured.out  # the other file still imported
    assert count(data_dir) == 1


def test_generic_mapping_from_the_command_line_is_saved_for_the_next_file(data_dir, tmp_path, capsys):
    args = ["--map", "ts=When", "--map", "provider=Vendor", "--map", "model=Model Name", "--map", "input_tokens=Prompt",
            "--map", "output_tokens=Completion", "--map", "cost_usd=Cost (USD)", "--map", "project=Team"]
    assert run(data_dir, *args, str(DATA / "generic.csv")) == 0
    assert "[generic-csv]" in capsys.readouterr().out
    saved = json.loads((data_dir / "import_mappings.json").read_text(encoding="utf-8"))
    (entry,) = saved["mappings"].values()
    assert entry["columns"]["ts"] == "When" and entry["header"][0] == "When"
    # same columns, another file: detected through the saved mapping, no options needed
    other = tmp_path / "more.csv"
    other.write_text("When;Vendor;Model Name;Prompt;Completion;Cost (USD);Team\n"
                     "2026-05-03T00:00:00Z;openai;gpt-4o;10;1;0.5;x\n", encoding="utf-8")
    assert run(data_dir, str(other)) == 0
    assert "more.csv: CSV with a column mapping [generic-csv]" in capsys.readouterr().out
    assert count(data_dir) == 4


def test_a_valid_mapping_is_saved_even_when_a_bad_row_stops_the_import(data_dir, tmp_path, capsys):
    """#17 item 12: fix the row, run again — without typing every --map again."""
    path = tmp_path / "spend.csv"
    header = "Date,Vendor,Model Name,Prompt,Completion\n"
    path.write_text(header + "2026-05-01T00:00:00Z,openai,gpt-4o,10,2\n2026-05-01T01:00:00Z,openai,gpt-4o,ten,2\n",
                    encoding="utf-8")
    args = ["--map", "ts=Date", "--map", "provider=Vendor", "--map", "model=Model Name", "--map", "input_tokens=Prompt",
            "--map", "output_tokens=Completion"]
    assert run(data_dir, "--map", "ts=Date", str(path)) == 1  # an incomplete mapping is not saved
    assert not (data_dir / "import_mappings.json").exists()
    assert run(data_dir, *args, str(path)) == 1
    assert "line 3: " in capsys.readouterr().err and count(data_dir) == 0  # nothing stored from the file
    (entry,) = json.loads((data_dir / "import_mappings.json").read_text(encoding="utf-8"))["mappings"].values()
    assert entry["columns"]["input_tokens"] == "Prompt"
    path.write_text(header + "2026-05-01T00:00:00Z,openai,gpt-4o,10,2\n2026-05-01T01:00:00Z,openai,gpt-4o,10,2\n",
                    encoding="utf-8")
    assert run(data_dir, str(path)) == 0
    assert "CSV with a column mapping [generic-csv]" in capsys.readouterr().out and count(data_dir) == 2


def stored_rows(data_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(data_dir / "llmtray.db")
    try:
        return conn.execute("SELECT event_id, ts, provider, model, input_tokens, output_tokens, cost_nanos, requests"
                            " FROM event ORDER BY event_id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["openai_usage.csv", "anthropic_cost.csv", "openrouter_activity.csv", "generic.csv"])
def test_cr_only_line_ends_import_like_the_original(tmp_path, capsys, name):
    """#17 item 6: Excel's "CSV (Macintosh)" ends lines with CR alone."""
    original = (DATA / name).read_bytes()
    mac = tmp_path / name
    mac.write_bytes(original.replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    assert b"\n" not in mac.read_bytes()
    maps = (["--map", "ts=When", "--map", "provider=Vendor", "--map", "model=Model Name", "--map", "input_tokens=Prompt",
             "--map", "output_tokens=Completion", "--map", "cost_usd=Cost (USD)"] if name == "generic.csv" else [])
    lf_dir, cr_dir = tmp_path / "lf", tmp_path / "cr"
    assert run(lf_dir, *maps, str(DATA / name)) == 0
    assert run(cr_dir, *maps, str(mac)) == 0, capsys.readouterr().err
    assert stored_rows(cr_dir) == stored_rows(lf_dir) and stored_rows(cr_dir)


def test_a_bad_row_in_a_cr_only_file_is_named_by_its_line(data_dir, tmp_path, capsys):
    path = tmp_path / "mac.csv"
    path.write_bytes(b"timestamp,provider,model,prompt_tokens,completion_tokens\r"
                     b"2026-05-01T00:00:00Z,openai,gpt-4o,10,2\r2026-05-01T01:00:00Z,openai,gpt-4o,ten,2\r")
    assert run(data_dir, "--format", "generic-csv", str(path)) == 1
    err = capsys.readouterr().err
    assert "line 3: " in err and "ten" in err and "Traceback" not in err
    assert count(data_dir) == 0


def test_generic_without_mapping_uses_a_printed_guess(data_dir, tmp_path, capsys):
    path = tmp_path / "calls.csv"
    path.write_text("timestamp,provider,model,prompt_tokens,completion_tokens,cost\n"
                    "2026-05-01T00:00:00Z,openai,gpt-4o,10,2,0.01\n", encoding="utf-8")
    assert run(data_dir, "--format", "generic-csv", str(path)) == 0
    out = capsys.readouterr().out
    assert "guessed ts=timestamp, provider=provider, model=model, input_tokens=prompt_tokens" in out
    assert count(data_dir) == 1


@pytest.mark.parametrize("bad", [["--map", "ts"], ["--format", "openai-usage", "--map", "ts=x"]])
def test_bad_mapping_options(data_dir, capsys, bad):
    assert run(data_dir, *bad, str(MALFORMED / "generic.csv")) == 2
    assert "llmtray: error:" in capsys.readouterr().err


def test_incomplete_mapping_is_refused_with_what_is_missing(data_dir, capsys):
    assert run(data_dir, "--map", "ts=When", str(DATA / "generic.csv")) == 1
    err = capsys.readouterr().err
    assert "model: needs a column" in err and "provider: needs a column or a constant" in err


def test_overlapping_usage_and_cost_imports_get_a_note(data_dir, capsys):
    assert run(data_dir, str(DATA / "anthropic_usage.csv"), str(DATA / "anthropic_cost.csv")) == 0
    out = capsys.readouterr().out
    assert "note: other imports cover the same days: anthropic-usage (anthropic: 2026-05-01)" in out
