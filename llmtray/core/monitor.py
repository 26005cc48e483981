"""The budget monitor: after commits, on its own thread and connection, it checks budgets
(threshold crossings, pace) and anomalies (spike, runaway), records alerts and notifies.

Exactly once: a crossing is a row keyed (budget, period start, kind, threshold), written in the
same `BEGIN IMMEDIATE` transaction as its alert, so neither a restart nor a second process can
announce it twice, and a check at start announces what crossed while nothing was running. Only
the *current* period is ever evaluated, so backfilled imports and spool redelivery of past
periods never notify. Anomaly alerts keep a persisted cool-down per detector key.

Budgets are added and changed by other processes too (`llmtray budgets add`, the dialog of the
app while `serve` runs), which send no commit notice: the monitor reads the budget table every
`budget_poll_s` (a few rows) and checks at once when it changed — a budget created already over
its limit alerts within seconds, not at the next event — and tells `on_budgets_changed` so the
tray icon shows the new state.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee as pw

from llmtray.config import Config
from llmtray.core.alerts import Alert, AlertLog, AlertSink, Notification, NotificationThrottle
from llmtray.core.anomalies import HOUR_US, Detectors, Finding, RunawayRule, SpikeRule
from llmtray.core.blocks import ALERT_BLOCK_S, MAX_REASON, BlockBook
from llmtray.core.budgets import PERIOD_PHRASE, BudgetStatus, Scope, budget_models, evaluate, load_budgets
from llmtray.core.commits import Committed
from llmtray.core.db import open_db
from llmtray.core.dburl import PostgresUrl
from llmtray.core.guards import GuardBook, GuardWatch, Trip
from llmtray.core.money import format_usd
from llmtray.core.queries import Queries
from llmtray.core.settled import SettledQueries, SettledTotals
from llmtray.core.store import from_us, to_us

log = logging.getLogger(__name__)

ANOMALY_COOLDOWN_US = HOUR_US
LIVE_WINDOW_US = 15 * 60 * 1_000_000  # commits older than this can't be a spike or a runaway
REDELIVER_US = HOUR_US  # alerts recorded but not sent before a stop are sent at start if this recent
BUDGET_POLL_S = 2.0  # how soon a budget changed by any process is checked


class Evaluator:
    """One check pass over one database: budgets, then anomalies. The monitor's thread runs it;
    tests and replays call it directly (same code, no thread)."""

    def __init__(self, db: pw.SqliteDatabase, config: Config, detectors: Detectors | None = None):
        self.db = db
        self.config = config
        self.queries = Queries(db.connection(), config.tz)
        self.settled = SettledTotals()
        self.log = AlertLog(db)
        self.crossing = budget_models(db).Crossing
        self.detectors = detectors or Detectors(SpikeRule.from_config(config), RunawayRule.from_config(config))
        self.guards = GuardWatch()
        self.recorded: set[int] = set()  # ids of the alerts this machine recorded (team mode tells them apart)

    def check(self, now: datetime, *, anomalies: bool = True) -> list[Alert]:
        """Record every alert due at `now` and return them (snoozed ones flagged, not to be sent)."""
        out: list[Alert] = []
        queries = SettledQueries(self.queries, self.settled, to_us(now))
        for budget in load_budgets(self.queries.conn):
            try:
                out += self._budget_alerts(evaluate(queries, budget, now, self.config.week_start), now)
            except (sqlite3.Error, pw.PeeweeException):  # a locked or failing database: the next pass retries
                log.exception("checking budget %r failed", budget.name)
        try:
            out += self._guard_alerts(now)
        except (sqlite3.Error, pw.PeeweeException):
            log.exception("guard check failed")
        if anomalies:
            try:
                findings = self.detectors.run(self.queries, to_us(now))
                for finding in findings:
                    out += self._anomaly_alert(finding, now)
            except (sqlite3.Error, pw.PeeweeException):
                log.exception("anomaly check failed")
        self.recorded.update(a.id for a in out if a.id is not None)
        return out

    # budgets

    def _due(self, status: BudgetStatus) -> tuple[list[int], bool]:
        """Thresholds newly reached and whether a pace alert is newly due, against what's recorded."""
        reached = status.reached()
        pace = status.on_pace_to_exceed and status.spent_nanos < status.budget.limit_nanos
        if not reached and not pace:
            return [], False
        C = self.crossing
        known = set(C.select(C.kind, C.threshold).where(
            (C.budget == status.budget.id) & (C.period_start == status.start_us)).tuples())
        return [t for t in reached if ("threshold", t) not in known], pace and ("pace", 100) not in known

    def _budget_alerts(self, status: BudgetStatus, now: datetime) -> list[Alert]:
        new, pace = self._due(status)
        if not new and not pace:
            return []
        out = []
        try:
            with self.db.atomic("IMMEDIATE"):
                new, pace = self._due(status)  # again under the write lock: another process may have won
                muted = self.log.muted(now, self.config.tz)
                rows = []
                if new:
                    alert = self.log.record(threshold_alert(status, max(new), now, self.config), snoozed=muted)
                    rows += [("threshold", t, alert.id) for t in new]
                    out.append(alert)
                if pace:
                    alert = self.log.record(pace_alert(status, now, self.config), snoozed=muted)
                    rows.append(("pace", 100, alert.id))
                    out.append(alert)
                self.crossing.insert_many(
                    [{"budget": status.budget.id, "period_start": status.start_us, "kind": kind, "threshold": t,
                      "ts": to_us(now), "alert": alert_id} for kind, t, alert_id in rows]
                ).execute()
        except pw.IntegrityError:  # the budget was removed meanwhile: nothing to announce
            return []
        return out

    # anomalies

    def _anomaly_alert(self, finding: Finding, now: datetime) -> list[Alert]:
        key, now_us = f"cooldown:{finding.key}", to_us(now)
        with self.db.atomic("IMMEDIATE"):
            last = self.log.get_state(key)
            if last is not None and now_us - int(last) < ANOMALY_COOLDOWN_US:
                return []
            self.log.set_state(key, str(now_us))
            body, offer = finding.body, finding.feature
            if finding.kind == "runaway" and offer and self.config.runaway_action == "block":
                reason = f"runaway calls: {finding.body}"[:MAX_REASON]
                block = BlockBook(self.queries.conn).add(Scope(feature=offer), reason, "alert", ALERT_BLOCK_S, now)
                body, offer = f"{body} Blocked for 1 h (block #{block.id}; unblock from the tray menu).", None
            alert = Alert(finding.kind, finding.severity, finding.title, body, now_us, feature=offer)
            return [self.log.record(alert, snoozed=self.log.muted(now, self.config.tz))]

    # guards

    def _guard_alerts(self, now: datetime) -> list[Alert]:
        """Trip guards that new events break (each makes its block) and announce them."""
        if not GuardBook(self.queries.conn).list():
            return []
        with self.db.atomic("IMMEDIATE"):
            muted = self.log.muted(now, self.config.tz)
            trips = self.guards.check(self.queries.conn, now)
            return [self.log.record(guard_alert(trip, now), snoozed=muted) for trip in trips]


