"""The per-file fast mappers give exactly what `row()` gives: the same event dicts, the same
skipped rows, the same errors on the same lines — on the fixtures and on rows written to hit
every fallback (offsets, floats for ints, odd booleans, tokens to clamp, bad dates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtray.importers import GENERIC, detect
from llmtray.importers.base import Options, Parsed, RowError, RowProblem, Skipped
from llmtray.importers.mapping import ColumnMapping
from llmtray.importers.values import (
    boolean, boolean_fast, decimal_number, decimal_number_fast, timestamp, timestamp_fast, whole, whole_fast,
)
from tests.importers.conftest import DATA, MALFORMED
from tests.importers.generate import GENERATIONS_HEADER

FIXTURES = sorted(p for p in (*DATA.glob("*.csv"), *MALFORMED.glob("*.csv")) if "generic" not in p.name)
GENERIC_MAPPING = ColumnMapping(
    {"ts": "When", "provider": "Vendor", "model": "Model Name", "input_tokens": "Prompt",
     "output_tokens": "Completion", "cost_usd": "Cost (USD)", "feature": "Team"})


def _items(path: Path, *, fast: bool, fmt: str | None = None, mapping: ColumnMapping | None = None) -> list:
    detection = detect(path, format_name=fmt)
    out = []
    for item in detection.format.items(path, Options(mapping=mapping, fast=fast)):
        if isinstance(item, Parsed):
            out.append(("parsed", item.line, item.data, item.priced, item.source, item.where))
        elif isinstance(item, Skipped):
            out.append(("skipped", item.line, item.reason))
        else:
            assert isinstance(item, RowError)
            out.append(("error", item.line, item.where, item.message))
    return out


def _same(path: Path, **kw) -> list:
    fast, slow = _items(path, fast=True, **kw), _items(path, fast=False, **kw)
    assert fast == slow
    for a, b in zip(fast, slow):  # field order too: validation lists errors in that order
        if a[0] == "parsed":
            assert list(a[2]) == list(b[2])
    return fast


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name}/{p.name}" for p in FIXTURES])
def test_fixtures_map_the_same_either_way(path):
    _same(path)


def test_openrouter_rows_off_the_common_path(tmp_path):
    columns = GENERATIONS_HEADER.strip().split(",")
    base = dict.fromkeys(columns, "")
    base.update(generation_id="gen-1", created_at="2026-04-01 10:00:00.123", cost_total="0.0012",
                tokens_prompt="100", tokens_completion="10", model_permaslug="openai/gpt-4o-mini",
                cancelled="false", streamed="true", generation_time_ms="120", time_to_first_token_ms="12")
    variants = [
        {}, {"created_at": "2026-04-01T10:00:00Z"}, {"created_at": "2026-04-01T10:00:00+02:00"},
        {"created_at": "2026-04-01 10:00:00 UTC"}, {"created_at": "1775037600.5"}, {"created_at": "2026-02-30 10:00:00"},
        {"created_at": "2026-04-01 24:00:00"}, {"created_at": " 2026-04-01 10:00:00"}, {"created_at": ""},
        {"created_at": "2026-04-01 10:00:00.1234567"}, {"created_at": "2026-04-01 10:00:00.000"},
        {"tokens_prompt": "31422.0"}, {"tokens_prompt": "1,234"}, {"tokens_prompt": " 7 "}, {"tokens_prompt": "-5"},
        {"tokens_prompt": "1.5"}, {"tokens_prompt": "x"}, {"tokens_prompt": ""},
        {"tokens_cached": "500"}, {"tokens_cached": "50"}, {"tokens_reasoning": "20"}, {"tokens_reasoning": "5"},
        {"cancelled": "TRUE"}, {"cancelled": "True"}, {"cancelled": "yes"}, {"cancelled": " true"},
        {"cancelled": "maybe"}, {"streamed": "FALSE"}, {"streamed": ""}, {"streamed": "0"},
        {"generation_time_ms": "120.5"}, {"generation_time_ms": "1,200"}, {"generation_time_ms": "-1"},
        {"generation_time_ms": "nan"}, {"time_to_first_token_ms": ""},
        {"cost_total": "$1,234.50"}, {"cost_total": "0.000"}, {"cost_total": ""}, {"cost_total": "abc"},
        {"generation_id": ""}, {"generation_id": " gen-2 "}, {"model_permaslug": " "},
        {"api_key_name": "k", "app_name": " app ", "provider_name": "Prov", "user": " u1 "},
        {"tokens_prompt": "x", "created_at": "bad"},  # two problems: row() reports its first
    ]
    path = tmp_path / "gens.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(GENERATIONS_HEADER)
        for n, variant in enumerate(variants):
            row = {**base, "generation_id": f"gen-{n}", **variant}
            f.write(",".join(f'"{row[c]}"' for c in columns) + "\n")
    items = _same(path)
    kinds = {i[0] for i in items}
    assert kinds == {"parsed", "error"} and len(items) == len(variants)


def test_generic_rows_off_the_common_path(tmp_path):
    header = "When;Vendor;Model Name;Prompt;Completion;Cost (USD);Team"
    rows = [
        "2026-05-01 12:00:00;OpenAI;gpt-4o-mini;1000;200;0.0012;search",
        "2026-05-01T12:00:00+02:00;openai;gpt-4o;1000.0;200;;ops",
        "2026-05-01;Anthropic;claude-haiku-4-5;2000;100;;",
        "2026-05-01 12:00:00;OpenAI;gpt-4o-mini;0;0;0;",  # placeholder
        "2026-05-01 12:00:00;OpenAI;;0;0;;",  # placeholder: no model, no usage
        "2026-05-01 12:00:00;OpenAI;;5;0;;",  # no model
        "2026-05-01 12:00:00;;gpt-4o-mini;5;0;;",  # no provider
        "last tuesday;OpenAI;gpt-4o-mini;1;2;;",
        "2026-05-01 12:00:00;OpenAI;gpt-4o-mini;1,000;2;$3.50;x",
        "2026-05-01 12:00:00;OpenAI;gpt-4o-mini;-1;2;;",
    ]
    path = tmp_path / "generic.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    _same(path, fmt=GENERIC.name, mapping=GENERIC_MAPPING)
    with_constants = ColumnMapping(
        {"ts": "When", "model": "Model Name", "input_tokens": "Prompt", "cost_cents": "Cost (USD)", "status": "Team"},
        {"provider": "OpenAI", "service_tier": "Standard", "project": "p1"})
    items = _same(path, fmt=GENERIC.name, mapping=with_constants)
    assert any(i[0] == "parsed" for i in items)


def test_generic_repeated_column_names_take_row(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("When,Vendor,Model,Prompt,Prompt\n2026-05-01,openai,gpt-4o,1,2\n", encoding="utf-8")
    mapping = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model", "input_tokens": "Prompt"})
    (item,) = _same(path, fmt=GENERIC.name, mapping=mapping)
    assert item[2]["input_tokens"] == 2


CELLS = ["", " ", "0", "12", "012", "12.0", "1,234", " 3", "-1", "x", "²", "٣", "true", "True", "TRUE", "tRuE", "no",
         "2026-05-01", "2026-05-01 10:00:00", "2026-05-01T10:00:00.5Z", "2026-05-01T10:00:00+00:00",
         "2026-05-01T10:00:00-01:00", "2026-02-29 10:00:00", "2024-02-29T23:59:59.999999", "1719532800"]


@pytest.mark.parametrize(("fast", "slow"), [(whole_fast, whole), (boolean_fast, boolean),
                                            (timestamp_fast, timestamp), (decimal_number_fast, decimal_number)])
def test_fast_converters_agree_with_the_full_parsers(fast, slow):
    def outcome(convert, cell):
        try:
            return convert(cell, "col")
        except Exception as exc:  # the same exception type and message either way
            return type(exc), str(exc)

    for cell in CELLS:
        assert outcome(fast, cell) == outcome(slow, cell), cell


def test_a_superscript_digit_is_a_row_error_not_a_crash():
    with pytest.raises(RowProblem, match=r"tokens: not a number: '²'"):
        whole("²", "tokens")
    assert whole_fast("٣", "tokens") == whole("٣", "tokens") == 3  # Arabic-Indic three: a decimal digit
