"""The app on a team's PostgreSQL: other machines' writes appear by themselves, an unreachable
server is said plainly (last figures kept) and recovered from without a restart.

Everything is real: the session's PostgreSQL, other "machines" writing through their own Store
with their own machine tag, and — for the outage — a TCP relay in front of that server that the
test cuts and restores (`tcp_proxy.py`), so connections really die mid-stream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields, replace
from datetime import UTC

import pytest
from PySide6.QtCore import Qt, QTimer

from llmtray.core import dburl
from llmtray.core.db import open_db
from llmtray.core.events import parse_event
from llmtray.core.money import format_usd
from llmtray.core.queries import Filters, Queries
from llmtray.core.status import summary
from llmtray.core.store import Store
from llmtray.gui.connection import UNREACHABLE
from llmtray.gui.events_table import MACHINE_COLUMN
from llmtray.gui.team_watch import TeamWatch, change_mark
from llmtray.gui.tray import SummaryWorker, Tray, TrayActions
from tests.gui.tcp_proxy import CuttableProxy

POLL_MS = 400  # the app polls every 2 s; a test need not wait that long for each step


@pytest.fixture
def team_url(pg_server):
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


def record(url: str, machine: str, cost_usd: str, model: str = "gpt-4o") -> None:
    """One call recorded by another machine: its own Store, its own machine tag."""
    store = Store.open(replace(dburl.parse(url), machine=machine))
    try:
        store.add([parse_event({"provider": "openai", "model": model, "cost_usd": cost_usd})], "sdk")
    finally:
        store.close()


def today_total(url: str) -> str:
    """Today's spend as a fresh connection of the test's own computes it."""
    db = open_db(dburl.parse(url))
    try:
        return format_usd(Queries(db.connection(), None).spend_in_period("day", Filters())[0].cost_nanos)
    finally:
        db.close()


def watched_dashboard(make_dashboard, url: str, qtbot) -> tuple[object, TeamWatch]:
    """A dashboard on `url` wired to a watch as app.py wires them (`watch_team_database`)."""
    window = make_dashboard(dburl.parse(url))
    watch = TeamWatch(dburl.parse(url), poll_ms=POLL_MS)
    watch.changed.connect(window.on_remote_change)
    watch.state_changed.connect(window.set_connection_state)
    loaded = window.refresh_count
    watch.start()  # its first mark refreshes once: a write between the window's read and it isn't lost
    qtbot.waitUntil(lambda: window.refresh_count >= loaded + 2 and window.is_settled(), timeout=15_000)
    return window, watch


@pytest.mark.both_backends
def test_change_mark_moves_on_insert_delete_and_reprice(database, store):
    """The poll's mark must move for every kind of change another machine can make."""
    conn = store.conn
    before = change_mark(conn)
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "1.5"}),
               parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "2"})], "sdk")
    added = change_mark(conn)
    assert added != before
    first = conn.execute("SELECT min(id) FROM event").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE event SET cost_nanos = cost_nanos + 7, cost_source = 'pricing', pricing_version = 'v2',"
                 " priced_model = 'gpt-4o' WHERE id = ?", (first,))  # what `llmtray reprice` writes
    conn.execute("COMMIT")
    repriced = change_mark(conn)
    assert repriced != added and repriced[0] == added[0]  # no new id: only the cost sum tells
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM event WHERE id = ?", (first,))
    conn.execute("COMMIT")
    deleted = change_mark(conn)
    assert deleted != repriced and deleted[0] == repriced[0]  # the newest row stays: max(id) alone would miss it
    assert change_mark(conn) == deleted  # nothing changed: nothing to refresh


def test_another_machines_events_appear_without_a_local_commit(qtbot, make_dashboard, team_url):
    record(team_url, "box-a", "1.25")
    window, watch = watched_dashboard(make_dashboard, team_url, qtbot)
    try:
        assert window.kpis.values()["today"] == format_usd(1_250_000_000)
        refreshes = window.refresh_count
        record(team_url, "box-b", "2.50")  # no bridge, no commit signal: only the watch can tell
        expected = today_total(team_url)
        assert expected == format_usd(3_750_000_000)
        qtbot.waitUntil(lambda: window.kpis.values()["today"] == expected, timeout=15_000)
        assert window.refresh_count > refreshes
        qtbot.waitUntil(window.is_settled, timeout=15_000)  # the chart lane may still be drawing
        idle = window.refresh_count
        qtbot.wait(3 * POLL_MS)  # nothing written: the poll alone refreshes nothing
        assert window.refresh_count == idle
    finally:
        watch.stop()


