"""The dashboard window against independently computed `core.queries` results.

Every chart is read back through `plotted()` (what its plot items hold) and compared with the
numbers a fresh `Queries` on its own connection computes for the same filters — so a view that
ignores a filter, or a chart that draws the wrong series, fails here.
"""

from __future__ import annotations

import time

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from llmtray.config import Config
from llmtray.core import periods
from llmtray.core.commits import Committed
from llmtray.core.db import open_db
from llmtray.core.events import parse_event
from llmtray.core.money import format_usd
from llmtray.core.queries import Filters, Queries, Totals
from llmtray.core.store import Store
from llmtray.gui.bridge import CommitBridge
from llmtray.gui.events_table import COLUMNS
from llmtray.gui.views import ModelSpend
from llmtray.paths import Paths

RANGE_DAYS = {"7d": 7, "30d": 30, "90d": 90}


@pytest.fixture
def queries(demo_db: Path):
    db = open_db(demo_db)
    yield Queries(db.connection(), None)
    db.close()


def expected_window(range_key: str) -> tuple:
    """Local days and UTC bounds of a "last N days" range, computed here rather than by the app."""
    today = periods.today(None)
    first = today - timedelta(days=RANGE_DAYS[range_key] - 1)
    return first, today, periods.midnight_us(first, None), periods.midnight_us(today + timedelta(days=1), None)


def folded(rows: list[tuple[str, Totals]], limit: int = 8) -> list[tuple[str, float]]:
    if len(rows) > limit:
        rest = Totals()
        for _, t in rows[limit - 1:]:
            rest.add(t)
        rows = [*rows[:limit - 1], (f"other ({len(rows) - limit + 1})", rest)]
    return [(name, t.cost_nanos / 1e9) for name, t in rows]


def assert_views_match(window, q: Queries, f: Filters, range_key: str, breakdown: str = "feature") -> None:
    first, last, start, end = expected_window(range_key)
    ranged = f.between(start, end)

    daily = q.daily(f, first, last)
    assert window.daily_chart.plotted() == {k: [v / 1e9 for v in vs] for k, vs in daily.series.items()}
    cpr = {i: daily.totals[i] // (daily.requests[i] - daily.unpriced[i]) / 1e9
           for i in range(len(daily.days)) if daily.requests[i] > daily.unpriced[i]}
    assert window.cpr_chart.plotted() == cpr

    spend = ModelSpend(q.by_provider_model(ranged)).by_alias()  # snapshots counted under their alias
    assert window.models_chart.plotted() == folded([(m, t) for _, m, t in spend])
    assert window.breakdown_chart.plotted() == folded([(n or "(none)", t) for n, t in q.by(breakdown, ranged)])
    assert window.tokens_chart.plotted() == [(k, float(v)) for k, v in q.token_breakdown(ranged).items()]
    assert window.latency_chart.plotted() == [(s.model, s.p50, s.p95, s.p99)
                                              for s in q.latency(ranged, limit_models=8)]

    live_start, live_end = window.live_chart._window.start_us, window.live_chart._window.end_us
    assert live_end - live_start == 3_600_000_000
    assert window.live_chart.plotted() == [(m, c / 1e9) for m, c, _ in q.per_minute(live_start, live_end, f)]

    kpis = window.kpis.values()
    assert kpis["today"] == format_usd(q.spend_in_period("day", f)[0].cost_nanos)
    assert kpis["month"] == format_usd(q.spend_in_period("month", f)[0].cost_nanos)
    in_range = q.totals(ranged)
    cpr_total = in_range.cost_per_request_nanos
    assert kpis["cost_per_request"] == (f"${cpr_total / 1e9:.4f}" if cpr_total is not None else "—")
    unpriced = [r for r in q.unpriced_models(ranged)]
    assert window.unpriced.isVisibleTo(window) == bool(unpriced)
    for _, model, _ in unpriced:
        assert model in window.unpriced.text()


def apply_and_wait(qtbot, window, change) -> None:
    with qtbot.waitSignal(window.settled, timeout=20_000):
        change()


@pytest.fixture(scope="module")
def shared(qapp, demo_db_template):
    """One window for the read-only tests (building one per test would dominate the run)."""
    from llmtray.gui.dashboard import Dashboard
    from llmtray.gui.query_worker import Sources

    window = Dashboard(Sources(demo_db_template, None), base_url="http://127.0.0.1:8787", can_import=False)
    try:
        window.show()
        # polled, not QSignalSpy: a spy on a Python-declared signal never fires on PySide6 6.11
        deadline = time.monotonic() + 20
        while not window.is_settled() and time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.01)
        assert window.is_settled(), f"no first refresh: {window.status.text()}"
        yield window
    finally:  # stop the query threads even if the window never settled (a running QThread must not be collected)
        window.shutdown()
        window.close()
        window.deleteLater()