# --- what the budget alerts say ---------------------------------------------------------------


def _scope_and_end(status: BudgetStatus, config: Config) -> tuple[str, str]:
    b = status.budget
    scope = "" if b.scope.is_everything else f" · {b.scope.describe()}"
    if b.period == "day":
        return scope, "by midnight"
    last_day = from_us(status.end_us - 1).astimezone(config.tz)  # None: the system zone
    return scope, f"by {last_day:%a %d %b}"


def guard_alert(trip: Trip, now: datetime) -> Alert:
    block = trip.block
    return Alert("guard", "critical", f"Guard “{trip.guard.name}” tripped: {block.what} blocked",
                 f"{block.reason}. Blocked {block.until_text} (block #{block.id}); unblock from the tray menu "
                 f"or `llmtray unblock {block.id}`.", to_us(now))


def threshold_alert(status: BudgetStatus, threshold: int, now: datetime, config: Config) -> Alert:
    """`Budget “api” at 80%` — `$82.10 of $100.00 this month (82%) · feature chat. On pace for …`"""
    b = status.budget
    severity = "critical" if threshold >= 100 else "warning" if threshold >= b.warn_at else "info"
    title = f"Budget “{b.name}” exceeded" if threshold == 100 else f"Budget “{b.name}” at {threshold}%"
    scope, by = _scope_and_end(status, config)
    body = (f"{format_usd(status.spent_nanos)} of {format_usd(b.limit_nanos)} {PERIOD_PHRASE[b.period]} "
            f"({status.percent:.0f}%){scope}. On pace for {format_usd(status.projected_nanos)} {by}.")
    return Alert("threshold", severity, title, body, to_us(now), b.name, b.period, status.start_us)


def pace_alert(status: BudgetStatus, now: datetime, config: Config) -> Alert:
    b = status.budget
    scope, by = _scope_and_end(status, config)
    body = (f"Projected {format_usd(status.projected_nanos)} {by} against a {format_usd(b.limit_nanos)} limit; "
            f"{format_usd(status.spent_nanos)} spent {PERIOD_PHRASE[b.period]}{scope}.")
    return Alert("pace", "warning", f"Budget “{b.name}” on pace to exceed", body, to_us(now), b.name, b.period,
                 status.start_us)