def test_unreachable_server_is_said_and_recovered_from(qtbot, make_dashboard, team_url, pg_server, caplog):
    record(team_url, "box-a", "1.00")
    port = int(pg_server.base.rsplit(":", 1)[1])
    proxy = CuttableProxy(port)
    via_proxy = team_url.replace(f":{port}/", f":{proxy.port}/")
    window, watch = watched_dashboard(make_dashboard, via_proxy, qtbot)
    actions = TrayActions(*(lambda *a: None for _ in fields(TrayActions)))
    tray = Tray(actions, SummaryWorker(dburl.parse(via_proxy), UTC, lambda q, now: summary(q, now)))
    watch.state_changed.connect(tray.set_connection_state)
    watch.changed.connect(tray.request_refresh)
    ticks = []
    beat = QTimer()
    beat.timeout.connect(lambda: ticks.append(time.monotonic()))
    beat.start(50)
    try:
        tray.request_refresh()
        qtbot.waitUntil(lambda: tray.icon.toolTip().startswith("llmtray — today $1.00"), timeout=10_000)
        shown = window.kpis.values()
        assert shown["today"] == format_usd(1_000_000_000)
        caplog.set_level(logging.WARNING)
        caplog.clear()

        proxy.cut()
        qtbot.waitUntil(lambda: window.status.text() == UNREACHABLE, timeout=15_000)
        assert window.connection.isVisibleTo(window)
        assert "Team database unreachable — retrying" in window.connection.text()
        assert window.connection.toolTip()  # the driver's reason, for whoever wants it
        assert tray.icon.toolTip() == f"llmtray — {UNREACHABLE}"
        record(team_url, "box-b", "4.00")  # the team goes on writing meanwhile (not through the relay)
        window.refresh()  # a refresh while down (a tick, a filter change) fails quietly
        qtbot.wait(3 * POLL_MS)
        assert window.kpis.values() == shown  # the last figures stay
        assert window.status.text() == UNREACHABLE
        during = [t for t in ticks if t > time.monotonic() - 3 * POLL_MS / 1000]
        assert len(during) >= 5, "the GUI thread stalled while the database was unreachable"
        assert not [r for r in caplog.records if r.exc_info], "an outage is not a traceback"

        proxy.restore()
        expected = today_total(team_url)
        assert expected == format_usd(5_000_000_000)
        qtbot.waitUntil(lambda: window.kpis.values()["today"] == expected, timeout=30_000)
        assert not window.connection.isVisibleTo(window)
        assert window.status.text() != UNREACHABLE
        qtbot.waitUntil(lambda: tray.icon.toolTip().startswith("llmtray — today $5.00"), timeout=15_000)

        # A second outage that nothing but the watch notices: the lanes and the tray keep their
        # connections from before it, dead once it is over. Their first request after it must
        # open new ones, not fail and call the server unreachable again.
        qtbot.waitUntil(window.is_settled, timeout=15_000)
        proxy.cut()
        qtbot.waitUntil(lambda: window.status.text() == UNREACHABLE, timeout=15_000)
        record(team_url, "box-c", "2.00")
        relapses = []
        for lane in (window.live_lane, window.chart_lane):
            lane.lost.connect(relapses.append)
        proxy.restore()
        qtbot.waitUntil(lambda: window.kpis.values()["today"] == format_usd(7_000_000_000), timeout=30_000)
        qtbot.waitUntil(lambda: tray.icon.toolTip().startswith("llmtray — today $7.00"), timeout=15_000)
        qtbot.waitUntil(window.is_settled, timeout=15_000)
        assert relapses == [] and not window.connection.isVisibleTo(window)
    finally:
        beat.stop()
        watch.stop()
        tray.close()
        proxy.cut()