@pytest.fixture
def window(qtbot, shared):
    """The shared window back at its defaults: last 30 days, no filters, spend by feature."""
    def reset() -> None:
        shared.filter_bar.blockSignals(True)
        shared.filter_bar.select("range", "30d")
        shared.filter_bar.reset()
        shared.filter_bar.blockSignals(False)
        picker = shared.breakdown_chart.picker
        picker.blockSignals(True)
        picker.setCurrentIndex(picker.findData("feature"))
        picker.blockSignals(False)
        shared._filters_changed()

    apply_and_wait(qtbot, shared, reset)
    return shared


@pytest.fixture
def template_queries(demo_db_template: Path):
    db = open_db(demo_db_template)
    yield Queries(db.connection(), None)
    db.close()


def test_empty_database_shows_onboarding(qtbot, make_dashboard, tmp_path):
    window = make_dashboard(tmp_path / "empty" / "llmtray.db")
    assert window.pages.currentWidget() is not window.tabs
    assert window.onboarding.isVisibleTo(window)
    assert not window.kpis.isVisibleTo(window)
    assert "http://127.0.0.1:8787/proxy/openai/v1" in window.onboarding.proxy.text.text()
    assert "lt.instrument(" in window.onboarding.hook.text.text()
    assert not window.onboarding.import_button.isEnabled()  # no import dialog passed in
    with qtbot.waitSignal(window.demo_requested, timeout=1000):
        window.onboarding.demo_button.click()
    window.onboarding.proxy.copy.click()
    assert QGuiApplication.clipboard().text() == window.onboarding.proxy.text.text()


def test_demo_data_every_view_matches_queries(window, template_queries):
    queries = template_queries
    assert window.pages.currentWidget() is window.tabs
    assert window.kpis.values()["budget"] == "no budget"
    assert_views_match(window, queries, Filters(), "30d")
    assert window.daily_chart.plotted(), "demo data must draw bars"
    assert window.unpriced.isVisibleTo(window)  # the demo's self-hosted model has no price


@pytest.mark.parametrize("pick", [
    {"provider": "anthropic"},
    {"model": "gpt-4o-mini-2024-07-18"},
    {"feature": "chat-assistant", "source": "hook"},
    {"tag": ("plan", "pro")},
    {"range": "7d", "provider": "openai"},
    {"range": "90d", "source": "proxy"},
])
def test_filters_change_every_chart(qtbot, window, template_queries, pick):
    queries = template_queries
    before = window.models_chart.plotted()
    for name, value in pick.items():
        apply_and_wait(qtbot, window, lambda: window.filter_bar.select(name, value))
    values = {k: v for k, v in pick.items() if k != "range"}
    f = Filters(**{k: (v,) for k, v in values.items() if k != "tag"},
                tags=(values["tag"],) if "tag" in values else ())
    assert_views_match(window, queries, f, pick.get("range", "30d"))
    assert window.models_chart.plotted() != before


def test_breakdown_switch_by_user_and_tag(qtbot, window, template_queries):
    queries = template_queries
    picker = window.breakdown_chart.picker
    for dim in ("user", "tag:plan"):
        apply_and_wait(qtbot, window, lambda: picker.setCurrentIndex(picker.findData(dim)))
        _, _, start, end = expected_window("30d")
        expected = folded([(n or "(none)", t) for n, t in queries.by(dim, Filters(start_us=start, end_us=end))])
        assert window.breakdown_chart.plotted() == expected


@pytest.fixture
def ingest(demo_db: Path):
    """The real embedded ingest service (HTTP API + writer) on a free port, on the demo copy."""
    from llmtray.ingest.service import IngestService

    here = demo_db.parent
    service = IngestService(Paths(here, here, here), Config(), port=0)
    yield service
    service.stop()


