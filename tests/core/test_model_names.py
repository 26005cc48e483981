"""A model alias and its dated snapshots are one model in views, filters and budget scopes
(issue #17 item 10, #24): `gpt-4o-mini` covers `gpt-4o-mini-2024-07-18`, never `gpt-4o-mini-tts`."""

from __future__ import annotations

from datetime import timedelta

from llmtray.core.budgets import Budget, Scope, evaluate, parse_limit
from llmtray.core.model_names import alias_of, model_clause, same_model
from llmtray.core.queries import Filters, Queries
from tests.core.budget_kit import add, event, open_store, utc

DAY = utc("2026-03-18 00:00")


def test_alias_of_strips_dated_snapshot_suffixes_only():
    assert alias_of("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert alias_of("claude-sonnet-4-20250514") == "claude-sonnet-4"
    assert alias_of("gpt-4o-mini") == "gpt-4o-mini"
    assert alias_of("gpt-4o-mini-tts") == "gpt-4o-mini-tts"
    assert alias_of("gemini-1.5-pro-002") == "gemini-1.5-pro-002"
    assert same_model("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert not same_model("gpt-4o-mini-2024-07-18", "gpt-4o-mini")  # a snapshot names only itself
    assert not same_model("gpt-4o", "gpt-4o-mini-2024-07-18") and not same_model("gpt-4o", None)


def test_the_sql_clause_agrees_with_same_model_even_for_glob_characters(tmp_path):
    import sqlite3

    conn = sqlite3.connect(":memory:")
    names = ["a*b", "a*b-2024-07-18", "axb-2024-07-18", "a*b-20250514", "a*b-2024-7-18", "a*bc-20250514", "a*b-x"]
    for wanted in ("a*b", "a*b-20250514"):
        clause, args = model_clause("m", [wanted])
        got = [n for n in names if conn.execute(f"SELECT {clause} FROM (SELECT ? AS m)", [*args, n]).fetchone()[0]]
        assert got == [n for n in names if same_model(wanted, n)]


def _store_with_both(tmp_path):
    store = open_store(tmp_path / "t.db")
    # whole days (rollups) and a ragged edge (event table) each hold both names
    add(store, [event(DAY + timedelta(hours=1), "1.00", model="gpt-4o-mini-2024-07-18"),
                event(DAY + timedelta(hours=2), "0.50", model="gpt-4o-mini"),
                event(DAY + timedelta(days=1, minutes=7), "0.25", model="gpt-4o-mini-2024-07-18"),
                event(DAY + timedelta(days=1, minutes=8), "0.10", model="gpt-4o-mini-tts"),
                event(DAY + timedelta(days=1, minutes=9), "2.00", model="gpt-4o-2024-08-06")])
    return store


def test_views_group_a_snapshot_under_its_alias_and_filters_match_both(tmp_path):
    store = _store_with_both(tmp_path)
    q = Queries(store.conn)
    by_model = {m: t.cost_nanos for m, t in q.by("model")}
    assert by_model == {"gpt-4o": parse_limit("2"), "gpt-4o-mini": parse_limit("1.75"),
                        "gpt-4o-mini-tts": parse_limit("0.10")}
    assert q.distinct("model") == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini-tts"]
    edge = Filters(start_us=None, end_us=None, model=("gpt-4o-mini",))
    for f in (edge, edge.between(int((DAY + timedelta(minutes=90)).timestamp() * 1e6), None)):
        expected = parse_limit("1.75") if f.start_us is None else parse_limit("0.75")
        assert q.totals(f).cost_nanos == expected
        assert q.totals(Filters(start_us=f.start_us, model=("gpt-4o-mini-2024-07-18",))).cost_nanos == \
            expected - parse_limit("0.50")
    daily = q.daily(Filters(), DAY.date(), (DAY + timedelta(days=1)).date())
    assert daily.series["gpt-4o-mini"] == [parse_limit("1.50"), parse_limit("0.25")]


def test_a_budget_on_the_alias_counts_snapshot_events(tmp_path):
    store = _store_with_both(tmp_path)
    budget = Budget("mini", parse_limit("10"), "month", Scope(model="gpt-4o-mini"))
    status = evaluate(Queries(store.conn), budget, now=DAY + timedelta(days=2))
    assert status.spent_nanos == parse_limit("1.75")
    assert budget.scope.matches({"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "tags": {}})
    assert not budget.scope.matches({"provider": "openai", "model": "gpt-4o-mini-tts", "tags": {}})