def sessions(pg_server, url: str) -> set[int]:
    """The server sessions open on the test's database (the test's own admin one excluded)."""
    with pg_server.admin() as admin:
        return {pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                                (url.rsplit("/", 1)[1],))}


def test_refreshes_reuse_each_lanes_connection_and_closing_ends_them(qtbot, make_dashboard, team_url, pg_server):
    """Each query thread keeps one server session (a PySide6 thread used to forget Peewee's
    per-thread connection between two slots: the alert history opened a session per refresh,
    and closing the window closed none)."""
    from llmtray.core.alerts import AlertLog

    record(team_url, "box-a", "1.00")
    window = make_dashboard(dburl.parse(team_url), alert_log=AlertLog)
    first = sessions(pg_server, team_url)
    assert first
    seen = set(first)
    for _ in range(4):
        with qtbot.waitSignal(window.settled, timeout=20_000):
            window.refresh()
        seen |= sessions(pg_server, team_url)
    assert seen == first
    window.shutdown()
    qtbot.waitUntil(lambda: not sessions(pg_server, team_url), timeout=5_000)


def queries_on(url: str):  # noqa: ANN201
    db = open_db(dburl.parse(url))
    return db, Queries(db.connection(), None)


def test_breakdown_and_filter_by_machine(qtbot, make_dashboard, team_url):
    for machine, cost in (("box-a", "3.00"), ("box-b", "1.50"), ("box-c", "0.25")):
        record(team_url, machine, cost)
    record(team_url, "box-a", "0.75", model="gpt-4o-mini")
    window = make_dashboard(dburl.parse(team_url))
    db, q = queries_on(team_url)
    try:
        picker = window.breakdown_chart.picker
        offered = [picker.itemText(i) for i in range(picker.count())]
        assert "machine" in offered and "tag: machine" not in offered  # offered once, by its name
        with qtbot.waitSignal(window.settled, timeout=20_000):
            picker.setCurrentIndex(picker.findData("tag:machine"))
        ranged = window._ranged_filters()
        expected = [(name, t.cost_nanos / 1e9) for name, t in q.by("tag:machine", ranged)]
        assert [name for name, _ in expected] == ["box-a", "box-b", "box-c"]
        assert window.breakdown_chart.plotted() == expected

        machines = window.filter_bar.pickers["machine"]
        assert machines.isVisibleTo(window)
        assert [machines.itemData(i) for i in range(1, machines.count())] == ["box-a", "box-b", "box-c"]
        tags = window.filter_bar.pickers["tag"]
        assert all(tags.itemData(i)[0] != "machine" for i in range(1, tags.count()))  # not listed twice
        with qtbot.waitSignal(window.settled, timeout=20_000):
            window.filter_bar.select("machine", "box-a")
        only_a = Filters(tags=(("machine", "box-a"),))
        assert window.filter_bar.filters() == only_a
        today = q.spend_in_period("day", only_a)[0].cost_nanos
        assert today == 3_750_000_000
        assert window.kpis.values()["today"] == format_usd(today)
        assert window.models_chart.plotted() == [("gpt-4o", 3.0), ("gpt-4o-mini", 0.75)]
        qtbot.waitUntil(lambda: window.events_model.fetched() == 2, timeout=10_000)
        table, model = window.events.view, window.events_model
        assert not table.isColumnHidden(MACHINE_COLUMN)
        assert [model.index(r, MACHINE_COLUMN).data() for r in range(2)] == ["box-a", "box-a"]
        header = table.horizontalHeader()
        table.sortByColumn(MACHINE_COLUMN, Qt.SortOrder.AscendingOrder)  # the database can't sort by a tag
        assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (0, Qt.SortOrder.DescendingOrder)
        assert model.fetched() == 2 and model.index(0, MACHINE_COLUMN).data() == "box-a"
    finally:
        db.close()


