"""Every format's fixture (built from FORMATS.md, quirks included) imports to totals worked out
by hand from the fixture files — not by running the importer's own code."""

from __future__ import annotations

import json

import pytest

from llmtray.importers import detect
from tests.importers.conftest import DATA, rows, totals

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

# file, detected format, rows read, placeholder rows skipped, expected sums (by hand)
# cost exports (openai-cost*, anthropic-cost*) are money, not calls: requests=0 (#17 item 16)
CASES = [
    ("openai_usage.csv", "openai-usage", 5, 2,
     dict(events=3, requests=17, input=46422, output=3248, cache_read=1024)),
    ("openai_usage_2025.csv", "openai-usage", 3, 1, dict(events=2, requests=6, input=1300, output=1200, cache_read=200)),
    ("openai_usage_empty.csv", "openai-usage", 0, 0, dict(events=0)),
    ("openai_cost.csv", "openai-cost", 6, 1,
     dict(requests=0, events=5, input=31422 + 1024 + 1000, output=2048, cache_read=1024,
          cost_nanos=4_713_300 + 1_228_800 + 76_800 + 25_000_000 + 1_234_567_891)),
    ("openai_cost_17.csv", "openai-cost", 2, 0, dict(requests=0, events=2, cost_nanos=750_000_000)),
    ("openai_cost_10.csv", "openai-cost", 2, 1, dict(requests=0, events=1, cost_nanos=3_141_592_654)),
    ("openai_usage_api.json", "openai-usage-api", 3, 1,
     dict(events=2, requests=19, input=32122, output=2118, cache_read=1024)),
    ("openai_usage_api_pages.jsonl", "openai-usage-api", 2, 0, dict(events=2, requests=5, input=750, output=75, cache_read=100)),
    ("openai_costs_api.json", "openai-costs-api", 3, 1, dict(requests=0, events=2, input=31422, cost_nanos=504_713_300)),
    ("anthropic_usage.csv", "anthropic-usage", 3, 1,
     dict(events=2, requests=2, input=7800, output=950, cache_read=4000, cache_write=2500, cache_write_1h=500)),
    ("anthropic_usage_old.csv", "anthropic-usage", 1, 0, dict(events=1, input=175, output=10, cache_read=25, cache_write=50)),
    ("anthropic_cost.csv", "anthropic-cost", 6, 1, dict(requests=0, events=5, cost_nanos=2_310_000_000)),
    ("anthropic_cost_12.csv", "anthropic-cost", 2, 0, dict(requests=0, events=2, cost_nanos=500_000_000)),
    ("anthropic_cost_7.csv", "anthropic-cost", 2, 0, dict(requests=0, events=2, cost_nanos=1_250_000_000)),
    ("anthropic_usage_api.json", "anthropic-usage-api", 3, 1,
     dict(events=2, input=7800, output=950, cache_read=4000, cache_write=2500, cache_write_1h=500)),
    ("anthropic_cost_api.json", "anthropic-cost-api", 3, 1, dict(requests=0, events=2, cost_nanos=1_234_500_000 + 5_000_000)),
    ("openrouter_generations.csv", "openrouter-generations", 3, 0,
     dict(events=3, input=11250, output=2320, reasoning=1600, cache_read=8200, cost_nanos=512_300_000)),
    ("openrouter_generations_old.csv", "openrouter-generations", 1, 0, dict(events=1, input=400, output=100, cost_nanos=2_000_000)),
    ("openrouter_activity.csv", "openrouter-activity", 3, 1,
     dict(events=2, requests=52, input=125000, output=12000, reasoning=3000, cost_nanos=1_734_500_000)),
    ("litellm_spendlogs.csv", "litellm-spendlogs", 3, 0, dict(events=3, input=1100, output=50, cost_nanos=1_250_000)),
    ("litellm_spendlogs_old.csv", "litellm-spendlogs", 1, 0, dict(events=1, input=20, output=10, cost_nanos=10_000_000)),
    ("litellm_ui_team.csv", "litellm-ui", 3, 1,
     dict(events=2, requests=1203, input=1_200_200, output=300_100, cost_nanos=1_235_250_000_000)),
    ("litellm_ui_tag.csv", "litellm-ui", 1, 0, dict(events=1, requests=10, input=800, output=200, cost_nanos=2_500_000_000)),
]


