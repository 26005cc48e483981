"""Budgets: validation, storage, scopes against brute force, evaluation, status entries,
projection on linear and bursty spend, and the enforcement check with its cache."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtray.core.budgets import (
    Budget,
    BudgetBook,
    BudgetError,
    EnforcementCache,
    Scope,
    budget_entries,
    evaluate,
    exhausted_enforced_budget,
    invalidate_enforcement_cache,
    load_budgets,
    parse_limit,
    parse_tag,
    parse_thresholds,
)
from llmtray.core.money import usd_to_nanos
from llmtray.core.queries import Queries
from llmtray.core.status import summary
from llmtray.core.store import to_us
from tests.core.budget_kit import add, event, open_store, utc

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

BERLIN = ZoneInfo("Europe/Berlin")
NOW = utc("2026-03-18 15:00")  # a Wednesday; 16:00 in Berlin


@pytest.fixture
def store(data_dir: Path):
    s = open_store(data_dir / "llmtray.db")
    yield s
    s.close()


def usd(text: str) -> int:
    return usd_to_nanos(Decimal(text))


# --- definitions ---------------------------------------------------------------------------------


def test_parsers_accept_what_people_write():
    assert parse_limit("$1,200.50") == 1_200_500_000_000
    assert parse_limit("0.000000001") == 1
    assert parse_thresholds("80, 50,100%") == (50, 80, 100)
    assert parse_tag("team=search=v2") == ("team", "search=v2")


@pytest.mark.parametrize("text, message", [
    ("abc", "not a dollar amount: 'abc'"),
    ("0", "must be more than $0"),
    ("-5", "must be more than $0"),
    ("0.0000000001", "must be more than $0"),
    ("2000000000", "above $1,000,000,000"),
    ("nan", "not a finite dollar amount"),
])
def test_bad_limits_say_what_is_wrong(text, message):
    with pytest.raises(BudgetError, match="limit") as err:
        parse_limit(text)
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("", "item 1 ('') of '' is not a whole percentage"),
    ("50,abc", "item 2 ('abc')"),
    ("50,-80", "item 2 ('-80')"),
    ("50.5", "item 1 ('50.5')"),
    ("0,50", "0 is not a whole percentage between 1 and 1000"),
    ("50,1001", "1001 is not a whole percentage"),
    ("50,80,50", "repeats a value"),
])
def test_bad_threshold_lists_say_which_item(text, message):
    with pytest.raises(BudgetError) as err:
        parse_thresholds(text)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "  "}, "name: must be 1–100 printable characters"),
    ({"name": "x" * 101}, "name: must be 1–100"),
    ({"name": "a\nb"}, "name: must be 1–100 printable"),
    ({"limit_nanos": 0}, "limit: must be more than $0"),
    ({"period": "year"}, "period: must be one of day, week, month, got 'year'"),
    ({"thresholds": ()}, "thresholds: give at least one"),
    ({"scope": {"feature": ""}}, "scope feature: must be 1–200 characters"),
    ({"scope": {"tags": (("team", "a"), ("team", "b"))}}, "scope tag 'team' is given twice"),
    ({"scope": {"tags": (("", "a"),)}}, "scope tag ''"),
])
def test_invalid_budgets_cannot_be_built(kwargs, message):
    base = {"name": "api", "limit_nanos": usd("10"), "period": "month"}
    if "scope" in kwargs:
        with pytest.raises(BudgetError) as err:
            Scope(**kwargs.pop("scope"))
    else:
        with pytest.raises(BudgetError) as err:
            Budget(**{**base, **kwargs})
    assert message in str(err.value)


def test_budget_normalises_name_thresholds_and_tags():
    b = Budget("  api  ", usd("5"), "day", Scope(tags=(("z", "1"), ("a", "2"))), thresholds=(100, 50))
    assert b.name == "api" and b.thresholds == (50, 100) and b.scope.tags == (("a", "2"), ("z", "1"))
    assert b.warn_at == 50 and Budget("x", 1, "day", thresholds=(100, 150)).warn_at == 80


# --- storage ---------------------------------------------------------------------------------------


def test_book_round_trips_every_field(store):
    book = BudgetBook(store.db)
    scope = Scope(provider="openai", model="gpt-4o", feature="chat", user="u1", project="web", env="prod",
                  tags=(("team", "search"), ("tier", "pro")))
    added = book.add(Budget("Team Search", usd("123.456789012"), "week", scope, (25, 75, 100, 150), enforce=True))
    assert added.id is not None
    assert book.list() == [added] == load_budgets(store.conn)
    assert (added.name, added.limit_nanos, added.period, added.scope, added.thresholds, added.enforce) == (
        "Team Search", 123_456_789_012, "week", scope, (25, 75, 100, 150), True)


def test_duplicate_names_are_refused_case_insensitively_and_nothing_changes(store):
    book = BudgetBook(store.db)
    first = book.add(Budget("api", usd("10"), "month"))
    with pytest.raises(BudgetError, match="a budget named 'API' already exists"):
        book.add(Budget("API", usd("99"), "day"))
    assert book.list() == [first]


def test_remove_unknown_names_the_known_ones(store):
    book = BudgetBook(store.db)
    with pytest.raises(BudgetError, match="no budget named 'x'; there are no budgets yet"):
        book.remove("x")
    book.add(Budget("b", usd("1"), "day"))
    book.add(Budget("a", usd("1"), "day"))
    with pytest.raises(BudgetError, match="no budget named 'x'; budgets: a, b"):
        book.remove("x")
    assert book.remove("B").name == "b"
    assert [b.name for b in book.list()] == ["a"]


def test_removing_a_budget_drops_its_crossings_but_keeps_its_alerts(store):
    book = BudgetBook(store.db)
    b = book.add(Budget("api", usd("1"), "day"))
    conn = store.conn
    conn.execute("INSERT INTO alert (ts, kind, severity, title, body, budget) VALUES (1, 'threshold', 'info', 't', 'b', 'api')")
    conn.execute("INSERT INTO crossing (budget, period_start, kind, threshold, ts, alert) VALUES (?, 0, 'threshold', 50, 1, 1)",
                 (b.id,))
    book.remove("api")
    assert conn.execute("SELECT count(*) FROM crossing").fetchone()[0] == 0
    assert conn.execute("SELECT budget FROM alert").fetchall() == [("api",)]


def test_database_refuses_rows_the_model_would_refuse(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO budget (name, limit_nanos, period, created) VALUES ('x', 0, 'day', 0)")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO budget (name, limit_nanos, period, created) VALUES ('x', 5, 'year', 0)")


# --- scopes against brute force ---------------------------------------------------------------------

FEATURES = ["chat", "search", None]
TEAMS = ["a", "b", None]


def _random_events(seed: int, n: int = 120) -> list:
    rng = random.Random(seed)
    month_start = datetime(2026, 2, 28, 23, tzinfo=UTC)  # 1 March 00:00 in Berlin
    out = []
    for _ in range(n):
        tags = {}
        if (team := rng.choice(TEAMS)) is not None:
            tags["team"] = team
        if rng.random() < 0.4:
            tags["tier"] = rng.choice(["free", "pro"])
        ts = month_start + timedelta(seconds=rng.randrange(-3 * 86_400, int((NOW - month_start).total_seconds())))
        out.append(event(ts, f"0.{rng.randrange(1, 10**9):09d}", feature=rng.choice(FEATURES),
                         provider=rng.choice(["openai", "anthropic"]), user=rng.choice(["u1", "u2", None]),
                         tags=tags))
    return out


@pytest.fixture(scope="module")
def scoped_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("scopes") / "llmtray.db"
    s = open_store(path)
    events = _random_events(seed=7)
    s.add(events, "api")
    yield s, events
    s.close()


scopes = st.builds(
    Scope,
    provider=st.sampled_from([None, "openai", "anthropic"]),
    feature=st.sampled_from([None, "chat", "search"]),
    user=st.sampled_from([None, "u1", "u2"]),
    tags=st.lists(st.sampled_from([("team", "a"), ("team", "b"), ("tier", "pro"), ("tier", "free")]),
                  max_size=2, unique_by=lambda kv: kv[0]).map(tuple),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope=scopes, period=st.sampled_from(["day", "week", "month"]))
def test_scoped_spend_is_the_brute_force_sum(scoped_db, scope, period):
    store, events = scoped_db
    queries = Queries(store.conn, BERLIN)
    status = evaluate(queries, Budget("b", usd("1"), period, scope), NOW)
    expected = sum(
        usd_to_nanos(e.cost_usd) for e in events
        if status.start_us <= to_us(e.ts) and scope.matches({**_attribution(e), "tags": dict(e.tags)})
    )
    assert status.spent_nanos == expected


def _attribution(e) -> dict:
    return {"provider": e.provider, "model": e.model, "feature": e.feature, "user": e.user, "project": e.project,
            "env": e.env}


def test_scope_matching_needs_every_tag_and_field():
    scope = Scope(feature="chat", tags=(("team", "a"), ("tier", "pro")))
    assert scope.matches({"feature": "chat", "tags": {"team": "a", "tier": "pro", "x": "y"}})
    assert not scope.matches({"feature": "chat", "tags": {"team": "a"}})
    assert not scope.matches({"feature": "search", "tags": {"team": "a", "tier": "pro"}})
    assert not scope.matches({"tags": {"team": "a", "tier": "pro"}})
    assert Scope().matches({}) and Scope().describe() == "all spend"
    assert scope.describe() == "feature chat, tag team=a, tag tier=pro"


# --- evaluation and entries ----------------------------------------------------------------------------


@pytest.mark.parametrize("spent, state, reached", [
    ("4.999999999", "ok", ()),
    ("5", "ok", (50,)),
    ("7.999999999", "ok", (50,)),
    ("8", "warning", (50, 80)),
    ("9.999999999", "warning", (50, 80)),
    ("10", "exceeded", (50, 80, 100)),
])
def test_states_and_thresholds_switch_at_exact_amounts(store, spent, state, reached):
    store.add([event(NOW - timedelta(minutes=5), spent)], "api")
    status = evaluate(Queries(store.conn, BERLIN), Budget("b", usd("10"), "day"), NOW)
    assert (status.state, status.reached()) == (state, reached)


def test_entries_and_summary_follow_the_design_contract(store):
    book = BudgetBook(store.db)
    book.add(Budget("chat", usd("2"), "day", Scope(feature="chat"), enforce=True))
    book.add(Budget("all", usd("100"), "month"))
    store.add([event(NOW - timedelta(hours=1), "1.5", feature="chat"), event(NOW - timedelta(hours=2), "0.25"),
               event(utc("2026-02-27 12:00"), "7")], "api")
    queries = Queries(store.conn, BERLIN)
    entries = {e["name"]: e for e in budget_entries(queries, NOW)}
    chat = entries["chat"]
    assert {k: chat[k] for k in ("name", "period", "limit_usd", "spent_usd", "percent", "state")} == {
        "name": "chat", "period": "day", "limit_usd": "2", "spent_usd": "1.5", "percent": 75.0, "state": "ok"}
    assert chat["scope"] == {"feature": "chat"} and chat["enforce"] is True and chat["thresholds"] == [50, 80, 100]
    assert chat["period_start"] == "2026-03-18T00:00:00+01:00" and chat["period_end"] == "2026-03-19T00:00:00+01:00"
    assert entries["all"]["spent_usd"] == "1.75"
    body = summary(queries, NOW)
    assert set(body) >= {"today_usd", "month_usd", "projected_month_usd", "budgets"}
    assert [b["name"] for b in body["budgets"]] == ["all", "chat"]
    month = next(b for b in body["budgets"] if b["name"] == "all")
    assert month["projected_usd"] == body["projected_month_usd"]  # one projection, never two answers
    for b in body["budgets"]:
        for key in ("limit_usd", "spent_usd", "projected_usd"):
            Decimal(b[key])  # money as decimal strings


def test_week_budgets_follow_the_configured_week_start(store):
    store.add([event(utc("2026-03-15 12:00"), "3")], "api")  # Sunday
    queries = Queries(store.conn, BERLIN)
    week = Budget("w", usd("10"), "week")
    assert evaluate(queries, week, NOW, week_start=0).spent_nanos == 0  # weeks from Monday the 16th
    assert evaluate(queries, week, NOW, week_start=6).spent_nanos == usd("3")  # weeks from Sunday the 15th
    entries = summary(queries, NOW, week_start=6)["budgets"]
    BudgetBook(store.db).add(week)
    assert summary(queries, NOW, week_start=6)["budgets"][0]["spent_usd"] == "3" and entries == []


# --- projection -------------------------------------------------------------------------------------


def _hourly(store, start: datetime, end: datetime, usd_each: str) -> int:
    events, t = [], start
    while t < end:
        events.append(event(t, usd_each))
        t += timedelta(hours=1)
    store.add(events, "api")
    return len(events)


def test_projection_of_linear_spend_lands_on_the_true_month_total(store):
    month_start = utc("2026-02-28 23:00")  # 1 March, Berlin
    month_end = utc("2026-03-31 22:00")  # 1 April, Berlin (after the DST change)
    _hourly(store, month_start - timedelta(days=10), NOW, "1")
    status = evaluate(Queries(store.conn, BERLIN), Budget("m", usd("1000"), "month"), NOW)
    true_total = usd("1") * int((month_end - month_start).total_seconds() // 3600)
    assert abs(status.projected_nanos - true_total) <= usd("2")


def test_projection_after_a_quiet_start_uses_the_last_week(store):
    # $1/hour all along, but the month began 2 hours ago with nothing spent yet (00:00 → 02:00)
    now = utc("2026-03-01 01:00")
    _hourly(store, now - timedelta(days=14), utc("2026-02-28 23:00"), "1")
    status = evaluate(Queries(store.conn, BERLIN), Budget("m", usd("1000"), "month"), now)
    assert status.spent_nanos == 0
    assert usd("700") < status.projected_nanos < usd("760")  # ≈ 31 days × 24 × $1, not $0


def test_projection_of_a_single_burst_is_spread_over_a_week(store):
    store.add([event(NOW - timedelta(minutes=30), "50")], "api")
    status = evaluate(Queries(store.conn, BERLIN), Budget("m", usd("1000"), "month"), NOW)
    remaining_us = to_us(utc("2026-03-31 22:00")) - to_us(NOW)
    bound = usd("50") + usd("50") * remaining_us // (7 * 86_400_000_000) + 1
    assert usd("50") <= status.projected_nanos <= bound  # not $50 × hours left in the month


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(costs=st.lists(st.tuples(st.integers(0, 40 * 24 * 60), st.integers(1, 10**9)), max_size=30),
       period=st.sampled_from(["day", "week", "month"]))
def test_projection_never_falls_below_what_is_spent(tmp_path_factory, costs, period):
    path = tmp_path_factory.mktemp("proj") / "llmtray.db"
    s = open_store(path)
    try:
        s.add([event(NOW - timedelta(minutes=m), Decimal(n) / 10**9) for m, n in costs], "api")
        status = evaluate(Queries(s.conn, BERLIN), Budget("b", usd("1"), period), NOW)
        assert status.projected_nanos >= status.spent_nanos
    finally:
        s.close()


# --- enforcement -----------------------------------------------------------------------------------


def test_exhausted_enforced_budget_names_the_one_that_forbids_the_call(store):
    book = BudgetBook(store.db)
    book.add(Budget("chat-a", usd("1"), "day", Scope(feature="chat", tags=(("team", "a"),)), enforce=True))
    book.add(Budget("warn-only", usd("0.5"), "day"))  # exhausted too, but not enforced
    book.add(Budget("anthropic", usd("100"), "day", Scope(provider="anthropic"), enforce=True))
    queries = Queries(store.conn, BERLIN)
    call = {"provider": "openai", "model": "gpt-4o", "feature": "chat", "tags": {"team": "a"}}
    invalidate_enforcement_cache()
    assert exhausted_enforced_budget(queries, call, NOW) is None
    invalidate_enforcement_cache(add(store, [event(NOW - timedelta(minutes=1), "1", feature="chat",
                                                    tags={"team": "a"})]))
    assert exhausted_enforced_budget(queries, call, NOW).name == "chat-a"
    assert exhausted_enforced_budget(queries, {**call, "tags": {"team": "b"}}, NOW) is None
    assert exhausted_enforced_budget(queries, {**call, "feature": "search"}, NOW) is None
    assert exhausted_enforced_budget(queries, {**call, "tags": {}}, NOW) is None
    # the next local day is a new period: the same call is allowed again
    assert exhausted_enforced_budget(queries, call, NOW + timedelta(days=1)) is None


def test_enforcement_cache_holds_for_its_ttl_and_drops_on_commit(store):
    ticks = [0.0]
    cache = EnforcementCache(ttl_s=2.0, clock=lambda: ticks[0])
    BudgetBook(store.db).add(Budget("cap", usd("1"), "day", enforce=True))
    queries = Queries(store.conn, BERLIN)
    assert cache.exhausted(queries, {"provider": "openai"}, NOW) is None
    store.add([event(NOW - timedelta(minutes=1), "2")], "api")
    assert cache.exhausted(queries, {"provider": "openai"}, NOW) is None  # cached answer, no query
    ticks[0] = 2.5
    assert cache.exhausted(queries, {"provider": "openai"}, NOW).name == "cap"  # TTL over
    BudgetBook(store.db).add(Budget("cap2", usd("10"), "day", enforce=True))
    cache.invalidate(add(store, [event(NOW - timedelta(minutes=1), "9")]))
    assert cache.exhausted(queries, {"provider": "openai"}, NOW).name == "cap"  # most over its limit first
    assert cache.exhausted(queries, {"provider": "openai"}, NOW + timedelta(days=1)) is None  # new period


def test_enforcement_cache_keeps_databases_apart(tmp_path):
    a, b = open_store(tmp_path / "a.db"), open_store(tmp_path / "b.db")
    try:
        BudgetBook(a.db).add(Budget("cap", usd("1"), "day", enforce=True))
        a.add([event(NOW - timedelta(minutes=1), "2")], "api")
        cache = EnforcementCache()
        assert cache.exhausted(Queries(a.conn, BERLIN), {}, NOW).name == "cap"
        assert cache.exhausted(Queries(b.conn, BERLIN), {}, NOW) is None
    finally:
        a.close()
        b.close()
