"""A malformed file per format: each bad row is reported with its exact line (or JSON
location) and message, the good rows are still imported, and nothing else is stored."""

from __future__ import annotations

import pytest

from llmtray.importers.mapping import ColumnMapping
from tests.importers.conftest import MALFORMED, totals

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
def test_bad_rows_are_named_and_good_rows_kept(importer, store, name, expected, good):
    result = importer.run(MALFORMED / name)
    assert [(e.where, e.message) for e in result.errors] == expected
    assert (result.error_count, result.imported, result.state) == (len(expected), good, "done")
    assert not result.ok
    assert totals(store)["events"] == good
    (dataset,) = store.list_datasets()
    assert (dataset["errors"], dataset["imported"], dataset["state"]) == (len(expected), good, "done")


def test_generic_csv_bad_timestamp(importer, store):
    mapping = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model Name", "input_tokens": "Prompt"})
    result = importer.run(MALFORMED / "generic.csv", format_name="generic-csv", mapping=mapping)
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
    result = importer.run(path)
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
    result = importer.run(path)
    assert [(e.where, e.message) for e in result.errors] == [
        ("line 3", "not valid CSV: ',' expected after '\"'"),
        ("line 5", "not valid CSV: unexpected end of data"),
    ]
    assert totals(store)["events"] == 2


def test_unreadable_text_midway_keeps_a_partial_dataset(importer, store, tmp_path):
    header = (MALFORMED.parent / "litellm_ui_team.csv").read_text(encoding="utf-8").splitlines()[0]
    good = "2026-05-{d:02d},team{n},t{n},0.75,3,3,0,300,200,100\n"
    body = "".join(good.format(d=1 + n % 28, n=n) for n in range(2000))  # > 64 KiB, past the encoding sniff
    path = tmp_path / "cut.csv"
    path.write_bytes((header + "\n" + body).encode() + b"2026-05-01,\xff\xfe,x,1,1,1,0,1,1,1\n")
    importer.chunk_size = 500
    result = importer.run(path)
    assert result.state == "partial" and "not valid utf-8-sig text" in result.message
    assert result.imported >= 500  # the chunks committed before the bad bytes stay
    (dataset,) = store.list_datasets()
    assert (dataset["state"], dataset["imported"]) == ("partial", totals(store)["events"])
