"""A budget crossed in team mode: every watching machine shows it on its own screen; the team's
webhook, email and history hear it once (claimed in the database)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from llmtray.config import Config
from llmtray.core import dburl
from llmtray.core.alerts import AlertLog
from llmtray.core.budgets import Budget, BudgetBook
from llmtray.core.db import open_db
from llmtray.core.monitor import BudgetMonitor
from llmtray.core.store import Store
from tests.core.budget_kit import RecordingSink, add, event

USD = 1_000_000_000


class ScreenSink(RecordingSink):
    per_machine = True  # as the app's desktop notifications


def test_a_crossing_shows_on_every_machine_and_reaches_the_team_sinks_once(team_url):
    now = datetime.now(UTC)
    machines = [dburl.resolve(team_url, None, f"m{i}") for i in range(3)]
    store = Store.open(machines[0])
    BudgetBook(store.db).add(Budget("team", 10 * USD, "month"))
    screens = [ScreenSink() for _ in machines]
    hooks = [RecordingSink() for _ in machines]  # a webhook each: the team's channel, heard once
    monitors = [BudgetMonitor(url, Config(), [screen, hook], clock=lambda: datetime.now(UTC), budget_poll_s=0.2,
                              notify_interval_s=0.0)
                for url, screen, hook in zip(machines, screens, hooks)]
    for monitor in monitors:
        monitor.start()
    for monitor in monitors:  # watching: what others record from now on is theirs to show
        assert monitor.sync(20)
    try:
        notice = add(store, [event(now - timedelta(minutes=1), "12", feature="chat")])  # over the limit
        for monitor in monitors:  # every machine's writer would tell its monitor of its own commits;
            monitor.on_commit(notice)  # here all three check at once: only one may claim the crossing
        for screen in screens:
            assert screen.wait_for(2), "a watching machine never showed the crossing"
        time.sleep(1.0)  # a duplicate would arrive within a few polls
        expected = ["Budget “team” exceeded", "Spending spike: $12.00 in 15 min"]
        for screen in screens:  # each machine: the crossing and the spike, once each
            assert sorted(a.title for a in screen.sent) == expected
        assert sorted(a.title for h in hooks for a in h.sent) == expected  # the team's channel: once in all
    finally:
        for monitor in monitors:
            monitor.stop()
        store.close()
    db = open_db(machines[0])
    try:
        history = AlertLog(db).history()
        assert sorted(a.title for a in history) == ["Budget “team” exceeded", "Spending spike: $12.00 in 15 min"]
    finally:
        db.close()
