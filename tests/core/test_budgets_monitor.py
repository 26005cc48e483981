"""Crossing detection: exactly one alert per budget, period and threshold — under random event
orders, downtime and restarts on a real SQLite file — silence for backfilled past periods,
pace alerts, snooze and quiet hours, the 30-second notification throttle, and the monitor thread."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from dataclasses import replace
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtray.config import Config
from llmtray.core.alerts import Alert, AlertLog, NotificationThrottle
from llmtray.core.budgets import Budget, BudgetBook, Scope
from llmtray.core.commits import Committed
from llmtray.core.db import open_db
from llmtray.core.monitor import BudgetMonitor, Evaluator
from llmtray.core.store import to_us
from tests.core.budget_kit import RecordingSink, add, event, open_store, utc

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

BERLIN = "Europe/Berlin"
CONFIG = Config(timezone=BERLIN)
QUIET_CONFIG = Config(timezone=BERLIN, spike_floor_usd=Decimal(10**6))  # budget tests without spike alerts
NOW = utc("2026-03-18 15:00")  # 16:00 in Berlin; the local day began 16 h ago
USD = 1_000_000_000


def crossings(conn: sqlite3.Connection) -> dict[tuple[str, int], set[int]]:
    """(budget, period start) → thresholds recorded."""
    out: dict[tuple[str, int], set[int]] = {}
    for name, start, t in conn.execute(
        "SELECT b.name, c.period_start, c.threshold FROM crossing c JOIN budget b ON b.id = c.budget"
        " WHERE c.kind = 'threshold'"
    ):
        out.setdefault((name, start), set()).add(t)
    return out


# --- exactly once, as a property ------------------------------------------------------------------

event_specs = st.tuples(
    st.sampled_from(["today", "today", "today", "february"]),
    st.integers(1, 900),  # minutes before NOW (today) or into 10 February (past month)
    st.integers(1, 250),  # cents
    st.sampled_from([None, "chat"]),
    st.sampled_from([None, "a", "b"]),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.lists(event_specs, min_size=1, max_size=6)),
        st.tuples(st.just("down")),
        st.tuples(st.just("restart")),
    ),
    max_size=14,
)
BUDGETS = (
    ("all", 10 * USD, "month", Scope()),
    ("chat-a", 3 * USD, "day", Scope(feature="chat", tags=(("team", "a"),))),
)


def _make_event(spec):
    where, minutes, cents, feature, team = spec
    ts = NOW - timedelta(minutes=minutes) if where == "today" else utc("2026-02-10 00:00") + timedelta(minutes=minutes)
    return event(ts, f"{cents / 100:.2f}", feature=feature, tags={"team": team} if team else {})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, thresholds=st.lists(st.integers(1, 160), min_size=1, max_size=4, unique=True))
def test_each_threshold_alerts_exactly_once_across_orders_downtime_and_restarts(ops, thresholds):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmtray.db"
        store = open_store(path)
        book = BudgetBook(store.db)
        budgets = [book.add(Budget(n, limit, period, scope, tuple(thresholds))) for n, limit, period, scope in BUDGETS]
        db = open_db(path)
        evaluator, up = Evaluator(db, CONFIG), True
        spent = {b.name: 0 for b in budgets}
        recorded: dict[str, set[int]] = {b.name: set() for b in budgets}
        seen_alerts: list[Alert] = []

        def check() -> None:
            alerts = evaluator.check(NOW, anomalies=False)
            seen_alerts.extend(alerts)
            by_budget = {a.budget: a for a in alerts if a.kind == "threshold"}
            assert len(by_budget) == len([a for a in alerts if a.kind == "threshold"])  # one per budget
            for b in budgets:
                reached = {t for t in b.thresholds if spent[b.name] * 100 >= b.limit_nanos * t}
                new = reached - recorded[b.name]
                alert = by_budget.get(b.name)
                if not new:
                    assert alert is None, f"repeated alert {alert}"
                    continue
                assert alert is not None, f"missed crossing of {sorted(new)} for {b.name}"
                covered = {t for (t,) in store.conn.execute(
                    "SELECT threshold FROM crossing WHERE alert = ? AND kind = 'threshold'", (alert.id,))}
                assert covered == new
                expected_title = f"Budget “{b.name}” exceeded" if max(new) == 100 else f"Budget “{b.name}” at {max(new)}%"
                assert alert.title == expected_title
                recorded[b.name] |= new

        try:
            check()  # the start check on an empty database says nothing
            for op in ops:
                if op[0] == "commit":
                    events = [_make_event(s) for s in op[1]]
                    store.add(events, "api")
                    for e in events:
                        if e.ts >= utc("2026-03-17 23:00"):  # today in Berlin, and this month
                            for b in budgets:
                                if b.scope.matches({"feature": e.feature, "tags": dict(e.tags)}):
                                    spent[b.name] += int(e.cost_usd * 100) * USD // 100
                    if up:
                        check()
                elif op[0] == "down":
                    up = False
                else:
                    db.close()
                    db = open_db(path)
                    evaluator, up = Evaluator(db, CONFIG), True
                    check()  # what crossed while it was down is announced now, once
            # the database agrees with the model, and every alert on record was seen once
            month_start, day_start = to_us(utc("2026-02-28 23:00")), to_us(utc("2026-03-17 23:00"))
            on_record = crossings(store.conn)
            assert on_record.get(("all", month_start), set()) == recorded["all"]
            assert on_record.get(("chat-a", day_start), set()) == recorded["chat-a"]
            assert set(on_record) <= {("all", month_start), ("chat-a", day_start)}  # never a past period
            stored = store.conn.execute("SELECT count(*) FROM alert").fetchone()[0]
            assert stored == len(seen_alerts) == len({a.id for a in seen_alerts})
            pace = [(a.budget, a.period_start_us) for a in seen_alerts if a.kind == "pace"]
            assert len(pace) == len(set(pace))
        finally:
            db.close()
            store.close()


# --- backfill, rollover, pace -------------------------------------------------------------------


def test_backfilled_past_periods_never_alert(data_dir):
    store = open_store(data_dir / "llmtray.db")
    BudgetBook(store.db).add(Budget("month", 50 * USD, "month"))
    BudgetBook(store.db).add(Budget("day", 1 * USD, "day"))
    db = open_db(data_dir / "llmtray.db")
    try:
        evaluator = Evaluator(db, CONFIG)
        # an import of February (twice the monthly limit), and yesterday over the daily limit
        store.add([event(utc("2026-02-10 12:00") + timedelta(hours=i), "5") for i in range(20)], "import:openai")
        store.add([event(utc("2026-03-17 22:30"), "4")], "hook")  # 23:30 yesterday in Berlin
        assert evaluator.check(NOW) == []
        assert crossings(store.conn) == {}
        # spool redelivery of *today's* earlier calls is current spend: that does count
        store.add([event(NOW - timedelta(hours=5), "1")], "hook")
        assert [a.title for a in evaluator.check(NOW)] == ["Budget “day” exceeded"]
    finally:
        db.close()
        store.close()


def test_yesterdays_crossing_is_not_announced_after_midnight(data_dir):
    store = open_store(data_dir / "llmtray.db")
    BudgetBook(store.db).add(Budget("day", 1 * USD, "day"))
    db = open_db(data_dir / "llmtray.db")
    try:
        store.add([event(utc("2026-03-18 22:59"), "2")], "hook")  # 23:59 in Berlin
        evaluator = Evaluator(db, CONFIG)
        assert evaluator.check(utc("2026-03-18 23:00:01"), anomalies=False) == []  # checked just after midnight
        assert evaluator.check(utc("2026-03-18 22:59:30"), anomalies=False)  # had it been checked in time
    finally:
        db.close()
        store.close()


def test_pace_alert_once_per_period(data_dir):
    store = open_store(data_dir / "llmtray.db")
    BudgetBook(store.db).add(Budget("month", 500 * USD, "month"))
    db = open_db(data_dir / "llmtray.db")
    try:
        t, events = utc("2026-02-28 23:00"), []
        while t < NOW:
            events.append(event(t, "1"))
            t += timedelta(hours=1)
        store.add(events, "hook")
        evaluator = Evaluator(db, CONFIG)
        first = evaluator.check(NOW, anomalies=False)
        assert sorted(a.kind for a in first) == ["pace", "threshold"]
        pace = next(a for a in first if a.kind == "pace")
        assert pace.title == "Budget “month” on pace to exceed" and pace.severity == "warning"
        assert "against a $500.00 limit" in pace.body and "by Tue 31 Mar" in pace.body
        assert evaluator.check(NOW + timedelta(hours=3), anomalies=False) == []
        store.add([event(utc("2026-04-01 10:00"), "400")], "hook")
        april = evaluator.check(utc("2026-04-01 10:30"), anomalies=False)
        assert [a.kind for a in april if a.kind == "pace"] == ["pace"]
    finally:
        db.close()
        store.close()


# --- muting ---------------------------------------------------------------------------------------


def test_quiet_hours_and_snooze_persist_and_apply(data_dir):
    path = data_dir / "llmtray.db"
    db = open_db(path)
    tz = ZoneInfo(BERLIN)
    try:
        log = AlertLog(db)
        log.set_quiet_hours(time(22, 0), time(7, 0))
        log.snooze(NOW + timedelta(hours=1))
    finally:
        db.close()
    db = open_db(path)  # a new connection (a restart) sees the same state
    try:
        log = AlertLog(db)
        assert log.quiet_hours() == (time(22, 0), time(7, 0))
        assert log.snoozed_until(NOW) is not None and log.muted(NOW, tz)
        later = NOW + timedelta(hours=2)  # 18:00 in Berlin: snooze over, not quiet
        assert log.snoozed_until(later) is None and not log.muted(later, tz)
        assert log.muted(utc("2026-03-18 22:30"), tz)  # 23:30 local
        assert log.muted(utc("2026-03-19 05:59"), tz)  # 06:59 local
        assert not log.muted(utc("2026-03-19 06:00"), tz)  # 07:00 local
        log.snooze(None)
        log.set_quiet_hours(time(12, 0), time(13, 0))  # 11:00–12:00 UTC
        assert log.muted(utc("2026-03-18 11:30"), tz) and not log.muted(utc("2026-03-18 12:00"), tz)
        assert not log.muted(utc("2026-03-18 10:59"), tz)
        log.set_quiet_hours(None)
        assert not log.muted(utc("2026-03-18 11:30"), tz) and log.quiet_hours() is None
        with pytest.raises(ValueError):
            log.set_quiet_hours(time(8), time(8))
    finally:
        db.close()


# --- the throttle -----------------------------------------------------------------------------------


def _alert(title: str, severity: str = "info") -> Alert:
    return Alert("threshold", severity, title, "body", 0, id=hash(title) % 1000)


def test_throttle_sends_the_first_at_once_and_collapses_the_rest():
    throttle = NotificationThrottle(30.0)
    first = throttle.offer(_alert("a"), now=100.0)
    assert first is not None and first.alert.title == "a"
    assert throttle.offer(_alert("b"), now=101.0) is None
    assert throttle.offer(_alert("c", "critical"), now=110.0) is None
    assert throttle.next_due() == 130.0 and throttle.due(129.9) is None
    summary = throttle.due(130.0)
    assert summary.alert.kind == "summary" and summary.alert.severity == "critical"
    assert summary.alert.title == "2 llmtray alerts" and summary.alert.body == "• b\n• c"
    assert [a.title for a in summary.covers] == ["b", "c"]
    assert throttle.due(500.0) is None and throttle.next_due() is None
    single = throttle.offer(_alert("d"), now=500.0)
    assert single.alert.title == "d"  # a lone alert is sent as itself


# --- the monitor thread -------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def running(data_dir):
    """A store (the app's writer), a monitor with a recording sink, and a controllable clock."""
    path = data_dir / "llmtray.db"
    store = open_store(path)
    clock, sink = Clock(NOW), RecordingSink()
    monitors: list[BudgetMonitor] = []

    def start(**kwargs) -> BudgetMonitor:
        kwargs.setdefault("min_interval_s", 0.0)
        kwargs.setdefault("notify_interval_s", 0.0)
        m = BudgetMonitor(path, QUIET_CONFIG, kwargs.pop("sinks", [sink]), clock=clock, **kwargs)
        m.start()
        monitors.append(m)
        assert m.sync(20)
        return m

    yield store, start, clock, sink
    for m in monitors:
        m.stop()
    store.close()


def test_monitor_alerts_once_and_a_restart_neither_repeats_nor_misses(running):
    store, start, clock, sink = running
    BudgetBook(store.db).add(Budget("api", 10 * USD, "day"))
    monitor = start()
    batch = [event(NOW - timedelta(minutes=3), "6")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert monitor.sync(20)
    assert [a.title for a in sink.sent] == ["Budget “api” at 50%"]
    monitor.stop()
    batch = [event(NOW - timedelta(minutes=2), "3")]  # 90 %: crossed while nothing was running
    notice = add(store, batch)
    monitor = start()
    assert [a.title for a in sink.sent] == ["Budget “api” at 50%", "Budget “api” at 80%"]
    monitor.on_commit(notice)  # the same notice again changes nothing
    assert monitor.sync(20)
    monitor.stop()
    start()
    assert len(sink.sent) == 2
    assert store.conn.execute("SELECT count(*), sum(delivered) FROM alert").fetchone() == (2, 2)


def test_on_commit_returns_while_the_database_is_locked(running, data_dir):
    store, start, clock, sink = running
    BudgetBook(store.db).add(Budget("api", 1 * USD, "day"))
    monitor = start()
    batch = [event(NOW - timedelta(minutes=1), "2")]
    notice = add(store, batch)
    blocker = sqlite3.connect(data_dir / "llmtray.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        monitor.on_commit(notice)  # must not wait for it
        assert sink.sent == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert monitor.sync(20)
    assert [a.title for a in sink.sent] == ["Budget “api” exceeded"]


def test_snoozed_alerts_are_kept_in_history_and_not_sent(running):
    store, start, clock, sink = running
    BudgetBook(store.db).add(Budget("api", 10 * USD, "day"))
    history: list[Alert] = []
    monitor = start(on_alert=history.append)
    monitor.snooze(NOW + timedelta(hours=1))
    batch = [event(NOW - timedelta(minutes=1), "6")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert monitor.sync(20)
    assert sink.sent == [] and [(a.title, a.snoozed) for a in history] == [("Budget “api” at 50%", True)]
    clock.now = NOW + timedelta(hours=2)
    batch = [event(clock.now - timedelta(minutes=1), "3")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert monitor.sync(20)
    assert [a.title for a in sink.sent] == ["Budget “api” at 80%"]
    rows = store.conn.execute("SELECT title, snoozed, delivered FROM alert ORDER BY id").fetchall()
    assert rows == [("Budget “api” at 50%", 1, 0), ("Budget “api” at 80%", 0, 1)]


def test_alerts_within_30_seconds_collapse_into_a_summary(running):
    store, start, clock, sink = running
    for name in ("a", "b", "c"):
        BudgetBook(store.db).add(Budget(name, 1 * USD, "day"))
    monitor = start(notify_interval_s=0.3)
    batch = [event(NOW - timedelta(minutes=1), "2")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert sink.wait_for(2)
    assert monitor.sync(20)
    first, summary = sink.sent
    assert first.title == "Budget “a” exceeded"
    assert summary.kind == "summary" and summary.title == "2 llmtray alerts"
    assert summary.body == "• Budget “b” exceeded\n• Budget “c” exceeded"
    assert store.conn.execute("SELECT count(*), sum(delivered) FROM alert").fetchone() == (3, 3)


def test_alerts_held_by_the_throttle_at_stop_are_sent_at_the_next_start(running):
    store, start, clock, sink = running
    for name in ("a", "b"):
        BudgetBook(store.db).add(Budget(name, 1 * USD, "day"))
    monitor = start(notify_interval_s=3600)
    batch = [event(NOW - timedelta(minutes=1), "2")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert monitor.sync(20)
    monitor.stop()
    assert [a.title for a in sink.sent] == ["Budget “a” exceeded"]
    assert store.conn.execute("SELECT title FROM alert WHERE delivered = 0").fetchall() == [("Budget “b” exceeded",)]
    later = RecordingSink()
    clock.now = NOW + timedelta(minutes=10)
    start(sinks=[later])
    assert [a.title for a in later.sent] == ["Budget “b” exceeded"]
    assert store.conn.execute("SELECT count(*) FROM alert WHERE delivered = 0").fetchone() == (0,)


def test_a_failing_sink_does_not_stop_the_monitor(running):
    store, start, clock, sink = running

    class Broken(RecordingSink):
        def send(self, alert: Alert) -> None:
            raise RuntimeError("D-Bus went away")

    BudgetBook(store.db).add(Budget("api", 1 * USD, "day"))
    monitor = start(sinks=[Broken(), sink])
    batch = [event(NOW - timedelta(minutes=1), "2")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    assert monitor.sync(20)
    assert [a.title for a in sink.sent] == ["Budget “api” exceeded"]


def test_stop_finishes_a_check_the_rate_limit_was_holding_back(running):
    store, start, clock, sink = running
    BudgetBook(store.db).add(Budget("api", 1 * USD, "day"))
    monitor = start(min_interval_s=3600)  # after the start check, the next pass is an hour away
    batch = [event(NOW - timedelta(minutes=1), "2")]
    notice = add(store, batch)
    monitor.on_commit(notice)
    monitor.stop()
    assert [a.title for a in sink.sent] == ["Budget “api” exceeded"]


def test_a_monitor_that_cannot_open_its_database_does_not_hang_its_callers(data_dir, caplog):
    monitor = BudgetMonitor(data_dir, QUIET_CONFIG)  # a directory, not a database file
    monitor.start()
    try:
        assert monitor.sync(20) is False
        monitor.on_commit(Committed(1, 0, to_us(NOW), to_us(NOW)))
        assert monitor.sync(20) is False
    finally:
        monitor.stop()
    assert "could not open" in caplog.text


def test_a_budget_added_by_another_process_is_checked_without_a_new_event(running):
    """#17 item 8: no commit notice comes when `llmtray budgets add` (another process) or the
    dialog adds a budget; one already over its limit still alerts within seconds."""
    store, start, clock, sink = running
    add(store, [event(NOW - timedelta(minutes=5), "4")])  # $4 spent today, before any budget
    changed = threading.Event()
    monitor = start(budget_poll_s=0.1, on_budgets_changed=changed.set)
    assert sink.sent == []
    other = open_db(Path(store.db.database))  # another connection: what another process would write through
    try:
        BudgetBook(other).add(Budget("tight", 3 * USD, "day"))
    finally:
        other.close()
    assert sink.wait_for(1, 10), "the new budget was not checked"
    assert changed.is_set()
    assert [a.title for a in sink.sent] == ["Budget “tight” exceeded"]
    assert monitor.sync(20)
    assert len(sink.sent) == 1  # checked once, not on every poll


def test_quiet_hours_from_config_hold_notifications(data_dir):
    """#17 README: quiet hours were mentioned but could not be set; config.toml sets them now."""
    from llmtray.config import parse

    config = parse({"display": {"timezone": BERLIN}, "alerts": {"spike_floor_usd": 10**6, "quiet_hours": "15:30-17:00"}})
    assert config.quiet_hours == (time(15, 30), time(17, 0))  # NOW is 16:00 in Berlin: quiet
    path = data_dir / "llmtray.db"
    store = open_store(path)
    BudgetBook(store.db).add(Budget("api", 10 * USD, "day"))
    add(store, [event(NOW - timedelta(minutes=3), "6")])
    sink = RecordingSink()
    for cfg in (config, replace(config, quiet_hours=None)):  # then without them: a later alert goes out
        monitor = BudgetMonitor(path, cfg, [sink], clock=lambda: NOW, min_interval_s=0.0, notify_interval_s=0.0)
        monitor.start()
        try:
            assert monitor.sync(20)
            if cfg.quiet_hours:
                add(store, [event(NOW - timedelta(minutes=2), "0.5")])
                history = AlertLog(store.db).history()
                assert [(a.title, a.snoozed) for a in history] == [("Budget “api” at 50%", True)]
                assert sink.sent == []
            else:
                monitor.on_commit(add(store, [event(NOW - timedelta(minutes=1), "2.5")]))  # 90 %
                assert monitor.sync(20)
                assert [a.title for a in sink.sent] == ["Budget “api” at 80%"]
        finally:
            monitor.stop()
    store.close()


@pytest.mark.parametrize("bad", ["22-7", "25:00-07:00", "07:00-07:00", 2200, ""])
def test_a_wrong_quiet_hours_setting_names_the_key_and_the_value(bad):
    from llmtray.config import parse
    from llmtray.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse({"alerts": {"quiet_hours": bad}}, "config.toml")
    assert str(info.value) == ('config.toml: alerts.quiet_hours must be "HH:MM-HH:MM" (two different local times, '
                               f'e.g. "22:00-07:00"), got {bad!r}')


def test_an_alert_stored_elsewhere_is_delivered_like_ours(running):
    """The bill's drift alert (stored by `billing.drift`) reaches the sinks through `deliver`."""
    store, start, clock, sink = running
    monitor = start()
    alert = AlertLog(store.db).record(Alert(kind="bill_drift", severity="warning", title="openai bill differs",
                                            body="billed $2, observed $1", ts_us=to_us(NOW)), snoozed=False)
    monitor.deliver(alert)
    assert sink.wait_for(1)
    assert [(a.kind, a.title) for a in sink.sent] == [("bill_drift", "openai bill differs")]
    assert monitor.sync(20)
    assert [a.delivered for a in AlertLog(store.db).history() if a.kind == "bill_drift"] == [True]
