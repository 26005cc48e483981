"""Imported day aggregates vs events observed by hooks/proxy on the same provider-days:
refused by default, and kept, skipped or replaced only when the user says so."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from llmtray.core.events import parse_event
from tests.importers.conftest import DATA, rows, totals

MAY1 = (date(2026, 5, 1) - date(1970, 1, 1)).days


@pytest.fixture
def observed(store):
    """Hook events: openai on May 1 (overlaps openai_usage.csv) and May 5 (doesn't);
    anthropic on May 1 (other provider); plus a proxy event for openai on May 1."""
    def ev(ts: str, provider: str, n: int) -> object:
        return parse_event({"ts": ts, "provider": provider, "model": "gpt-4o-mini" if provider == "openai"
                            else "claude-haiku-4-5", "input_tokens": n, "output_tokens": 1})
    store.add([ev("2026-05-01T10:00:00Z", "openai", 100), ev("2026-05-01T23:59:59Z", "openai", 200),
               ev("2026-05-05T10:00:00Z", "openai", 300), ev("2026-05-01T12:00:00Z", "anthropic", 400)], "hook")
    store.add([ev("2026-05-01T00:00:00Z", "openai", 500)], "proxy")
    return store


def test_default_refuses_and_lists_the_days(importer, observed):
    before = totals(observed)
    result = importer.run(DATA / "openai_usage.csv")
    assert (result.state, result.overlap, result.imported) == ("refused", [("openai", MAY1)], 0)
    assert not result.ok
    assert totals(observed) == before and observed.list_datasets() == []


def test_keep_stores_both_and_says_so(importer, observed):
    result = importer.run(DATA / "openai_usage.csv", overlap="keep")
    assert (result.state, result.imported, result.overlap) == ("done", 3, [("openai", MAY1)])
    assert totals(observed)["events"] == 5 + 3


def test_skip_drops_imported_rows_on_observed_days(importer, observed):
    result = importer.run(DATA / "openai_usage.csv", overlap="skip")
    assert (result.imported, result.overlap_skipped) == (1, 2)
    assert [r["ts"] for r in rows(observed, "source = 'import:openai-usage'")] == [1777766400 * 10**6]  # May 3
    assert totals(observed)["events"] == 5 + 1


def test_replace_deletes_only_that_providers_observed_events_of_those_days(importer, observed):
    result = importer.run(DATA / "openai_usage.csv", overlap="replace")
    assert (result.imported, result.replaced, result.overlap) == (3, 3, [("openai", MAY1)])
    left = {(r["provider"], r["input_tokens"]) for r in rows(observed, "source IN ('hook', 'proxy')")}
    assert left == {("openai", 300), ("anthropic", 400)}
    # the rollups followed the deletion (triggers): May 1 openai now only holds imported rows
    sources = {r[0] for r in observed.conn.execute(
        "SELECT DISTINCT source FROM rollup WHERE provider = 'openai' AND bucket / 96 = ?", (MAY1,))}
    assert sources == {"import:openai-usage"}
    assert not observed.conn.execute("SELECT name FROM sqlite_temp_master").fetchall()  # trigger dropped


def test_replace_is_undone_with_the_insert_that_failed(importer, observed):
    """The observed events are deleted in the same transaction as the imported rows: when the
    insert fails (here a test trigger aborts it), the deletion is rolled back with it."""
    before = totals(observed)
    observed.conn.execute(
        "CREATE TEMP TRIGGER fail_insert BEFORE INSERT ON main.event WHEN NEW.model = 'gpt-4o-2024-08-06' "
        "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
    )
    try:
        with pytest.raises(sqlite3.Error, match="disk full"):
            importer.run(DATA / "openai_usage.csv", overlap="replace")
    finally:
        observed.conn.execute("DROP TRIGGER temp.fail_insert")
    assert totals(observed) == before
    assert observed.list_datasets() == []


def test_other_providers_and_days_do_not_overlap(importer, observed):
    result = importer.run(DATA / "openai_usage_2025.csv")
    assert (result.state, result.overlap) == ("done", [])


def test_reimporting_rows_already_stored_is_no_overlap(importer, observed):
    assert importer.run(DATA / "openai_usage.csv", overlap="keep").imported == 3
    again = importer.run(DATA / "openai_usage.csv")  # default policy: all rows are duplicates
    assert (again.state, again.imported, again.duplicates) == ("done", 0, 3)


def test_restoring_an_export_into_the_same_database_is_refused_not_doubled(importer, observed, tmp_path):
    """Observed events without ids can't be matched by id, so the overlap guard catches them;
    restored events keep their own source and are never deleted by their own `replace`."""
    from llmtray.commands.export import write

    path = tmp_path / "backup.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        write(observed.conn, f, "jsonl")
    before = totals(observed)
    result = importer.run(path)
    assert result.state == "refused" and ("anthropic", MAY1) in result.overlap
    assert totals(observed) == before
    replaced = importer.run(path, overlap="replace")
    assert (replaced.imported, replaced.replaced) == (5, 5)
    assert totals(observed) == before  # the restored copies replaced the originals one for one


def test_usage_and_cost_exports_of_the_same_days_are_pointed_out(importer, store):
    assert importer.run(DATA / "anthropic_usage.csv").other_imports == []
    result = importer.run(DATA / "anthropic_cost.csv")
    assert result.other_imports == [("anthropic-usage", "anthropic", MAY1)]
    # the OpenAI usage CSV and Usage API share ids: never "another import" of each other
    importer.run(DATA / "openai_usage.csv")
    assert importer.run(DATA / "openai_usage_api.json").other_imports == []