# --- the thread ---------------------------------------------------------------------------------


class _BudgetWatch:
    """Notices budget rows changed by any process: the whole table compared every `interval`."""

    def __init__(self, evaluator: Evaluator, interval: float):
        self._evaluator, self._interval = evaluator, interval
        self._seen = self._read()
        self.next_poll = time.monotonic() + interval

    def _read(self) -> object:
        try:
            return load_budgets(self._evaluator.queries.conn)
        except sqlite3.Error:  # locked or failing: compared again at the next poll
            return None

    def changed(self, now: float) -> bool:
        if now < self.next_poll:
            return False
        self.next_poll = now + self._interval
        current = self._read()
        if current is None or current == self._seen:
            return False
        self._seen = current
        return True


class _TeamAlerts:
    """The alerts the other machines of a team record (each alert is recorded once, by the
    machine whose check claimed it): read by id, every `BUDGET_POLL_S`."""

    def __init__(self, evaluator: Evaluator):
        self.log = evaluator.log
        self._evaluator = evaluator
        self._seen = self.log.last_id()  # what was there before this machine started watching
        self.next_poll = time.monotonic()

    def new(self, next_poll: float) -> list[Alert]:
        self.next_poll = next_poll
        own = self._evaluator.recorded
        fresh = self.log.after(self._seen)
        if fresh:
            self._seen = fresh[-1].id or self._seen
        return [a for a in fresh if a.id not in own]


@dataclass
class _Work:
    """What has piled up since the last pass (commits are merged, not replayed one by one)."""

    check: bool = False
    live: bool = False
    stop: bool = False


