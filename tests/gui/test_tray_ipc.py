"""The tray's menu, tooltip and gauge from real spend data; single-instance hand-over."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import QLockFile

from llmtray.core.events import parse_event
from llmtray.core.status import summary
from llmtray.core.store import Store
from llmtray.gui.ipc import SingleInstance
from llmtray.gui.tray import SummaryWorker, Tray, TrayActions, budget_line, tooltip_text


@pytest.fixture
def calls():
    return []


@pytest.fixture
def tray(qtbot, data_dir: Path, calls):
    actions = TrayActions(*(lambda *a, n=n: calls.append((n, a)) for n in
                            ("open", "import", "budgets", "settings", "snooze", "proxy", "snippet", "quit",
                             "unblock", "otel")))
    worker = SummaryWorker(data_dir / "llmtray.db", UTC, lambda q, now: summary(q, now))
    t = Tray(actions, worker)
    yield t
    t.close()


def test_menu_shows_spend_and_runs_every_action(qtbot, tray, data_dir, calls):
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "12.5"})], "api")
    store.close()
    tray.request_refresh()
    qtbot.waitUntil(lambda: tray.summary.get("today_usd") == "12.5", timeout=5000)
    texts = [a.text() for a in tray.menu.actions() if a.text()]
    assert texts[0] == "Today: $12.50"
    assert texts[1].startswith("This month: $12.50 (projected $")
    assert tray.icon.toolTip().startswith("llmtray — today $12.50 · month $12.50")
    for text, name in (("Open dashboard", "open"), ("Import usage…", "import"), ("Budgets…", "budgets"),
                       ("Settings…", "settings"), ("Copy proxy URL", "proxy"), ("Copy hook snippet", "snippet"),
                       ("For 1 hour", "snooze"), ("Resume alerts", "snooze"), ("Quit llmtray", "quit"),
                       ("Claude Code", "otel")):
        tray.action(text).trigger()
        assert calls[-1][0] == name
    assert calls[-1] == ("otel", ("claude-code",)) and ("snooze", (None,)) in calls


def test_budget_lines_and_tooltip_limit():
    b = {"name": "team", "period": "month", "limit_usd": "100", "spent_usd": "85", "percent": "85.0",
         "projected_usd": "140", "state": "warning"}
    assert budget_line(b) == "team: 85% of $100.00 (month) · on pace for $140.00"
    long = {"today_usd": "1", "month_usd": "2", "budgets": [dict(b, name="x" * 200)]}
    text = tooltip_text(long)
    assert len(text) == 127 and text.endswith("…")


def test_gauge_follows_the_most_used_budget(qtbot, tray):
    tray._apply({"today_usd": "1", "month_usd": "5", "projected_month_usd": "9", "budgets": [
        {"name": "a", "period": "day", "limit_usd": "10", "percent": "20", "state": "ok"},
        {"name": "b", "period": "month", "limit_usd": "5", "percent": "104", "state": "exceeded"}]})
    image = tray.icon.icon().pixmap(24, 24).toImage()
    centre = image.pixelColor(12, 10)  # the white '!' of an exceeded gauge
    assert centre.red() > 230 and centre.green() > 230
    assert "b 104%" in tray.icon.toolTip()


def test_no_tray_gives_up_after_retries_and_says_so(qtbot, tray):
    tray.retry_limit = 2
    tray._retry.setInterval(10)
    with qtbot.waitSignal(tray.unavailable, timeout=5000):
        tray.show()
    assert not tray.visible


def test_second_start_hands_over_to_the_first(qtbot, tmp_path):
    first = SingleInstance(tmp_path / "run", tmp_path / "data")
    assert first.claim()
    second = SingleInstance(tmp_path / "run", tmp_path / "data")
    with qtbot.waitSignal(first.show_requested, timeout=5000):
        assert second.claim() is False
    other = SingleInstance(tmp_path / "run2", tmp_path / "other-data")  # another data dir: independent
    assert other.claim()
    for s in (first, second, other):
        s.release()


def test_stale_lock_after_kill_does_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # a lock file left by a process that no longer exists (as after kill -9)
    (run / "llmtray.lock").write_text(f"{2**22 + 12345}\nllmtray\n{os.uname().nodename}\n")
    inst = SingleInstance(run, tmp_path / "data")
    assert inst.claim()
    assert QLockFile(str(run / "llmtray.lock")).tryLock(0) is False  # we hold it now
    inst.release()


def test_a_refresh_retexts_the_spend_lines_and_keeps_every_action(qtbot, tray):
    """Opening the menu asks for a refresh that lands while it is open: rebuilding the menu then
    deleted the entries under the pointer and closed it (issue #17, the tray-only start)."""
    entries = {text: tray.action(text) for text in ("Open dashboard", "Snooze alerts", "For 1 hour", "Quit llmtray")}
    budget = {"name": "a", "period": "day", "limit_usd": "10", "percent": "20", "state": "ok"}
    tray._apply({"today_usd": "1", "month_usd": "5", "projected_month_usd": "9", "budgets": [budget]})
    tray._apply({"today_usd": "2", "month_usd": "6", "projected_month_usd": "9", "budgets": [budget, dict(budget, name="b")]})
    for text, action in entries.items():
        assert tray.action(text) is action
    texts = [a.text() for a in tray.menu.actions()]
    assert texts[:5] == ["Today: $2.00", "This month: $6.00 (projected $9.00)", "",
                         "a: 20% of $10.00 (day)", "b: 20% of $10.00 (day)"]
    assert texts[5:7] == ["", ""] and texts[7] == "Open dashboard"  # spend lines | blocks (none) | actions


def test_a_tiny_spend_is_not_shown_as_zero():
    from llmtray.gui.tray import money

    assert money("0.000025") == "<$0.0001"  # ten gpt-4o tokens read "$0.0000"
    assert (money("0"), money("0.0042"), money("12.5")) == ("$0.00", "$0.0042", "$12.50")
    assert tooltip_text({"today_usd": "0.000025", "month_usd": "3"}).startswith("llmtray — today <$0.0001 · month $3.00")


def test_menu_lists_active_blocks_with_unblock(qtbot, tray, data_dir, calls):
    import sqlite3

    from llmtray.core.blocks import BlockBook
    from llmtray.core.budgets import Scope

    store = Store.open(data_dir / "llmtray.db")
    store.close()
    conn = sqlite3.connect(data_dir / "llmtray.db")
    book = BlockBook(conn)
    first = book.add(Scope(feature="agent"), "loop")
    second = book.add(Scope(model="gpt-4o", tags=(("team", "a"),)), "pricey", for_s=3600)
    conn.close()
    tray.request_refresh()
    qtbot.waitUntil(lambda: len(tray.summary.get("blocks", [])) == 2, timeout=5000)
    until = datetime.fromtimestamp(second.until_us / 1e6).strftime("%H:%M")
    titles = [a.text() for a in tray.menu.actions() if a.menu() is not None]
    assert titles[:2] == ["Blocked: feature agent (until unblocked)",
                          f"Blocked: model gpt-4o, tag team=a (until {until})"]
    unblock = [a for a in tray._all_actions(tray.menu) if a.text() == "Unblock"]
    unblock[1].trigger()
    assert calls[-1] == ("unblock", (second.id,))
    unblock[0].trigger()
    assert calls[-1] == ("unblock", (first.id,))