@pytest.mark.parametrize(("name", "fmt", "read", "skipped", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fixture_imports_to_hand_computed_totals(importer, store, name, fmt, read, skipped, expected):
    assert detect(DATA / name).format.name == fmt
    result = importer.run(DATA / name)
    assert (result.state, result.format, result.error_count) == ("done", fmt, 0), result.errors
    assert (result.rows_read, result.skipped, result.imported, result.duplicates) == (read, skipped, expected["events"], 0)
    got = totals(store)
    assert {k: got[k] for k in expected} == expected
    sources = {r[0] for r in store.conn.execute("SELECT DISTINCT source FROM event")}
    assert sources <= {f"import:{fmt}"}
    assert all(r[0] == result.dataset_id for r in store.conn.execute("SELECT dataset_id FROM event"))


def test_usage_rows_are_priced_by_the_store_and_cost_rows_are_reported(importer, store):
    importer.run(DATA / "openai_usage.csv")
    importer.run(DATA / "anthropic_cost.csv")
    by_source = dict(store.conn.execute("SELECT source, group_concat(DISTINCT cost_source) FROM event GROUP BY 1"))
    assert by_source == {"import:openai-usage": "computed", "import:anthropic-cost": "reported"}


def test_openai_usage_fields(importer, store):
    importer.run(DATA / "openai_usage.csv")
    first, second, batch = rows(store)
    assert first["ts"] == 1777593600 * 10**6 and first["model"] == "gpt-4o-mini-2024-07-18"
    assert (first["project"], first["user"], json.loads(first["tags"])) == ("proj_abc", "user-1", {"api_key_id": "key_1"})
    assert (first["service_tier"], second["service_tier"], batch["service_tier"]) == ("default", "default", "batch")
    assert batch["ts"] == 1777766400 * 10**6


def test_openai_cost_line_items(importer, store):
    importer.run(DATA / "openai_cost.csv")
    got = {(r["model"], r["operation"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"])
           for r in rows(store)}
    assert got == {
        ("gpt-4o-mini-2024-07-18", "chat", 31422, 0, 0),
        ("gpt-4o-mini-2024-07-18", "chat", 0, 2048, 0),
        ("gpt-4o-mini-2024-07-18", "chat", 1024, 0, 1024),
        ("web search tool calls", "other", 0, 0, 0),
        ("gpt-4o-2024-08-06", "chat", 1000, 0, 0),
    }
    # rows with data write start_time_iso without an offset; the Unix seconds decide the day
    assert {r["ts"] for r in rows(store)} == {1777593600 * 10**6, 1777766400 * 10**6}


def test_openai_cost_17_keeps_rows_that_differ_only_by_api_source(importer, store):
    result = importer.run(DATA / "openai_cost_17.csv")
    assert result.imported == 2 and result.duplicates == 0


def test_org_level_cost_rows_have_no_line_item(importer, store):
    importer.run(DATA / "openai_cost_10.csv")
    (row,) = rows(store)
    assert (row["model"], row["cost_source"]) == ("(unitemized)", "reported")


def test_anthropic_usage_adds_cache_tokens_back_into_input(importer, store):
    importer.run(DATA / "anthropic_usage.csv")
    sonnet, haiku = sorted(rows(store), key=lambda r: r["model"], reverse=True)
    assert sonnet["model"] == "claude-sonnet-4-5-20250929"
    # uncached 1000 + 5m writes 2000 + 1h writes 500 + reads 4000
    assert (sonnet["input_tokens"], sonnet["cache_write_tokens"], sonnet["cache_write_1h_tokens"],
            sonnet["cache_read_tokens"]) == (7500, 2500, 500, 4000)
    assert (sonnet["project"], json.loads(sonnet["tags"])) == ("Default", {"api_key": "prod, main"})
    assert (haiku["service_tier"], haiku["project"]) == ("batch", "Research")


def test_anthropic_cost_display_names_become_model_ids(importer, store):
    importer.run(DATA / "anthropic_cost.csv")
    importer.run(DATA / "anthropic_cost_7.csv")
    models = {r[0] for r in store.conn.execute("SELECT DISTINCT model FROM event")}
    assert models == {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-3-5-sonnet", "Claude Instant"}
    tags = {json.loads(r["tags"])["token_type"] for r in rows(store, "model = 'claude-sonnet-4-5'")}
    assert tags == {"input_no_cache", "output", "input_cache_read", "input_cache_write_5m"}


def test_anthropic_cost_report_is_in_cents(importer, store):
    importer.run(DATA / "anthropic_cost_api.json")
    got = {(r["model"], r["operation"], r["cost_nanos"]) for r in rows(store)}
    assert got == {("claude-sonnet-4-5-20250929", "chat", 1_234_500_000), ("Web Search", "other", 5_000_000)}


def test_openrouter_generation_fields(importer, store):
    importer.run(DATA / "openrouter_generations.csv")
    first, free, gpt5 = rows(store)
    assert first["ts"] == 1782618417713000  # 2026-06-28 03:46:57.713 UTC
    assert (first["request_id"], first["stream"], first["latency_ms"], first["ttft_ms"]) == \
        ("gen-1751082417-aaaa", 1, 5230.0, 812.0)
    assert json.loads(first["tags"]) == {"api_key": "main key", "app": "My App, Inc.", "upstream": "Anthropic"}
    assert (free["cost_nanos"], free["cost_source"], json.loads(free["tags"])["cancelled"]) == (0, "reported", "true")
    assert (gpt5["input_tokens"], gpt5["cache_read_tokens"], gpt5["reasoning_tokens"]) == (10000, 8000, 1500)


def test_litellm_spend_logs_fields(importer, store):
    importer.run(DATA / "litellm_spendlogs.csv")
    chat, embedding, failed = rows(store)
    assert (chat["provider"], chat["model"], chat["latency_ms"], chat["ttft_ms"], chat["project"]) == \
        ("openai", "gpt-4o", 1500.0, 400.0, "search")
    assert json.loads(chat["tags"]) == {"api_key": "backend", "request_tags": "prod,search"}
    assert (embedding["operation"], embedding["latency_ms"]) == ("embeddings", 250.0)
    assert (failed["provider"], failed["model"], failed["status"], failed["project"]) == \
        ("anthropic", "claude-sonnet-4-5-20250929", "error", "team-2")
    assert failed["ts"] == 1777712400 * 10**6  # `+00` Postgres offset


def test_litellm_ui_thousands_separators_and_tags(importer, store):
    importer.run(DATA / "litellm_ui_team.csv")
    importer.run(DATA / "litellm_ui_tag.csv")
    search = rows(store, "project = 'search'")[0]
    assert (search["cost_nanos"], search["requests"], search["input_tokens"]) == (1_234_500_000_000, 1200, 1_200_000)
    tagged = rows(store, "tags IS NOT NULL")[0]
    assert json.loads(tagged["tags"]) == {"tag": "prod"}


def test_usage_api_ungrouped_results_are_all_models(importer, store):
    importer.run(DATA / "openai_usage_api_pages.jsonl")
    assert {r["model"] for r in rows(store)} == {"(all models)"}
    assert {r["cost_source"] for r in rows(store)} == {"unpriced"}