class BudgetMonitor:
    """Runs `Evaluator` on its own thread and connection, fed by `on_commit` (called on the
    writer thread; returns at once). Passes are coalesced and at most one per `min_interval_s`
    (leading edge at once, trailing edge later), so a flood of commits costs a few passes a
    second. Notifications go through a 30-second throttle to the sinks; every alert recorded
    (snoozed ones too) is also given to `on_alert` for the window's alert log.

    The caller owns the sinks (closes them after `stop()`)."""

    def __init__(self, db_path: Path, config: Config, sinks: Sequence[AlertSink] = (), *,
                 clock: Callable[[], datetime] | None = None, min_interval_s: float = 1.0,
                 notify_interval_s: float = 30.0, on_alert: Callable[[Alert], None] | None = None,
                 detectors: Detectors | None = None, budget_poll_s: float = BUDGET_POLL_S,
                 on_budgets_changed: Callable[[], None] | None = None):
        self.db_path = db_path
        self.config = config
        self.sinks = list(sinks)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.min_interval_s = min_interval_s
        self.on_alert = on_alert
        self.budget_poll_s = budget_poll_s
        self.on_budgets_changed = on_budgets_changed
        self._detectors = detectors
        self._throttle = NotificationThrottle(notify_interval_s)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None

    # called from other threads

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("monitor already started")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llmtray-budget-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def on_commit(self, committed: Committed) -> None:
        self._queue.put(committed)

    def deliver(self, alert: Alert) -> None:
        """Notify an alert another part already stored in the history (the bill's drift alert,
        `llmtray.billing.drift`) through this monitor's throttle and sinks; muted, it is only kept."""
        self._queue.put(alert)

    def snooze(self, until: datetime | None) -> None:
        """Mute notifications until `until` (None: unmute); persisted, applied on the monitor thread."""
        self._queue.put(_Snooze(until))

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call has been checked (tests, shutdown);
        False when it wasn't (the monitor stopped or could not run, or the timeout passed)."""
        marker = _Sync()
        with self._lock:
            if self._closed:
                return False
            self._queue.put(marker)
        return marker.done.wait(timeout) and marker.checked

    # the monitor thread

    def _run(self) -> None:
        try:
            db = open_db(self.db_path)
        except Exception:
            log.exception("budget monitor could not open %s; no budget alerts this session", self.db_path)
            self._close_queue()
            return
        try:
            evaluator = Evaluator(db, self.config, self._detectors)
            self._loop(evaluator)
        except Exception:
            log.exception("budget monitor stopped by an error")
        finally:
            db.close()
            self._close_queue()

    def _loop(self, evaluator: Evaluator) -> None:
        # config.toml's alerts.quiet_hours is the one place they are set (absent: none)
        self._guarded("setting quiet hours", evaluator.log.set_quiet_hours, *(self.config.quiet_hours or (None,)))
        self._guarded("redelivery", self._redeliver, evaluator)
        work, next_pass = _Work(check=True, live=True), 0.0  # the start check
        budgets = _BudgetWatch(evaluator, self.budget_poll_s)
        team = _TeamAlerts(evaluator) if isinstance(self.db_path, PostgresUrl) else None
        waiting: list[_Sync] = []
        try:
            while not work.stop:
                deadlines = [d for d in (next_pass if work.check else None, self._throttle.next_due(),
                                         budgets.next_poll, team and team.next_poll) if d is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                try:
                    item = self._queue.get(timeout=timeout)
                    while True:  # coalesce everything already queued into one pass
                        self._guarded("a request", self._take, item, work, waiting, evaluator)
                        item = self._queue.get_nowait()
                except queue.Empty:
                    pass
                if budgets.changed(time.monotonic()):
                    work.check = True  # budgets only (`live` stays as it was): no commit, no anomaly
                    if self.on_budgets_changed is not None:
                        self._guarded("a budget listener", self.on_budgets_changed)
                if team is not None and time.monotonic() >= team.next_poll:
                    self._guarded("the team's alerts", self._show_team_alerts, team)
                if work.check and (work.stop or time.monotonic() >= next_pass):  # stop finishes pending work
                    self._guarded("a budget check", self._pass, evaluator, work.live)
                    work.check = work.live = False
                    next_pass = time.monotonic() + self.min_interval_s
                self._guarded("a notification", self._notify, evaluator, self._throttle.due(time.monotonic()))
                if not work.check:
                    for marker in waiting:
                        marker.release(checked=True)
                    waiting.clear()
        finally:
            for marker in waiting:
                marker.release(checked=False)

    def _close_queue(self) -> None:
        """No more work: release whoever waits in `sync` (nothing queued can be checked now)."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Sync):
                    item.release(checked=False)

    def _take(self, item: object, work: _Work, waiting: list[_Sync], evaluator: Evaluator) -> None:
        if item is _STOP:
            work.stop = True
        elif isinstance(item, Committed):
            if not item.accepted:
                return  # only duplicates: nothing changed
            work.check = True
            now_us = to_us(self.clock())
            if item.last_ts_us is not None and item.last_ts_us >= now_us - LIVE_WINDOW_US:
                work.live = True
        elif isinstance(item, _Snooze):
            evaluator.log.snooze(item.until)
        elif isinstance(item, _Sync):
            waiting.append(item)
        elif isinstance(item, Alert):
            if item.id is not None:
                evaluator.recorded.add(item.id)  # recorded here (the bill's drift): not another machine's
            if self.on_alert is not None:
                self._guarded("an alert listener", self.on_alert, item)
            if not evaluator.log.muted(self.clock(), self.config.tz):
                self._notify(evaluator, self._throttle.offer(item, time.monotonic()))

    def _show_team_alerts(self, team: _TeamAlerts) -> None:
        """Alerts other machines recorded: on this machine's screen too (per-machine sinks)."""
        local = [sink for sink in self.sinks if sink.per_machine]
        for alert in team.new(time.monotonic() + self.budget_poll_s):
            if self.on_alert is not None:
                self._guarded("an alert listener", self.on_alert, alert)
            if alert.snoozed or team.log.muted(self.clock(), self.config.tz):
                continue
            for sink in local:
                self._guarded(f"alert sink {type(sink).__name__}", sink.send, alert)

    def _pass(self, evaluator: Evaluator, anomalies: bool) -> None:
        for alert in evaluator.check(self.clock(), anomalies=anomalies):
            if self.on_alert is not None:
                self._guarded("an alert listener", self.on_alert, alert)
            if not alert.snoozed:
                self._notify(evaluator, self._throttle.offer(alert, time.monotonic()))

    def _redeliver(self, evaluator: Evaluator) -> None:
        if not self.sinks:
            return
        since = to_us(self.clock() - timedelta(microseconds=REDELIVER_US))
        for alert in evaluator.log.undelivered(since):
            self._notify(evaluator, self._throttle.offer(alert, time.monotonic()))

    def _notify(self, evaluator: Evaluator, notification: Notification | None) -> None:
        if notification is None or not self.sinks:
            return
        for sink in self.sinks:
            self._guarded(f"alert sink {type(sink).__name__}", sink.send, notification.alert)
        evaluator.log.mark_delivered([a.id for a in notification.covers if a.id is not None])

    @staticmethod
    def _guarded(what: str, fn: Callable[..., object], *args: object) -> None:
        """Run one step; a failure (a locked database, a sink's bug) is logged, never fatal."""
        try:
            fn(*args)
        except Exception:
            log.exception("budget monitor: %s failed", what)


@dataclass(frozen=True)
class _Snooze:
    until: datetime | None


@dataclass
class _Sync:
    done: threading.Event = field(default_factory=threading.Event)
    checked: bool = False

    def release(self, *, checked: bool) -> None:
        self.checked = checked
        self.done.set()


_STOP = object()
