"""Blocks and guards in the core (DESIGN §15): stored, shared between connections, matched like
budget scopes; guards trip on live calls only; `runaway_action = "block"` blocks the feature."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from llmtray.config import Config, parse
from llmtray.core.blocks import BlockBook, BlockError, BlockWatch, describe_duration, parse_duration
from llmtray.core.budgets import Scope
from llmtray.core.db import open_db
from llmtray.core.errors import ConfigError
from llmtray.core.guards import Guard, GuardBook, GuardWatch
from llmtray.core.money import usd_to_nanos
from llmtray.core.monitor import Evaluator
from llmtray.core.status import summary
from llmtray.core.queries import Queries
from llmtray.core.store import to_us
from tests.core.budget_kit import event, open_store, utc

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

NOW = utc("2026-03-18 15:07")
CALL = {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "feature": "agent", "user": "u1",
        "tags": {"team": "a"}}


@pytest.fixture
def store(data_dir):
    s = open_store(data_dir / "llmtray.db")
    yield s
    s.close()


def other_connection(store) -> sqlite3.Connection:
    return sqlite3.connect(store.db.database, timeout=10)


def test_a_block_is_shared_matched_like_a_budget_scope_and_ends(store):
    book = BlockBook(store.conn)
    timed = book.add(Scope(model="gpt-4o-mini"), "  too   dear ", for_s=3600, now=NOW)
    forever = book.add(Scope(tags=(("team", "b"),)), "team b is over", created_by="alert", now=NOW)
    assert timed.reason == "too dear" and timed.until_us == to_us(NOW + timedelta(hours=1))
    seen = BlockBook(other_connection(store))  # another process's view
    assert [b.id for b in seen.active(NOW)] == [timed.id, forever.id]
    assert seen.refusal(CALL, NOW) == timed  # the alias covers the snapshot the call names
    assert seen.refusal({**CALL, "model": "gpt-4o"}, NOW) is None
    assert seen.refusal({**CALL, "tags": {"team": "b"}}, NOW + timedelta(hours=1)) == forever  # timed one expired
    assert "blocked by llmtray block #1 (model gpt-4o-mini): too dear. Blocked until 2026-03-18T16:07:00Z" \
        in timed.message
    lifted = seen.lift(forever.id, NOW)
    assert lifted.lifted_us == to_us(NOW) and book.active(NOW) == [timed]
    with pytest.raises(BlockError, match=r"block #2 was lifted already; active blocks: #1"):
        book.lift(forever.id, NOW)
    with pytest.raises(BlockError, match=r"no block #9; active blocks: #1"):
        book.lift(9, NOW)
    assert [b.id for b in book.history()] == [forever.id, timed.id]  # history keeps them
    assert [b.id for b in book.lift_all(NOW)] == [timed.id] and book.active(NOW) == []


@pytest.mark.parametrize("bad, message", [
    ({"reason": ""}, "reason: must be 1–500"), ({"reason": "x" * 501}, "reason: must be 1–500"),
    ({"created_by": "robot"}, "created_by: must be one of user, guard, alert"),
    ({"for_s": 0}, "duration: must be more than 0"),
])
def test_a_bad_block_is_refused_and_stores_nothing(store, bad, message):
    args = {"scope": Scope(feature="f"), "reason": "r", **bad}
    with pytest.raises(BlockError, match=message):
        BlockBook(store.conn).add(**args)
    assert store.conn.execute("SELECT count(*) FROM block").fetchone()[0] == 0


def test_durations():
    assert [parse_duration(t) for t in ("30m", "2h", " 1d ", "90s")] == [1800, 7200, 86400, 90]
    for bad in ("", "2", "h", "1.5h", "-1h", "0m", "400d"):
        with pytest.raises(BlockError, match="duration"):
            parse_duration(bad)
    assert [describe_duration(s) for s in (3600, 1800, 172800, 90)] == ["1 h", "30 min", "2 d", "90 s"]


def test_the_watch_rereads_at_most_every_refresh_and_keeps_the_last_list_on_errors(store):
    clock = [0.0]
    errors: list[Exception] = []
    watch = BlockWatch(lambda: other_connection(store), refresh_s=0.25, clock=lambda: clock[0],
                       on_error=errors.append)
    assert watch.refusal(CALL, NOW) is None
    block = BlockBook(store.conn).add(Scope(feature="agent"), "loop", now=NOW)
    assert watch.refusal(CALL, NOW) is None  # read 0 s ago: not yet
    clock[0] = 0.25
    assert watch.refusal(CALL, NOW) == block
    store.conn.execute("ALTER TABLE block RENAME TO block_gone")  # an unreadable table
    clock[0] = 0.5
    assert watch.refusal(CALL, NOW) == block and len(errors) == 1
    watch.close()


def test_refused_calls_are_zero_cost_error_events_tagged_with_the_block(store):
    from llmtray.core.events import parse_event

    block = BlockBook(store.conn).add(Scope(feature="agent"), "loop", now=NOW)
    tags = {f"k{i:02}": "v" for i in range(32)}  # a call already at the tag limit
    events = [parse_event(block.refused_event("openai", None, {"feature": "agent", "user": None}, tags,
                                              NOW.timestamp())),
              parse_event(block.refused_event("openai", "gpt-4o", {"feature": "agent"}, {"team": "a"}))]
    store.add(events, "proxy")
    assert events[0].model == "unknown" and events[0].status == "error" and len(events[0].tags) == 32
    assert BlockBook(store.conn).refused() == {block.id: 2}
    assert Queries(store.conn).totals().cost_nanos == 0


def test_summary_lists_active_blocks(store):
    block = BlockBook(store.conn).add(Scope(feature="agent"), "loop", for_s=60, now=NOW)
    body = summary(Queries(store.conn), now=NOW)
    assert body["blocks"] == [{"id": block.id, "scope": {"feature": "agent"}, "reason": "loop",
                               "until": "2026-03-18T15:08:00Z", "created_by": "user",
                               "created": "2026-03-18T15:07:00Z", "lifted": None}]
    assert summary(Queries(store.conn), now=NOW + timedelta(minutes=2))["blocks"] == []


# --- guards --------------------------------------------------------------------------------------


def test_a_per_call_guard_trips_on_a_new_call_in_its_scope_only(store):
    GuardBook(store.conn).add(Guard("big", Scope(feature="agent"), max_request_nanos=usd_to_nanos("0.50")))
    watch = GuardWatch()
    store.add([event(NOW - timedelta(hours=1), "5", feature="agent"),  # old: history, not a live loop
               event(NOW - timedelta(minutes=1), "0.40", feature="agent"),
               event(NOW - timedelta(minutes=1), "9", feature="chat")], "hook")
    assert watch.check(store.conn, NOW) == []
    store.add([event(NOW, "0.75", feature="agent", model="o3")], "hook")
    [trip] = watch.check(store.conn, NOW)
    assert trip.block.reason == "guard 'big': a o3 call cost $0.75, above its $0.50 per-call limit"
    assert trip.block.created_by == "guard" and trip.block.until_us == to_us(NOW + timedelta(hours=1))
    store.add([event(NOW, "3", feature="agent")], "hook")
    assert watch.check(store.conn, NOW) == []  # already blocked: one block, not one per call


def test_an_average_guard_needs_a_full_window_above_its_limit(store):
    GuardBook(store.conn).add(Guard("avg", Scope(), max_avg_nanos=usd_to_nanos("0.10"), window=4, block_s=None))
    watch = GuardWatch()
    store.add([event(NOW - timedelta(seconds=9 - i), "0.30") for i in range(3)], "hook")
    assert watch.check(store.conn, NOW) == []  # 3 calls: not a full window
    store.add([event(NOW, "0.01")], "hook")
    [trip] = watch.check(store.conn, NOW)  # (0.30 * 3 + 0.01) / 4 = 0.2275
    assert trip.block.reason == "guard 'avg': the last 4 calls averaged $0.2275, above its $0.10 limit"
    assert trip.block.until_us is None


@pytest.mark.parametrize("guard, message", [
    (dict(name="g"), "exactly one of"),
    (dict(name="g", max_request_nanos=1, max_avg_nanos=1), "exactly one of"),
    (dict(name="g", max_request_nanos=0), "limit: must be more than"),
    (dict(name="g", max_avg_nanos=1, window=0), "window: must be 1"),
    (dict(name=" ", max_request_nanos=1), "name: must be"),
])
def test_a_bad_guard_is_refused(store, guard, message):
    with pytest.raises(BlockError, match=message):
        GuardBook(store.conn).add(Guard(**guard))
    assert GuardBook(store.conn).list() == []


def test_guard_names_are_unique_and_removal_names_the_known_ones(store):
    book = GuardBook(store.conn)
    book.add(Guard("Big", max_request_nanos=1))
    with pytest.raises(BlockError, match="already exists"):
        book.add(Guard("big", max_request_nanos=2))
    with pytest.raises(BlockError, match="no guard named 'nope'; guards: Big"):
        book.remove("nope")
    assert book.remove("Big").name == "Big" and book.list() == []


# --- through the monitor's evaluator ---------------------------------------------------------------


def _loop(store) -> None:
    store.add([event(NOW - timedelta(minutes=4) * (i + 0.5) / 60, "0.02", feature="agent") for i in range(60)], "hook")


def test_the_evaluator_announces_a_guard_trip(store, data_dir):
    GuardBook(store.conn).add(Guard("big", Scope(feature="agent"), max_request_nanos=usd_to_nanos("0.01")))
    _loop(store)
    db = open_db(data_dir / "llmtray.db")
    try:
        alerts = [a for a in Evaluator(db, Config()).check(NOW) if a.kind == "guard"]
        assert [a.title for a in alerts] == ["Guard “big” tripped: feature agent blocked"]
        assert "llmtray unblock 1" in alerts[0].body and alerts[0].severity == "critical"
    finally:
        db.close()


@pytest.mark.parametrize("action", ["notify", "block"])
def test_runaway_action(store, data_dir, action):
    _loop(store)
    db = open_db(data_dir / "llmtray.db")
    try:
        [alert] = [a for a in Evaluator(db, Config(runaway_action=action)).check(NOW) if a.kind == "runaway"]
        blocks = BlockBook(store.conn).active(NOW)
        if action == "notify":
            assert blocks == [] and alert.feature == "agent"  # the notification offers the block
        else:
            [block] = blocks
            assert block.scope == Scope(feature="agent") and block.created_by == "alert"
            assert block.until_us == to_us(NOW + timedelta(hours=1))
            assert alert.feature is None and f"Blocked for 1 h (block #{block.id}" in alert.body
    finally:
        db.close()


def test_runaway_action_config_is_validated():
    assert parse({"alerts": {"runaway_action": "block"}}).runaway_action == "block"
    with pytest.raises(ConfigError, match="alerts.runaway_action must be one of notify, block, got 'kill'"):
        parse({"alerts": {"runaway_action": "kill"}})


def test_a_summary_notification_keeps_the_one_feature_it_could_block():
    from llmtray.core.alerts import Alert, summarize

    runaway = Alert("runaway", "critical", "Runaway calls: feature “agent”", "…", 1, feature="agent")
    budget = Alert("threshold", "warning", "Budget “team” at 80%", "…", 2, budget="team")
    assert summarize([runaway, budget]).feature == "agent"
    assert summarize([runaway, Alert("spike", "warning", "Spike", "…", 3, feature="search")]).feature is None
    assert summarize([budget, budget]).feature is None


def test_after_a_guard_block_ends_only_later_calls_count(store):
    """Lifting a guard's block (or restarting) must not trip it again on the calls it already
    judged: neither the expensive call itself nor an average that still holds it."""
    GuardBook(store.conn).add(Guard("big", Scope(feature="agent"), max_request_nanos=usd_to_nanos("1")))
    GuardBook(store.conn).add(Guard("avg", Scope(feature="bot"), max_avg_nanos=usd_to_nanos("0.10"), window=3))
    watch = GuardWatch()
    store.add([event(NOW - timedelta(seconds=30), "5", feature="agent")]
              + [event(NOW - timedelta(seconds=20 - i), "0.50", feature="bot") for i in range(3)], "hook")
    trips = watch.check(store.conn, NOW)
    assert sorted(t.guard.name for t in trips) == ["avg", "big"]
    book = BlockBook(store.conn)
    lifted_at = NOW + timedelta(seconds=1)
    book.lift_all(lifted_at)
    later = lifted_at + timedelta(seconds=5)
    store.add([event(later, "0.01", feature="bot"), event(later, "0.01", feature="agent")], "hook")
    assert watch.check(store.conn, later) == []  # the old $0.50 calls no longer make the average
    assert GuardWatch().check(store.conn, later) == []  # a restart: the $5 call was judged already
    store.add([event(later, "0.50", feature="bot"), event(later, "0.50", feature="bot")], "hook")
    [again] = watch.check(store.conn, later)  # (0.01 + 0.50 + 0.50) / 3 > 0.10: new calls trip it
    assert again.guard.name == "avg"
