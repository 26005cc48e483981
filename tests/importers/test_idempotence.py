"""Importing the same rows twice, or files whose date ranges overlap, adds nothing; a dry run
stores nothing; cancelling midway leaves nothing of the file."""

from __future__ import annotations

import pytest

import threading

from tests.importers.conftest import DATA, assert_rollups_exact, totals
from tests.importers.generate import openrouter_generations

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL


def test_same_file_twice_adds_nothing(importer, store):
    first = importer.run(DATA / "openrouter_generations.csv")
    before = totals(store)
    second = importer.run(DATA / "openrouter_generations.csv")
    assert (second.imported, second.duplicates) == (0, first.imported)
    assert totals(store) == before
    assert [(d["imported"], d["duplicates"]) for d in store.list_datasets()] == [(3, 0), (0, 3)]


def test_overlapping_date_ranges_add_only_new_rows(importer, store, tmp_path):
    lines = (DATA / "openai_usage.csv").read_text(encoding="utf-8-sig").splitlines()
    header, a, b, _, d, _ = lines
    (tmp_path / "may1.csv").write_text("\n".join([header, a, b]) + "\n", encoding="utf-8")
    (tmp_path / "may1-3.csv").write_text("\n".join([header, b, d]) + "\n", encoding="utf-8")
    assert importer.run(tmp_path / "may1.csv").imported == 2
    result = importer.run(tmp_path / "may1-3.csv")
    assert (result.imported, result.duplicates) == (1, 1)
    assert totals(store)["requests"] == 12 + 3 + 2


def test_usage_csv_and_usage_api_describe_the_same_buckets(importer, store):
    importer.run(DATA / "openai_usage.csv")
    result = importer.run(DATA / "openai_usage_api.json")
    assert (result.imported, result.duplicates) == (1, 1)  # the 12-request bucket of May 1 is in both


def test_dry_run_stores_nothing_but_counts_what_would_happen(importer, store):
    importer.run(DATA / "litellm_ui_team.csv")
    before = totals(store)
    result = importer.run(DATA / "openrouter_activity.csv", dry_run=True)
    assert (result.state, result.imported, result.dataset_id) == ("dry-run", 2, None)
    again = importer.run(DATA / "litellm_ui_team.csv", dry_run=True)
    assert (again.imported, again.duplicates) == (0, 2)
    assert totals(store) == before and len(store.list_datasets()) == 1


def test_cancel_midway_leaves_nothing_of_the_file(importer, store, tmp_path):
    path = openrouter_generations(tmp_path / "gen.csv", 12_000)
    importer.chunk_size = 1000
    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p)
        if p.rows_read >= 3000:
            cancel.set()

    result = importer.run(path, progress=on_progress, cancel=cancel)
    assert max(p.imported for p in seen) >= 3000  # committed before the cancel, removed after it
    assert (result.state, result.imported, result.dataset_id) == ("cancelled", 0, None)
    assert totals(store)["events"] == 0 and store.list_datasets() == []
    assert_rollups_exact(store.conn)
    assert all(0 <= p.fraction <= 1 for p in seen)

    again = importer.run(path)  # importing again imports it whole
    assert (again.state, again.imported, again.duplicates) == ("done", 12_000, 0)
    assert totals(store)["events"] == 12_000
