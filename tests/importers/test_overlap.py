"""Imported day aggregates vs events observed by hooks/proxy on the same provider-days:
refused by default, and kept, skipped or replaced only when the user says so."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date

import pytest

from llmtray.cli import main
from llmtray.core.events import parse_event
from tests.importers.conftest import DATA, assert_rollups_exact, comparable, observe_openrouter, rows, totals
from tests.importers.generate import openrouter_generations

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

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
    if getattr(observed.conn, "dialect", "sqlite") == "postgresql":  # the session's hook dropped
        assert observed.conn.execute("SELECT to_regprocedure('pg_temp.llmtray_after_insert(event_row)')").fetchone() == (None,)
    else:
        assert not observed.conn.execute("SELECT name FROM sqlite_temp_master").fetchall()  # trigger dropped


def test_replace_is_undone_with_the_insert_that_failed(importer, observed):
    """The observed events are deleted in the same transaction as the imported rows: when the
    insert fails (here a test trigger aborts it), the deletion is rolled back with it."""
    before = totals(observed)
    postgres = getattr(observed.conn, "dialect", "sqlite") == "postgresql"
    if postgres:
        observed.conn.executescript(
            "CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.model = (SELECT id FROM name WHERE text = 'gpt-4o-2024-08-06') THEN"
            " RAISE EXCEPTION 'disk full (test)'; END IF; RETURN NEW; END $$;"
            "CREATE TRIGGER fail_insert BEFORE INSERT ON event_row FOR EACH ROW EXECUTE FUNCTION fail_insert();")
    else:
        observed.conn.execute(
            "CREATE TEMP TRIGGER fail_insert BEFORE INSERT ON main.event_row"
            " WHEN NEW.model = (SELECT id FROM main.name WHERE text = 'gpt-4o-2024-08-06') "
            "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        )
    try:
        with pytest.raises(sqlite3.Error, match="disk full"):
            importer.run(DATA / "openai_usage.csv", overlap="replace")
    finally:
        observed.conn.executescript("DROP TRIGGER fail_insert ON event_row" if postgres else "DROP TRIGGER temp.fail_insert")
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


def replaced_count(store, dataset_id=None) -> int:
    where, params = ("replaced_by = ?", (dataset_id,)) if dataset_id is not None else ("1", ())
    return store.conn.execute(f"SELECT count(*) FROM replaced_event WHERE {where}", params).fetchone()[0]


def test_removing_a_replace_import_later_puts_the_observed_events_back(importer, store, tmp_path):
    """The replaced events are kept with the dataset, in the import's own transactions: removing
    the import weeks later restores them exactly (id, cost and its provenance, source, tags,
    latency), and the rollups with them."""
    observed = observe_openrouter(store)
    result = importer.run(openrouter_generations(tmp_path / "gen.csv", 3000), overlap="replace")
    assert (result.state, result.replaced) == ("done", 3)
    assert replaced_count(store, result.dataset_id) == 3
    assert [d["replaced"] for d in store.list_datasets()] == [3]  # what --list and the dialog show
    assert totals(store, "source IN ('hook', 'proxy')")["events"] == 1  # only April 5 is left
    removal = importer.remove(result.dataset_id)
    assert (removal.removed, removal.restored) == (result.imported, 3)
    assert comparable(rows(store)) == comparable(observed)
    assert store.list_datasets() == [] and replaced_count(store) == 0
    assert_rollups_exact(store.conn)


def test_removing_restores_each_observed_event_once(importer, store, tmp_path):
    """An observed event that came back meanwhile (a hook re-sent it with its id) is not doubled."""
    observed = observe_openrouter(store)
    result = importer.run(openrouter_generations(tmp_path / "gen.csv", 500), overlap="replace")
    resent = parse_event({"id": "obs-1", "ts": "2026-04-01T10:00:00Z", "provider": "openrouter",
                          "model": "openai/gpt-4o-mini", "input_tokens": 100, "output_tokens": 1})
    assert store.add([resent], "hook").accepted == 1
    removal = importer.remove(result.dataset_id)
    assert removal.restored == 2  # obs-1 was back already; the event without an id can't be matched
    assert sorted(r["event_id"] or "" for r in rows(store)) == sorted(r["event_id"] or "" for r in observed)
    assert_rollups_exact(store.conn)


def test_two_replace_imports_each_restore_only_their_own(importer, store, tmp_path):
    """A second import replacing the same day finds only the first import's rows (not observed):
    removing either restores what it replaced and nothing else."""
    observe_openrouter(store)
    first = importer.run(openrouter_generations(tmp_path / "a.csv", 200), overlap="replace")
    second = importer.run(DATA / "openai_usage.csv", overlap="replace")  # another provider's days
    assert (first.replaced, second.replaced) == (3, 0)
    assert replaced_count(store, second.dataset_id) == 0
    assert importer.remove(second.dataset_id).restored == 0
    assert importer.remove(first.dataset_id).restored == 3
    assert_rollups_exact(store.conn)


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 of a process group is POSIX")
@pytest.mark.sqlite_only("watches the file from another connection")
def test_a_replace_import_killed_midway_loses_no_observed_event(store, data_dir, tmp_path):
    """`kill -9` while `llmtray import --overlap replace` is storing: the observed events it had
    replaced are on disk with its dataset, and `import --remove` of that dataset puts them back."""
    observed = observe_openrouter(store)
    path = openrouter_generations(tmp_path / "gen.csv", 60_000)
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "import",
                             "--overlap", "replace", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    watcher = sqlite3.connect(data_dir / "llmtray.db", timeout=30)
    try:
        deadline = time.monotonic() + 120
        while watcher.execute("SELECT count(*) FROM replaced_event").fetchone()[0] == 0:
            assert proc.poll() is None, "the import ended before it replaced anything"
            assert time.monotonic() < deadline, "the import never reached its storing pass"
            time.sleep(0.02)
    finally:
        watcher.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (dataset,) = store.list_datasets()
    assert dataset["state"] != "done" and dataset["imported"] == 0  # it never got to write its counts
    assert dataset["events"] > 0 and dataset["replaced"] == 3  # what --list and the dialog show instead
    assert totals(store, "source IN ('hook', 'proxy')")["events"] == 1  # April 1's three were replaced
    assert main(["--data-dir", str(data_dir), "import", "--remove", str(dataset["id"])]) == 0
    assert comparable(rows(store)) == comparable(observed) and store.list_datasets() == []
    assert_rollups_exact(store.conn)


@pytest.mark.sqlite_only("opens the file itself; PostgreSQL's write lock is tested in tests/team")
def test_removal_reads_the_replaced_events_inside_its_write_transaction(importer, store, tmp_path):
    """A replace import still running elsewhere can't move more observed events aside between
    the removal's reading them and its deleting the dataset (they would be lost): while the
    removal reads, no other connection can write."""
    observe_openrouter(store)
    result = importer.run(openrouter_generations(tmp_path / "gen.csv", 300), overlap="replace")
    read = importer._observed_batches
    blocked = []

    def read_while_another_writes(dataset_id):  # noqa: ANN001, ANN202
        other = sqlite3.connect(store.conn.execute("PRAGMA database_list").fetchone()[2], timeout=0.2)
        try:
            other.execute("INSERT INTO alert_state (key, value) VALUES ('probe', '1')")
        except sqlite3.OperationalError as exc:
            blocked.append(str(exc))
        finally:
            other.close()
        return read(dataset_id)

    importer._observed_batches = read_while_another_writes
    assert importer.remove(result.dataset_id).restored == 3
    assert blocked == ["database is locked"]
    assert replaced_count(store) == 0
    assert_rollups_exact(store.conn)
