"""A malformed file per format: each bad row is reported with its exact line (or JSON
location) and message; the file stores nothing (exactly the state before the import), unless
`skip_bad_rows`, which imports the good rows."""

from __future__ import annotations

import threading

import pytest

from llmtray.core.events import parse_event
from llmtray.importers import ImportFileError
from llmtray.importers.mapping import ColumnMapping
from tests.importers.conftest import (
    DATA,
    MALFORMED,
    assert_rollups_exact,
    comparable,
    observe_openrouter,
    rows,
    totals,
)
from tests.importers.generate import openrouter_generations

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

CASES = [
    ("openai_usage.csv", [
        ("line 2", "input_tokens: not a number: 'abc'"),
        ("line 3", "expected 26 columns, found 3"),
        ("line 4", "input_tokens: must not be negative: '-5.0'"),
        ("line 5", "start_time: not a date or timestamp: 'yesterday'"),
        ("line 6", "batch: expected true or false, got 'maybe'"),
    ], 1),
    ("openai_cost.csv", [
        ("line 2", "amount_currency: only USD amounts can be imported, got 'eur'"),
        ("line 3", "amount_value: not an amount: '12,34,5'"),
    ], 1),
    ("anthropic_usage.csv", [
        ("line 2", "model_version: missing"),
        ("line 3", "usage_date_utc: not a date or timestamp: '05/01/2026'"),
    ], 1),
    ("anthropic_cost.csv", [("line 2", "cost_usd: not an amount: 'abc'")], 1),
    ("openrouter_generations.csv", [
        ("line 2", "created_at: missing timestamp"),
        ("line 3", "tokens_prompt: not a whole number: '1.5'"),
        ("line 4", "streamed: expected true or false, got 'yes please'"),
    ], 1),
    # line 3's reasoning > completion is clamped like any provider response (usage.py), not an error
    ("openrouter_activity.csv", [("line 2", "Requests: not a number: 'x'")], 2),
    ("litellm_spendlogs.csv", [
        ("line 2", "metadata: not valid JSON (Expecting property name enclosed in double quotes at character 1)"),
        ("line 3", "cost_usd: must be ≥ 0, got -1"),
    ], 1),
    ("litellm_ui.csv", [("line 2", "Date: missing timestamp")], 1),
    ("openai_usage_api.json", [
        ("page 1 data[0]", "expected a bucket object with a 'results' array"),
        ("page 1 data[1].results[0]", "input_tokens: not a number: 'many'"),
    ], 1),
    ("anthropic_usage_api.json", [
        ("page 1 data[0].results[0]", "uncached_input_tokens: must not be negative: '-3'"),
        ("page 1 data[0].results[1]", "cache_creation.ephemeral_5m_input_tokens: not a whole number: '2.5'"),
        ("page 1 data[1].results[0]", "starting_at: not a date or timestamp: 'not a time'"),
    ], 1),
    ("openai_costs_api.jsonl", [
        ("line 1 data[0].results[0]", "amount_value: not an amount: '1e'"),
        ("line 2", "not a report page (expected an object with a 'data' array)"),
        ("line 3 data[0].results[0]", "quantity: not a number: 'lots'"),
    ], 1),
    ("anthropic_cost_api.json", [
        ("page 1 data[0].results[0]", "currency: only USD amounts can be imported, got 'EUR'"),
        ("page 1 data[0].results[1]", "amount: not an amount: 'lots'"),
    ], 1),
    ("llmtray.jsonl", [
        ("line 2", "not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ("line 3", "inptu_tokens: unknown field (did you mean 'input_tokens'?)"),
        ("line 4", "cost_source: expected reported, computed or unpriced, got 'guessed'"),
        ("line 5", "source: expected one of hook, proxy, otel, api or import:<format>, got 'somewhere'"),
    ], 1),
]


@pytest.mark.parametrize(("name", "expected", "good"), CASES, ids=[c[0] for c in CASES])
def test_bad_rows_are_named_and_the_file_stores_nothing(importer, store, name, expected, good):
    result = importer.run(MALFORMED / name)
    assert [(e.where, e.message) for e in result.errors] == expected
    assert (result.error_count, result.imported, result.state, result.dataset_id) == (len(expected), 0, "rejected", None)
    assert not result.ok
    assert totals(store)["events"] == 0 and store.list_datasets() == []
    assert_rollups_exact(store.conn)


@pytest.mark.parametrize(("name", "expected", "good"), CASES, ids=[c[0] for c in CASES])
def test_skip_bad_rows_names_them_and_keeps_the_good_rows(importer, store, name, expected, good):
    result = importer.run(MALFORMED / name, skip_bad_rows=True)
    assert [(e.where, e.message) for e in result.errors] == expected
    assert (result.error_count, result.imported, result.state) == (len(expected), good, "done")
    assert not result.ok
    assert totals(store)["events"] == good
    (dataset,) = store.list_datasets()
    assert (dataset["errors"], dataset["imported"], dataset["state"]) == (len(expected), good, "done")


def test_generic_csv_bad_timestamp(importer, store):
    mapping = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model Name", "input_tokens": "Prompt"})
    result = importer.run(MALFORMED / "generic.csv", format_name="generic-csv", mapping=mapping, skip_bad_rows=True)
    assert [(e.where, e.message) for e in result.errors] == [("line 2", "When: not a date or timestamp: 'last tuesday'")]
    assert totals(store)["events"] == 1


def test_llmtray_csv_bad_cell(importer, store, tmp_path):
    from llmtray.commands.export import CSV_FIELDS

    path = tmp_path / "export.csv"
    good = {"ts": "2026-05-01T10:00:00Z", "provider": "openai", "model": "gpt-4o-mini", "source": "hook",
            "cost_source": "unpriced"}
    lines = [",".join(CSV_FIELDS)]
    for tokens in ("12", "x", "3"):
        lines.append(",".join({**good, "input_tokens": tokens}.get(f, "") for f in CSV_FIELDS))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = importer.run(path, skip_bad_rows=True)
    assert result.format == "llmtray-csv"
    assert [(e.where, e.message) for e in result.errors] == [("line 3", "input_tokens: not an integer: 'x'")]
    assert totals(store)["input"] == 15


def test_a_file_nobody_knows_is_refused_whole(importer, store, tmp_path):
    from llmtray.importers import ImportFileError

    path = tmp_path / "mystery.csv"
    path.write_text("alpha,beta\n1,2\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"unknown CSV columns \(alpha, beta\)"):
        importer.run(path)
    assert store.list_datasets() == [] and totals(store)["events"] == 0


def test_wrong_format_given_names_the_missing_columns(importer, store):
    from llmtray.importers import ImportFileError
    from tests.importers.conftest import DATA

    with pytest.raises(ImportFileError, match=r"line 1: not a OpenAI cost export \(CSV\) header; missing column"):
        importer.run(DATA / "anthropic_usage.csv", format_name="openai-cost")
    assert store.list_datasets() == []  # the dataset of a file that stored nothing is removed


def test_stray_quote_is_a_row_error_and_other_rows_still_import(importer, store, tmp_path):
    header = (MALFORMED.parent / "litellm_ui_team.csv").read_text(encoding="utf-8").splitlines()[0]
    good = "2026-05-0{d},ops,team-2,0.75,3,3,0,300,200,100"
    lines = [header, good.format(d=1), '2026-05-02,"ops"x,team-2,0.75,3,3,0,300,200,100', good.format(d=3),
             '2026-05-05,"ops,x']
    path = tmp_path / "quotes.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = importer.run(path, skip_bad_rows=True)
    assert [(e.where, e.message) for e in result.errors] == [
        ("line 3", "not valid CSV: ',' expected after '\"'"),
        ("line 5", "not valid CSV: unexpected end of data"),
    ]
    assert totals(store)["events"] == 2


def test_unreadable_text_midway_fails_the_file_and_stores_nothing(importer, store, tmp_path):
    header = (MALFORMED.parent / "litellm_ui_team.csv").read_text(encoding="utf-8").splitlines()[0]
    good = "2026-05-{d:02d},team{n},t{n},0.75,3,3,0,300,200,100\n"
    body = "".join(good.format(d=1 + n % 28, n=n) for n in range(2000))  # > 64 KiB, past the encoding sniff
    path = tmp_path / "cut.csv"
    path.write_bytes((header + "\n" + body).encode() + b"2026-05-01,\xff\xfe,x,1,1,1,0,1,1,1\n")
    importer.chunk_size = 500  # chunks are committed before the bad bytes are reached; they go again
    with pytest.raises(ImportFileError, match="not valid utf-8-sig text"):
        importer.run(path, skip_bad_rows=True)
    assert totals(store)["events"] == 0 and store.list_datasets() == []
    assert_rollups_exact(store.conn)


def _with_bad_rows(path, at: tuple[int, ...]):
    """`path` with the data rows at the given 0-based positions made unreadable (a word for a
    token count), so they fail after the chunks before them were committed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    column = header.index("tokens_prompt")
    for n in at:
        cells = lines[n + 1].split(",")
        cells[column] = "many"
        lines[n + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_bad_row_after_committed_chunks_leaves_exactly_the_state_before(importer, store, tmp_path):
    importer.run(DATA / "openrouter_activity.csv")  # data from before, which must stay as it is
    before = (totals(store), rows(store), store.list_datasets())
    path = _with_bad_rows(openrouter_generations(tmp_path / "gen.csv", 5000), at=(3500, 4200))
    importer.chunk_size = 1000  # three chunks committed before line 3502
    stored_midway = []
    result = importer.run(path, progress=lambda p: stored_midway.append(totals(store)["events"]))
    assert max(stored_midway) >= before[0]["events"] + 3000  # they were committed, then removed
    assert (result.state, result.imported, result.dataset_id, result.rows_read) == ("rejected", 0, None, 5000)
    assert [(e.line, e.message) for e in result.errors] == [
        (3502, "tokens_prompt: not a number: 'many'"), (4202, "tokens_prompt: not a number: 'many'")]
    assert (totals(store), rows(store), store.list_datasets()) == before
    assert_rollups_exact(store.conn)

    good = importer.run(path, skip_bad_rows=True)
    assert (good.state, good.imported, good.error_count) == ("done", 4998, 2)
    assert totals(store)["events"] == before[0]["events"] + 4998
    assert_rollups_exact(store.conn)


def test_dry_run_with_bad_rows_counts_what_skipping_them_would_import(importer, store):
    result = importer.run(MALFORMED / "openai_cost.csv", dry_run=True)
    assert (result.state, result.imported, result.error_count) == ("dry-run", 1, 2)
    assert totals(store)["events"] == 0 and store.list_datasets() == []


def test_replace_then_a_bad_row_later_leaves_the_observed_events_intact(importer, store, tmp_path):
    observed = observe_openrouter(store)
    path = _with_bad_rows(openrouter_generations(tmp_path / "gen.csv", 5000), at=(4500,))
    importer.chunk_size = 1000
    result = importer.run(path, overlap="replace")
    assert (result.state, result.imported, result.replaced, result.dataset_id) == ("rejected", 0, 0, None)
    assert [e.line for e in result.errors] == [4502]
    assert rows(store) == observed and store.list_datasets() == []  # untouched, row numbers and all
    assert_rollups_exact(store.conn)


def test_replace_cancelled_after_replacing_puts_the_observed_events_back(importer, store, tmp_path):
    observed = observe_openrouter(store)
    path = openrouter_generations(tmp_path / "gen.csv", 12_000)
    importer.chunk_size = 1000
    cancel = threading.Event()
    replaced_midway = []

    def on_progress(p):
        if p.imported >= 5000 and not cancel.is_set():  # in the storing pass, after the validating one
            replaced_midway.append(totals(store, "source IN ('hook', 'proxy')")["events"])
            cancel.set()

    result = importer.run(path, overlap="replace", progress=on_progress, cancel=cancel)
    assert replaced_midway == [1]  # the three observed events of April 1 had been deleted
    assert (result.state, result.imported, result.replaced, result.dataset_id) == ("cancelled", 0, 0, None)
    assert comparable(rows(store)) == comparable(observed) and store.list_datasets() == []
    assert_rollups_exact(store.conn)


def test_replace_with_skip_bad_rows_replaces_and_keeps_the_good_rows(importer, store, tmp_path):
    observe_openrouter(store)
    path = _with_bad_rows(openrouter_generations(tmp_path / "gen.csv", 3000), at=(2500,))
    result = importer.run(path, overlap="replace", skip_bad_rows=True)
    assert (result.state, result.imported, result.error_count) == ("done", 2999, 1) and result.replaced > 0
    assert result.replaced == 3 and totals(store)["events"] == 2999 + 1
    assert_rollups_exact(store.conn)
