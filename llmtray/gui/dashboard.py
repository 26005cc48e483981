"""The dashboard window: filters, KPI strip, charts, events and alerts, kept live.

Data flow (STYLE practice 8): the writer's commit reaches `on_committed` through the bridge's
signal (on a team database, other machines' writes reach `on_remote_change` from `TeamWatch`);
a throttle turns bursts into at most a few refreshes a second; each refresh is a request to the
two query lanes (live: KPIs, live view, newest events — charts: everything else), whose
answers arrive view by view and go to the widget that shows them. Nothing here runs a query.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QMainWindow, QStackedWidget, QTabWidget,
                               QVBoxLayout, QWidget)

from llmtray.core.commits import Committed
from llmtray.core.damage import DAMAGED
from llmtray.core.dburl import MACHINE_TAG
from llmtray.core.money import format_usd
from llmtray.core.queries import Filters
from llmtray.core.wording import plural
from llmtray.gui import theme
from llmtray.gui.alerts_panel import AlertsPanel
from llmtray.gui.blocks_panel import BlocksPanel
from llmtray.gui.bill_tab import BillTab
from llmtray.gui.charts import (BarListChart, BreakdownChart, CostPerRequestChart, DailySpendChart, LatencyChart,
                                LiveChart, spend_tooltip, top_rows, usd_label)
from llmtray.gui.connection import UNREACHABLE
from llmtray.gui.events_table import EventsModel, EventsTable
from llmtray.gui.filters import FilterBar
from llmtray.gui.kpis import KpiStrip
from llmtray.gui.onboarding import Onboarding
from llmtray.gui.query_worker import QueryLane, Sources
from llmtray.gui.throttle import Throttle
from llmtray.gui.views import (BREAKDOWNS, CHART_VIEWS, LIVE_VIEWS, BlockList, Breakdown,
                               FilterOptions, Kpis, ModelSpend, ViewRequest, resolve_range)

REFRESH_INTERVAL_MS = 250  # at most four refreshes a second, however fast commits come
TICK_MS = 30_000  # while shown: the live view's minute axis moves on even without events
OPTIONS_EVERY_S = 300.0  # filter pickers learn new models/features at most this often (a 90-day scan)


MAX_NOTICES = 4  # the banner keeps the last few problems, so none hides another

class Dashboard(QMainWindow):
    """Signals: settled() — both lanes finished and nothing is waiting (screenshots, tests);
    import_requested(), demo_requested() — from the onboarding panel."""

    settled = Signal()
    import_requested = Signal()
    demo_requested = Signal()

    def __init__(self, sources: Sources, *, base_url: str | None, can_import: bool, title_note: str = "",
                 hook_data_dir: Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("llmtray" + (f" — {title_note}" if title_note else ""))
        self.resize(1400, 900)
        self.setMinimumSize(1100, 700)
        self.setStyleSheet(theme.STYLESHEET)
        theme.configure_pyqtgraph()
        self._tz: tzinfo | None = sources.tz
        self.colors = theme.SeriesColors()
        self._options_at = 0.0
        self._has_data: bool | None = None
        self._stale = False  # commits arrived while hidden
        self.refresh_count = 0

        self.live_lane = QueryLane("live", sources, self)
        self.chart_lane = QueryLane("charts", sources, self)
        for lane in (self.live_lane, self.chart_lane):
            lane.view_ready.connect(self._apply)
            lane.refreshed.connect(self._lane_done)
            lane.failed.connect(self._failed)
            lane.lost.connect(self._lane_lost)
        self._throttle = Throttle(self.refresh, REFRESH_INTERVAL_MS, self)
        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self._on_tick)

        self.events_model = EventsModel(self._tz, self)
        self.events_model.page_wanted.connect(self.live_lane.fetch_page)
        self.live_lane.page_ready.connect(self.events_model.add_page)
        self._build(base_url, can_import, title_note, hook_data_dir)
        self.bill = BillTab(sources.db_path)  # the provider's own bill beside the observed (DESIGN §13)
        self.tabs.addTab(self.bill, "Bill")

    # --- layout ---------------------------------------------------------------------------

    def _build(self, base_url: str | None, can_import: bool, title_note: str, hook_data_dir: Path | None) -> None:
        root = QWidget()
        root.setObjectName("dashboardRoot")
        self.setCentralWidget(root)
        outer = QVBoxLayout(root)
        outer.setContentsMargins(16, 12, 16, 12)
        outer.setSpacing(10)

        header = QHBoxLayout()
        title = QLabel("llmtray")
        title.setObjectName("appTitle")
        header.addWidget(title)
        if title_note:
            badge = QLabel(title_note)
            badge.setStyleSheet(f"background: #eef2ff; color: {theme.ACCENT}; border-radius: 8px; padding: 2px 8px;"
                                " font-weight: 600;")
            header.addWidget(badge)
        header.addSpacing(12)
        self.filter_bar = FilterBar()
        self.filter_bar.changed.connect(self._filters_changed)
        header.addWidget(self.filter_bar)
        header.addStretch(1)
        outer.addLayout(header)
        self._failure: str | None = None  # this round's failed refresh, if any
        self._offline = ""  # why the team database can't be reached; "" while it answers
        self._lost_this_round = False
        self._updated = ""  # when the figures shown were read (they stay while offline)
        self._notices: list[str] = []
        self.status = QLabel("loading…")
        self.status.setObjectName("muted")
        self.status.setMinimumWidth(260)
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.notice = QLabel("")
        self.notice.setObjectName("warning")
        self.notice.setWordWrap(True)
        self.notice.hide()
        outer.addWidget(self.notice)
        self.connection = QLabel("")  # the team database is unreachable: shown only meanwhile
        self.connection.setObjectName("warning")
        self.connection.setWordWrap(True)
        self.connection.hide()
        outer.addWidget(self.connection)
        self.kpis = KpiStrip()
        outer.addWidget(self.kpis)
        self.unpriced = QLabel("")
        self.unpriced.setObjectName("warning")
        self.unpriced.setWordWrap(True)
        self.unpriced.setTextFormat(Qt.TextFormat.RichText)
        self.unpriced.hide()
        outer.addWidget(self.unpriced)
        self.subscription = QLabel("")  # coding agents on a flat plan: their value, apart from spend
        self.subscription.setObjectName("muted")
        self.subscription.setWordWrap(True)
        self.subscription.hide()
        outer.addWidget(self.subscription)

        self.pages = QStackedWidget()
        outer.addWidget(self.pages, 1)
        self.onboarding = Onboarding(base_url, can_import, hook_data_dir)
        self.onboarding.import_requested.connect(self.import_requested)
        self.onboarding.demo_requested.connect(self.demo_requested)
        holder = QWidget()
        centre = QVBoxLayout(holder)
        centre.addStretch(1)
        centre.addWidget(self.onboarding, 0, Qt.AlignmentFlag.AlignHCenter)
        centre.addStretch(2)
        self.pages.addWidget(holder)

        self.tabs = QTabWidget()
        self.tabs.setCornerWidget(self.status, Qt.Corner.TopRightCorner)
        self.pages.addWidget(self.tabs)
        self.tabs.addTab(self._overview(), "Overview")
        self.events = EventsTable(self.events_model)
        self.tabs.addTab(self.events, "Events")
        self.alerts = AlertsPanel(self._tz)
        self.tabs.addTab(self.alerts, "Alerts")
        self.blocks = BlocksPanel(self._tz)
        self.tabs.addTab(self.blocks, "Blocks")
        self.pages.setCurrentIndex(1)

    def _overview(self) -> QWidget:
        page = QWidget()
        grid = QGridLayout(page)
        grid.setContentsMargins(0, 8, 0, 0)
        grid.setSpacing(10)
        self.daily_chart = DailySpendChart(self.colors)
        self.live_chart = LiveChart(self._tz)
        self.cpr_chart = CostPerRequestChart()
        self.latency_chart = LatencyChart()
        self.models_chart = BarListChart("Spend by model", usd_label)
        self.breakdown_chart = BreakdownChart()
        self.breakdown_chart.picker.currentIndexChanged.connect(self._breakdown_changed)
        self.tokens_chart = BarListChart("Tokens", theme.format_count)
        grid.addWidget(self.daily_chart, 0, 0, 1, 2)
        grid.addWidget(self.live_chart, 0, 2)
        grid.addWidget(self.cpr_chart, 1, 0, 1, 2)
        grid.addWidget(self.latency_chart, 1, 2)
        grid.addWidget(self.models_chart, 2, 0)
        grid.addWidget(self.breakdown_chart, 2, 1)
        grid.addWidget(self.tokens_chart, 2, 2)
        for col in range(3):
            grid.setColumnStretch(col, 1)
        grid.setRowStretch(0, 5)
        grid.setRowStretch(1, 4)
        grid.setRowStretch(2, 5)
        return page

    # --- requests -------------------------------------------------------------------------

    def request(self, views: tuple[str, ...]) -> ViewRequest:
        return ViewRequest(self.filter_bar.filters(), self.filter_bar.range_key(), self.breakdown_chart.dimension(),
                           views)

    @Slot()
    def refresh(self) -> None:
        """Ask both lanes for everything (the filter pickers only now and then)."""
        chart_views = CHART_VIEWS
        if time.monotonic() - self._options_at < OPTIONS_EVERY_S:
            chart_views = tuple(v for v in CHART_VIEWS if v != "options")
        else:
            self._options_at = time.monotonic()
        self.live_lane.submit(self.request(LIVE_VIEWS))
        self.chart_lane.submit(self.request(chart_views))

    @Slot(object)
    def on_committed(self, committed: Committed) -> None:
        """The bridge's `committed` signal lands here (GUI thread); refreshes are throttled, and
        while the window is hidden they wait until it is shown (an idle tray reads nothing)."""
        if committed.accepted:
            # an import may bring new models and features, a coding agent's first calls a new
            # source: refresh the pickers too
            picker = self.filter_bar.pickers["source"]
            known = {picker.itemData(i) for i in range(1, picker.count())}
            self._changed(options=any(source.startswith("import:") or source not in known
                                      for source in committed.sources))

    def _changed(self, *, options: bool) -> None:
        if options:
            self._options_at = 0.0
        if self.isVisible():
            self._throttle.trigger()
        else:
            self._stale = True

    @Slot()
    def on_remote_change(self) -> None:
        """`TeamWatch.changed`: events were added, removed or repriced in the team database,
        by another machine or this one (the pickers learn new values on their usual schedule)."""
        self._changed(options=False)

    @Slot(str)
    def set_connection_state(self, why: str) -> None:
        """`why` the team database can't be reached (the driver's words), or "" once it answers
        again. Meanwhile the figures read last stay, dated; the watch (or the next tick) retries,
        and the first answer refreshes everything."""
        was, self._offline = self._offline, why
        if why:
            since = f"from {self._updated}" if self._updated else "not loaded yet"
            self.connection.setText(f"⚠ Team database unreachable — retrying. The figures shown are {since}; "
                                    "they update by themselves when it answers again.")
            self.connection.setToolTip(why)
            self.connection.show()
            self.status.setText(UNREACHABLE)
            self.status.setToolTip(why)
            self.status.setStyleSheet(f"color: {theme.ERROR};")
        elif was:
            self.connection.hide()
            self.status.setText("reconnected")
            self.status.setToolTip("")
            self.status.setStyleSheet("")
            self._changed(options=False)

    @Slot(str)
    def _lane_lost(self, why: str) -> None:
        self._lost_this_round = True
        self.set_connection_state(why)

    @Slot(object)
    def on_imported(self, result: Any) -> None:
        """The import dialog stored a file's rows through its own Store, not the ingest writer
        (`result`: an `ImportResult`): refresh, pickers included — a file can bring new models."""
        if result.imported:
            self._changed(options=True)

    @Slot(object)
    def on_import_removed(self, removal: Any) -> None:
        """The import dialog removed an import (`removal`: a `Removal`): its models may be gone."""
        self._changed(options=True)

    def show_notice(self, text: str) -> None:
        """A problem the user must know about (e.g. new calls are not being recorded). Earlier
        ones stay (the last few): a later hint must not hide a repair report."""
        if text not in self._notices:
            self._notices.append(text)
        self.notice.setText("\n".join(f"⚠ {n}" for n in self._notices[-MAX_NOTICES:]))
        self.notice.show()

    def is_settled(self) -> bool:
        return not self.live_lane.busy and not self.chart_lane.busy

    @Slot()
    def _filters_changed(self) -> None:
        self.events_model.set_filters(self._ranged_filters())
        self.refresh()

    @Slot()
    def _breakdown_changed(self) -> None:
        self.chart_lane.submit(self.request(("breakdown",)))

    @Slot()
    def _on_tick(self) -> None:
        if self._offline:  # this tick is a retry: everything, so one answer brings it all back
            self.refresh()
        elif self._ranged_filters() != self.events_model.filters:
            self._filters_changed()  # past midnight: "last 30 days" now means other days
        else:
            self.live_lane.submit(self.request(("kpis", "live")))

    def _ranged_filters(self) -> Filters:
        """What the events table shows: the picked filters over the picked range."""
        w = resolve_range(self.filter_bar.range_key(), self._tz, datetime.now(UTC))
        return self.filter_bar.filters().between(w.start_us, w.end_us)

    # --- answers --------------------------------------------------------------------------

    @Slot(str, object)
    def _apply(self, name: str, payload: Any) -> None:
        handler: Callable[[Any], None] = getattr(self, f"_show_{name}")
        handler(payload)

    def _show_any_events(self, any_events: bool) -> None:
        if any_events != self._has_data:
            if any_events and self._has_data is False:  # the first data: the pickers were filled from nothing
                self._options_at = time.monotonic()
                self.chart_lane.submit(self.request(("options",)))
            self._has_data = any_events
            self.pages.setCurrentIndex(1 if any_events else 0)
            self.kpis.setVisible(any_events)
            self.filter_bar.setVisible(any_events)

    def _show_kpis(self, k: Kpis) -> None:
        self.kpis.set_kpis(k)
        self.events.set_total(k.in_range.events)

    def _show_live(self, window) -> None:  # noqa: ANN001
        self.live_chart.set_rows(window)

    def _show_events(self, rows: list[dict[str, Any]]) -> None:
        self.events_model.merge_head(self._ranged_filters(), rows)

    def _show_models(self, spend: ModelSpend) -> None:
        merged = spend.by_alias()
        names = [m for _, m, _ in merged]
        for name in names:
            self.colors(name)  # most expensive first gets the first colour, everywhere
        rows = top_rows([(m if names.count(m) == 1 else f"{m} ({p})", t) for p, m, t in merged])
        self.models_chart.set_rows([(n, t.cost_nanos / 1e9, self.colors(n)) for n, t in rows],
                                   [spend_tooltip(n, t, self.colors(n)) for n, t in rows])
        self._show_unpriced(spend.unpriced, spend.usage_missing)

    def _show_unpriced(self, unpriced: list[tuple[str, str, int]], no_usage: list[tuple[str, str, int]]) -> None:
        """Requests left out of the totals, and why: a model without a price, or a call whose
        provider reported no usage (its cost is unknown, never $0)."""
        parts = []
        if unpriced:
            parts.append(f"{_count_phrase(unpriced)} without a price: {_listed(unpriced)}. Add prices to "
                         "<code>pricing.toml</code>, then run <code>llmtray reprice</code>.")
        if no_usage:
            parts.append(f"{_count_phrase(no_usage)} reported no usage (their cost is unknown): {_listed(no_usage)}. "
                         "For OpenAI streams pass <code>stream_options={\"include_usage\": true}</code>.")
        if not parts:
            self.unpriced.hide()
            return
        self.unpriced.setText("⚠ Not in these totals: " + " ".join(parts))
        self.unpriced.show()

    def _show_subscription(self, nanos: int) -> None:
        self.subscription.setText(
            f"Coding agents on a subscription: {format_usd(nanos)} at API prices in this range, "
            "not counted in spend or budgets ([agents.<agent>] billing = \"subscription\").")
        self.subscription.setVisible(nanos > 0)

    def _show_daily(self, series) -> None:  # noqa: ANN001
        self.daily_chart.set_rows(series)
        self.cpr_chart.set_rows(series)

    def _show_breakdown(self, b: Breakdown) -> None:
        if b.dimension != self.breakdown_chart.dimension():
            return  # the user switched again meanwhile; that answer is on its way
        rows = top_rows([(name or "(none)", t) for name, t in b.rows])
        palette = theme.SERIES
        self.breakdown_chart.set_rows(
            [(n, t.cost_nanos / 1e9, palette[(i + 2) % len(palette)]) for i, (n, t) in enumerate(rows)],
            [spend_tooltip(n, t, palette[(i + 2) % len(palette)]) for i, (n, t) in enumerate(rows)],
        )

    def _show_tokens(self, parts: dict[str, int]) -> None:
        self.tokens_chart.set_rows([(k, float(v), theme.TOKEN_COLORS[k]) for k, v in parts.items()])

    def _show_latency(self, stats) -> None:  # noqa: ANN001
        self.latency_chart.set_rows(stats)

    def _show_alerts(self, alerts) -> None:  # noqa: ANN001
        self.alerts.set_rows(alerts)
        n = self.alerts.count()
        self.tabs.setTabText(2, f"Alerts ({n})" if n else "Alerts")

    def _show_blocks(self, data: BlockList) -> None:
        self.blocks.set_blocks(data)
        self.tabs.setTabText(self.tabs.indexOf(self.blocks), f"Blocks ({data.active})" if data.active else "Blocks")

    def offer_block(self, feature: str) -> None:
        """Open the Blocks tab with an alert's "Block <feature> for 1 h" ready (no notification buttons here)."""
        self.blocks.offer(feature)
        self.tabs.setCurrentWidget(self.blocks)

    def _show_options(self, options: FilterOptions) -> None:
        self.filter_bar.set_options(options)
        self.breakdown_chart.set_dimensions(BREAKDOWNS, options.tag_keys)
        self.events.show_machines(MACHINE_TAG in options.tag_keys)

    @Slot(float)
    def _lane_done(self, seconds: float) -> None:
        self.refresh_count += 1
        if self.is_settled():
            if self._offline and not self._lost_this_round:  # read again: the watch may not know yet
                self.set_connection_state("")
            elif self._failure is None and not self._offline:  # a failed lane keeps its message
                self._updated = time.strftime('%H:%M:%S')
                self.status.setText(f"updated {self._updated}")
                self.status.setStyleSheet("")
            self._failure = None
            self._lost_this_round = False
            self.settled.emit()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self._failure = message
        self.kpis.set_unavailable(message)
        if message.startswith(DAMAGED):  # what the user must do: the banner, not the corner
            self.show_notice(message)
            short = "database damaged (see above)"
        elif self._has_data is None:  # nothing could ever be read: the reason is all there is to see
            self.show_notice(message)
            short = "the data can't be read (see above)"
        else:  # the corner shares the tab row: long errors in full in the tooltip
            short = message if len(message) <= 60 else message[:59] + "…"
        self.status.setText(f"refresh failed: {short}")
        self.status.setToolTip(message)
        self.status.setStyleSheet(f"color: {theme.ERROR};")

    # --- window life ------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._tick.start()
        if self.refresh_count == 0 and not self.live_lane.busy:
            self._filters_changed()
        elif self._stale:
            self.refresh()
        self._stale = False

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt API
        self._tick.stop()  # no timers while hidden (DESKTOP.md: idle tray < 1 % CPU)
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self._tick.stop()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the query threads (each closes its own connection)."""
        self._throttle.cancel()
        self._tick.stop()
        self.bill.shutdown()
        self.live_lane.stop()
        self.chart_lane.stop()


def _count_phrase(rows: list[tuple[str, str, int]]) -> str:
    return f"{plural(sum(r for _, _, r in rows), 'request')} to {plural(len(rows), 'model')}"


def _listed(rows: list[tuple[str, str, int]]) -> str:
    listed = ", ".join(f"<b>{html.escape(p)}/{html.escape(m)}</b> ({r:,})" for p, m, r in rows[:5])
    return listed + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
