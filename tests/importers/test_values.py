"""Cell parsing and file reading: the traps of FORMATS.md one by one."""

from __future__ import annotations

import pytest

from llmtray.importers.base import RowProblem
from llmtray.importers.mapping import ColumnMapping, MappingStore, guess, header_signature
from llmtray.importers.textfile import CsvReader, open_text, read_head, sniff_encoding
from llmtray.importers.values import boolean, money, stable_id, timestamp, utc_day, whole


@pytest.mark.parametrize(("text", "value"), [("31422.0", 31422), ("12", 12), ("", 0), (" 7 ", 7), ("1,234", 1234),
                                             ("1,234,567.0", 1234567), ("1e3", 1000)])
def test_whole_numbers(text, value):
    assert whole(text, "c") == value


@pytest.mark.parametrize(("text", "message"), [("1.5", "not a whole number"), ("-1", "must not be negative"),
                                               ("abc", "not a number"), ("12,34", "not a number")])
def test_whole_number_errors_name_the_column(text, message):
    with pytest.raises(RowProblem, match=f"^col: {message}"):
        whole(text, "col")


@pytest.mark.parametrize(("text", "value"), [
    ("0.004713300000000000000000000000000000", "0.004713300000000000000000000000000000"),
    ("$1,234.50", "1234.50"), ("0E-6176", "0"), ("", None), ("  ", None), ("2", "2"),
])
def test_money_is_exact(text, value):
    assert money(text, "c") == value


def test_cents_are_divided_exactly():
    assert money("123.45", "amount", cents=True) == "1.2345"
    assert money("1", "amount", cents=True) == "0.01"


@pytest.mark.parametrize(("text", "value"), [("False", False), ("FALSE", False), ("true", True), ("True", True),
                                             ("1", True), ("", None)])
def test_booleans(text, value):
    assert boolean(text, "batch") is value


@pytest.mark.parametrize(("text", "value"), [
    ("1777593600.0", "2026-05-01T00:00:00Z"),
    ("1777593600.5", "2026-05-01T00:00:00.500000Z"),
    ("2026-05-01T00:00:00", "2026-05-01T00:00:00Z"),
    ("2026-05-01T00:00:00+00:00", "2026-05-01T00:00:00Z"),
    ("2026-05-01T02:00:00+02:00", "2026-05-01T00:00:00Z"),
    ("2026-05-01 09:00:00+00", "2026-05-01T09:00:00Z"),
    ("2026-05-01 09:00:00-05", "2026-05-01T14:00:00Z"),
    ("2026-06-28 03:46:57.713", "2026-06-28T03:46:57.713000Z"),
    ("2026-05-01", "2026-05-01T00:00:00Z"),
    ("2026-05-01 10:00:00 UTC", "2026-05-01T10:00:00Z"),
])
def test_timestamps_with_and_without_offsets(text, value):
    assert timestamp(text, "t") == value
    assert utc_day(value) == utc_day(1777593600 + (utc_day(value) - 20574) * 86400)


def test_stable_ids_are_deterministic_and_short():
    a = stable_id("openai-usage", "2026-05-01T00:00:00Z", None, "gpt-4o", False)
    assert a == stable_id("openai-usage", "2026-05-01T00:00:00Z", None, "gpt-4o", False)
    assert a != stable_id("openai-usage", "2026-05-01T00:00:00Z", None, "gpt-4o", True)
    assert a.startswith("openai-usage:") and len(a) <= 128


def test_encoding_sniff():
    assert sniff_encoding("≤ 200k".encode()) == "utf-8-sig"
    assert sniff_encoding("caf\xe9".encode("cp1252")) == "cp1252"
    assert sniff_encoding("x".encode("utf-16")) == "utf-16"
    assert sniff_encoding("≤".encode()[:2], cut=True) == "utf-8-sig"  # a character cut at the sample's end
    assert sniff_encoding("≤".encode()[:2]) == "cp1252"


def test_records_know_their_first_line_across_quoted_newlines(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'\xef\xbb\xbfa,b\r\n1,"x\r\ny, z"\r\n2,"plain"\r\n3,"three\nlines\nhere"\r\n4,end\r\n')
    with open_text(path) as text:
        reader = CsvReader(text)
        assert reader.header == ("a", "b")
        got = [(r.line, r.cells) for r in reader]
    assert got == [(2, ["1", "x\r\ny, z"]), (4, ["2", "plain"]), (5, ["3", "three\nlines\nhere"]), (8, ["4", "end"])]


@pytest.mark.parametrize(("raw", "header"), [
    ("a;b;c\n1;2;3\n".encode(), ("a", "b", "c")),
    ("a\tb\n1\t2\n".encode(), ("a", "b")),
    ("Date,Spend ($)\n".encode("utf-16"), ("Date", "Spend ($)")),
    ("modèle,coût\n".encode("cp1252"), ("modèle", "coût")),
])
def test_delimiters_and_encodings_of_spreadsheet_resaves(tmp_path, raw, header):
    path = tmp_path / "f.csv"
    path.write_bytes(raw)
    assert read_head(path).header == header
    with open_text(path) as text:
        assert CsvReader(text).header == header


def test_guess_and_signature():
    header = ("Created At", "Provider", "Model", "Prompt Tokens", "Completion Tokens", "Spend")
    mapping = guess(header)
    assert dict(mapping.columns) == {"ts": "Created At", "provider": "Provider", "model": "Model",
                                     "input_tokens": "Prompt Tokens", "output_tokens": "Completion Tokens",
                                     "cost_usd": "Spend"}
    assert mapping.problems(header) == []
    assert header_signature(header) == header_signature(("created_at", "provider", "MODEL", "prompt-tokens",
                                                         "completion tokens", "spend"))


def test_mapping_problems():
    assert ColumnMapping({"ts": "a"}).problems(("a",)) == ["model: needs a column",
                                                          "provider: needs a column or a constant"]
    assert ColumnMapping({"ts": "zz", "model": "a", "colour": "a"}, {"provider": "x"}).problems(("a",)) == [
        "unknown field 'colour' (fields: ts, provider, model, operation, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, reasoning_tokens, requests, cost_usd, cost_cents, service_tier, "
        "latency_ms, status, feature, user, project, env, request_id)",
        "ts: no column 'zz' in this file",
    ]


def test_mapping_store_round_trip_and_broken_file(tmp_path):
    from llmtray.core.errors import ConfigError

    store = MappingStore(tmp_path)
    assert store.get(("a", "b")) is None
    store.save(("a", "b"), ColumnMapping({"ts": "a", "model": "b"}, {"provider": "openai"}))
    assert store.get(("A", "b")) == ColumnMapping({"ts": "a", "model": "b"}, {"provider": "openai"})
    store.path.write_text("{broken", encoding="utf-8")
    with pytest.raises(ConfigError, match="import_mappings.json: unreadable saved column mappings"):
        store.get(("a", "b"))