def test_posted_events_reach_kpis_live_view_and_table_within_a_second(qtbot, make_dashboard, demo_db, queries,
                                                                       ingest):
    """Events go through the real ingest API over a socket; its writer's commit notice reaches
    the window through the bridge signal, as in the app."""
    window = make_dashboard(demo_db)
    bridge = CommitBridge()
    bridge.committed.connect(window.on_committed)
    ingest.add_listener(bridge.notify)
    ingest.start()
    live_before = sum(c for _, c in window.live_chart.plotted())
    events = [{"provider": "openai", "model": "gpt-4o-mini", "feature": "chat-assistant",
               "cost_usd": f"{1.25 + i}", "ts": datetime.now(UTC).timestamp()} for i in range(3)]
    with httpx.Client(timeout=10) as client:
        response = client.post(f"{ingest.url}/v1/events", json=events,
                               headers={"Authorization": f"Bearer {ingest.token}"})
    assert response.json() == {"accepted": 3, "duplicates": 0}  # answered after the commit
    expected_today = format_usd(queries.spend_in_period("day")[0].cost_nanos)
    assert window.kpis.values()["today"] != expected_today
    qtbot.waitUntil(lambda: window.kpis.values()["today"] == expected_today, timeout=1000)
    qtbot.waitUntil(lambda: sum(c for _, c in window.live_chart.plotted()) >= live_before + 6.75 - 1e-9,
                    timeout=1000)
    qtbot.waitUntil(lambda: window.events_model._rows[0]["cost_nanos"] == 3_250_000_000, timeout=1000)


def test_commits_from_a_writer_thread_reach_the_window(qtbot, make_dashboard, demo_db, queries):
    """Any other writer (an import, the demo feed) announces commits the same way, from its thread."""
    window = make_dashboard(demo_db)
    bridge = CommitBridge()
    bridge.committed.connect(window.on_committed)
    event = parse_event({"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "cost_usd": "4.5"})

    def write() -> None:
        store = Store.open(demo_db)
        try:
            result = store.add([event], "import:openrouter")
        finally:
            store.close()
        bridge.notify(Committed(result.accepted, result.duplicates, result.first_ts_us, result.last_ts_us,
                                frozenset({"import:openrouter"})))

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    expected_month = format_usd(queries.spend_in_period("month")[0].cost_nanos)
    qtbot.waitUntil(lambda: window.kpis.values()["month"] == expected_month, timeout=1000)


def test_events_table_sorts_in_the_database(qtbot, window, template_queries):
    queries = template_queries
    model = window.events_model
    qtbot.waitUntil(lambda: model.rowCount() > 0, timeout=5000)
    _, _, start, end = expected_window("30d")
    newest = queries.conn.execute(
        "SELECT id FROM event WHERE ts >= ? AND ts < ? ORDER BY ts DESC, id DESC LIMIT 1", (start, end)).fetchone()
    assert model._rows[0]["id"] == newest[0]
    cost_col = [key for _, key in COLUMNS].index("cost_nanos")
    with qtbot.waitSignal(model.rowsInserted, timeout=5000):
        window.events.view.sortByColumn(cost_col, Qt.SortOrder.DescendingOrder)
    top = queries.conn.execute("SELECT max(cost_nanos) FROM event WHERE ts >= ? AND ts < ?", (start, end)).fetchone()
    assert model._rows[0]["cost_nanos"] == top[0]
    costs = [r["cost_nanos"] if r["cost_nanos"] is not None else -1 for r in model._rows]
    assert costs == sorted(costs, reverse=True)
    with qtbot.waitSignal(model.rowsInserted, timeout=5000):
        window.events.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)


def test_top_budget_and_alert_history(qtbot, make_dashboard, demo_db, queries):
    """With the budgets and alert log of this build, the strip shows the most-used budget and
    the Alerts tab the history — both read by the worker, like every other view."""
    from llmtray.core.alerts import Alert, AlertLog
    from llmtray.core.budgets import Budget, BudgetBook, Scope, budget_entries

    db = open_db(demo_db)
    BudgetBook(db).add(Budget("team", 10 * 10**9, "month"))
    BudgetBook(db).add(Budget("openai", 10**12, "day", Scope(provider="openai")))
    AlertLog(db).record(Alert("threshold", "warning", "team: 80% of $10.00 this month", "spent $8.10",
                              ts_us=int(datetime.now(UTC).timestamp() * 1e6), budget="team"), snoozed=False)
    db.close()
    window = make_dashboard(demo_db, budget_entries=budget_entries, alert_log=AlertLog)
    month = queries.spend_in_period("month")[0].cost_nanos
    percent = month * 100 / (10 * 10**9)
    assert window.kpis.values()["budget"] == f"{float(round(percent, 1)):.0f}%"
    assert "team:" in window.kpis.cards["budget"].sub.text()
    assert window.alerts.count() == 1
    assert window.tabs.tabText(2) == "Alerts (1)"
    assert window.alerts.table.item(0, 2).text() == "team: 80% of $10.00 this month"


def test_hidden_window_reads_nothing_until_shown(qtbot, make_dashboard, demo_db, queries):
    window = make_dashboard(demo_db)
    window.hide()
    refreshes = window.refresh_count
    store = Store.open(demo_db)
    try:
        result = store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "2"})], "api")
    finally:
        store.close()
    window.on_committed(Committed(result.accepted, 0, result.first_ts_us, result.last_ts_us, frozenset({"api"})))
    qtbot.wait(300)
    assert window.refresh_count == refreshes  # nothing ran while hidden
    expected_today = format_usd(queries.spend_in_period("day")[0].cost_nanos)
    with qtbot.waitSignal(window.settled, timeout=10_000):
        window.show()
    assert window.kpis.values()["today"] == expected_today