def test_no_machine_choices_without_machine_tags(make_dashboard, demo_db):
    window = make_dashboard(demo_db)  # a solo user's SQLite history: no event carries the tag
    picker = window.breakdown_chart.picker
    assert picker.findData("tag:machine") < 0
    assert not window.filter_bar.pickers["machine"].isVisibleTo(window)
    assert window.filter_bar.filters().tags == ()
    assert window.events.view.isColumnHidden(MACHINE_COLUMN)


def test_a_window_first_opened_during_an_outage_says_so(qtbot, team_url, tmp_path):
    """The tray-only app builds its window late (`LazyWindow`): it must still learn the state."""
    from llmtray.gui.app import watch_team_database
    from llmtray.gui.dashboard import Dashboard
    from llmtray.gui.lazy_window import LazyWindow
    from llmtray.gui.query_worker import Sources

    lazy = LazyWindow(lambda: Dashboard(Sources(dburl.parse(team_url), None), base_url=None, can_import=False))
    assert watch_team_database(tmp_path / "llmtray.db", lazy, None) is None  # SQLite: the writer's commits suffice
    lazy.set_connection_state("connection refused")
    window = lazy.get()
    qtbot.addWidget(window)
    try:
        assert window.connection.isVisibleTo(window) and window.status.text() == UNREACHABLE
        assert "not loaded yet" in window.connection.text()  # no figures were ever read: none are dated
        lazy.set_connection_state("")
        assert not window.connection.isVisibleTo(window) and window.status.text() == "reconnected"
    finally:
        window.shutdown()


def test_the_app_prepares_a_team_database_before_opening_it(qapp, pg_server, caplog):
    """`prepare_database` ran SQLite's file repair on the URL ('PostgresUrl' has no `with_name`),
    logged an error and left an empty team database without its schema."""
    from llmtray.core import pg
    from llmtray.gui.prepare_db import prepare_database

    url = pg_server.new_database(schema=False)
    try:
        caplog.set_level(logging.ERROR)
        assert prepare_database(qapp, dburl.parse(url)) is None
        assert not caplog.records
        conn = pg.connect(dburl.parse(url))
        try:
            assert pg.schema_version(conn) == pg.SCHEMA_VERSION
        finally:
            conn.close()
    finally:
        pg_server.drop_database(url)


def test_block_actions_survive_an_outage(qtbot, team_url, pg_server):
    """Unblocking from the tray during or after an outage: refused with the reason while the
    server is away, done on a fresh connection once it is back — never lost on a dead one.
    (Lifting, not adding: `BlockBook.add` reads `cursor.lastrowid`, which PostgreSQL's cursor
    lacks — a core issue reported to the lead.)"""
    from llmtray.core.blocks import BlockBook, scope_json
    from llmtray.core.budgets import Scope
    from llmtray.gui.block_actions import BlockActions

    db = open_db(dburl.parse(team_url))
    conn = db.connection()
    conn.execute("BEGIN IMMEDIATE")
    for feature in ("summarize", "translate", "chat"):
        conn.execute("INSERT INTO block (scope, reason, created_by, created) VALUES (?, 'test', 'alert', 1)",
                     (scope_json(Scope(feature=feature)),))
    conn.execute("COMMIT")
    ids = [b.id for b in BlockBook(conn).active()]
    port = int(pg_server.base.rsplit(":", 1)[1])
    proxy = CuttableProxy(port)
    actions = BlockActions(dburl.parse(team_url.replace(f":{port}/", f":{proxy.port}/")))
    try:
        with qtbot.waitSignal(actions.changed, timeout=10_000):
            actions.lift(ids[0])
        proxy.cut()
        proxy.restore()  # the connection it keeps died meanwhile
        with qtbot.waitSignal(actions.changed, timeout=10_000):
            actions.lift(ids[1])
        proxy.cut()
        with qtbot.waitSignal(actions.failed, timeout=20_000) as refused:
            actions.lift(ids[2])
        assert "Could not unblock: the team database is unreachable" in refused.args[0]
        assert [b.id for b in BlockBook(conn).active()] == [ids[2]]  # nothing half done
        proxy.restore()
        with qtbot.waitSignal(actions.changed, timeout=10_000):
            actions.lift(ids[2])
        assert BlockBook(conn).active() == []
    finally:
        actions.close()
        proxy.cut()
        db.close()