def test_first_events_fill_the_pickers(qtbot, make_dashboard, tmp_path):
    """Onboarding gives way to the charts, and the filter pickers learn the new values at once."""
    db = tmp_path / "new" / "llmtray.db"
    window = make_dashboard(db)
    assert window.filter_bar.pickers["model"].count() == 1  # just "All models"
    store = Store.open(db)
    try:
        result = store.add([parse_event({"provider": "mistral", "model": "mistral-large-latest",
                                         "input_tokens": 1000, "output_tokens": 100})], "hook")
    finally:
        store.close()
    window.on_committed(Committed(result.accepted, 0, result.first_ts_us, result.last_ts_us, frozenset({"hook"})))
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.tabs, timeout=5000)
    qtbot.waitUntil(lambda: window.filter_bar.pickers["model"].findData("mistral-large-latest") > 0, timeout=5000)
    assert window.filter_bar.isVisibleTo(window) and window.kpis.isVisibleTo(window)


def test_an_import_refreshes_the_window(qtbot, make_dashboard, demo_db, queries):
    """The import dialog writes through its own Store and reports each file it stored."""
    from llmtray.importers.engine import ImportResult

    window = make_dashboard(demo_db)
    store = Store.open(demo_db)
    try:
        result = store.add([parse_event({"provider": "deepseek", "model": "deepseek-chat", "cost_usd": "3"})],
                           "import:openrouter")
    finally:
        store.close()
    window.on_imported(ImportResult(demo_db, "openrouter", "OpenRouter export", imported=result.accepted))
    expected_month = format_usd(queries.spend_in_period("month")[0].cost_nanos)
    qtbot.waitUntil(lambda: window.kpis.values()["month"] == expected_month, timeout=5000)
    qtbot.waitUntil(lambda: window.filter_bar.pickers["model"].findData("deepseek-chat") > 0, timeout=5000)


def test_onboarding_opens_the_import_dialog(qtbot, make_dashboard, tmp_path):
    from llmtray.gui.app import WindowActions
    from llmtray.gui.import_dialog import ImportDialog
    from llmtray.gui.lazy_window import LazyWindow

    data = tmp_path / "fresh"
    window = make_dashboard(data / "llmtray.db")
    lazy = LazyWindow(lambda: window)
    lazy.get()
    actions = WindowActions(lazy, Paths(data, data, data), ImportDialog)
    window.import_requested.connect(actions.open_import)
    window.onboarding.import_button.setEnabled(True)  # the app enables it when the dialog exists
    window.onboarding.import_button.click()
    dialogs = window.findChildren(ImportDialog)
    assert len(dialogs) == 1 and dialogs[0].isVisible()
    dialogs[0].close()


def test_the_warning_strip_names_calls_without_usage_apart_from_unpriced_models(make_dashboard, tmp_path: Path):
    """#17 item 9: a stream without `include_usage` is out of the totals and said why, not $0.00."""
    from llmtray.core.pricing import Pricer

    db = tmp_path / "llmtray.db"
    store = Store(open_db(db), Pricer())
    now = datetime.now(UTC)
    store.add([parse_event({"id": "s1", "ts": now.isoformat(), "provider": "openai", "model": "gpt-4o-mini",
                            "stream": True, "tags": {"llmtray.usage": "missing"}}),
               parse_event({"id": "s2", "ts": now.isoformat(), "provider": "openai", "model": "gpt-4o-mini",
                            "input_tokens": 1000, "output_tokens": 100}),
               parse_event({"id": "u1", "ts": now.isoformat(), "provider": "vllm", "model": "house-ft",
                            "input_tokens": 10})], "hook")
    store.close()
    window = make_dashboard(db)
    assert window.unpriced.isVisibleTo(window)
    text = window.unpriced.text()
    assert "1 request to 1 model without a price: <b>vllm/house-ft</b> (1)" in text
    assert "1 request to 1 model reported no usage" in text and "<b>openai/gpt-4o-mini</b> (1)" in text
    assert "include_usage" in text
