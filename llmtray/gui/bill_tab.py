"""The Bill tab: what each provider billed beside what llmtray observed, per UTC day and model.

The data comes from `billing.view.load_view` on a QThread of the tab's own (its own database
connection); the tab only draws. It reloads when shown and
every minute while shown, never on every commit: bills change hourly at most, and a sync round
(on the ingest service's thread) lands within that minute without wiring the tray to the tab.
"""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QHideEvent, QShowEvent
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from llmtray.billing.view import BillView, load_view, source_line
from llmtray.core.money import format_usd
from llmtray.gui import theme
from llmtray.gui.chart_parts import ChartCard, DayAxis, ValueAxis
from llmtray.gui.kpis import KpiCard
from llmtray.gui.qt_workarounds import WorkerThread

NANOS = 1e9
RELOAD_MS = 60_000
BILLED, OBSERVED, PROVISIONAL = theme.ACCENT, "#9ca3af", "#c7d2fe"
STATUS_COLORS = {"match": theme.OK, "drift": theme.ERROR, "provisional": theme.MUTED,
                 "billed_only": "#d97706", "observed_only": "#d97706"}
COLUMNS = ("UTC day", "Provider", "Model", "Observed", "Billed", "Δ", "Δ %", "Status", "Cause")


class _Loader(QObject):
    """Lives on the tab's thread; `load()` emits `loaded(BillView)` or `failed(message)`."""

    loaded = Signal(object)
    failed = Signal(str)

    def __init__(self, db_path):  # noqa: ANN001
        super().__init__()
        self._db_path = db_path

    @Slot()
    def load(self) -> None:
        try:
            self.loaded.emit(load_view(self._db_path))
        except Exception as exc:  # noqa: BLE001 - the tab says why instead of the thread dying
            self.failed.emit(f"{type(exc).__name__}: {exc}")


class BillChart(ChartCard):
    """Billed (solid; pale while provisional) and observed (grey) bars side by side per UTC day."""

    def __init__(self, parent: QWidget | None = None):
        self._axis = DayAxis()
        super().__init__("Billed vs observed per UTC day",
                         {"bottom": self._axis, "left": ValueAxis("left", theme.format_money_axis)}, parent)
        self._observed = pg.BarGraphItem(x=[], height=[], width=0.38, brush=pg.mkBrush(OBSERVED), pen=pg.mkPen(None))
        self._billed = pg.BarGraphItem(x=[], height=[], width=0.38, pen=pg.mkPen(None))
        self.plot.addItem(self._observed)
        self.plot.addItem(self._billed)
        self.set_legend([("billed", BILLED), ("billed, provisional", PROVISIONAL), ("observed", OBSERVED)])
        self.empty.setText("No bill synced for these days")

    def set_view(self, view: BillView) -> None:
        pts = view.points
        self._axis.days = [p.day for p in pts]
        n = len(pts)
        self._observed.setOpts(x=[i - 0.2 for i in range(n)], height=[p.observed_nanos / NANOS for p in pts])
        billed = [(i + 0.2, p) for i, p in enumerate(pts) if p.billed_nanos is not None]
        self._billed.setOpts(x=[x for x, _ in billed], height=[p.billed_nanos / NANOS for _, p in billed],
                             brushes=[pg.mkBrush(BILLED if p.settled else PROVISIONAL) for _, p in billed])
        top = max([p.observed_nanos for p in pts] + [p.billed_nanos or 0 for p in pts] + [0]) / NANOS
        self.show_empty(top == 0)
        if top:
            self.plot.setRange(xRange=(-0.6, n - 0.4), yRange=(0, top * 1.08), padding=0)
        self.note.setText(f"{len(billed)} of {n} days billed")

    def plotted(self) -> dict[str, list[float]]:
        return {"billed": list(self._billed.opts["height"]), "observed": list(self._observed.opts["height"])}


class BillTab(QWidget):
    """Signals: loaded() after each redraw (tests, screenshots)."""

    loaded = Signal()
    _load = Signal()

    def __init__(self, db_path, parent: QWidget | None = None):  # noqa: ANN001
        super().__init__(parent)
        self.view: BillView | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(10)
        cards = QHBoxLayout()
        cards.setSpacing(10)
        self.cards = {key: KpiCard(title) for key, title in (
            ("billed", "Billed this month"), ("observed", "Observed this month"), ("delta", "Difference"),
            ("drift", "Days off the bill"))}
        for card in self.cards.values():
            cards.addWidget(card)
        layout.addLayout(cards)
        self.sources = QLabel("Loading the bill…")
        self.sources.setObjectName("muted")
        self.sources.setWordWrap(True)
        layout.addWidget(self.sources)
        self.chart = BillChart()
        self.chart.setMinimumHeight(220)
        layout.addWidget(self.chart, 2)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Cause"), QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 3)

        self._timer = QTimer(self)
        self._timer.setInterval(RELOAD_MS)
        self._timer.timeout.connect(self.reload)
        self._thread = WorkerThread(self)
        self._thread.setObjectName("llmtray-bill")
        self._loader = _Loader(db_path)
        self._loader.moveToThread(self._thread)
        self._load.connect(self._loader.load, Qt.ConnectionType.QueuedConnection)
        self._loader.loaded.connect(self._show)
        self._loader.failed.connect(self._failed)
        self._thread.start()

    @Slot()
    def reload(self) -> None:
        """Ask the loader thread for fresh data (after a sync, when shown)."""
        self._load.emit()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._timer.start()
        self.reload()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt API
        self._timer.stop()  # an idle tray reads nothing
        super().hideEvent(event)

    @Slot(object)
    def _show(self, view: BillView) -> None:
        self.view = view
        as_of = time.strftime("%b %d %H:%M UTC", time.gmtime(view.as_of)) if view.as_of else None
        c = self.cards
        if as_of:
            c["billed"].set(format_usd(view.month_billed_nanos), f"as of {as_of}")
            delta = view.month_billed_nanos - view.month_observed_nanos
            c["delta"].set(format_usd(delta), "billed − observed, same days")
            c["observed"].set(format_usd(view.month_observed_nanos), "billed providers, UTC days")
            c["drift"].set(str(view.drift_days), "settled UTC days beyond max($0.01, 2 %)",
                           theme.ERROR if view.drift_days else theme.OK)
        else:
            for key, sub in (("billed", "no bill synced this month"), ("observed", "of the providers you bill"),
                             ("delta", "nothing to compare yet"), ("drift", "nothing to compare yet")):
                c[key].set("—", sub)
        self.sources.setText("   ·   ".join(source_line(name, view.states.get(name), connected)
                                          for name, connected in view.connected.items()))
        if not any(view.connected.values()) and not view.result.lines:
            self.sources.setText(self.sources.text() + "\nConnect a source in Settings → Bills (or `llmtray "
                                 "billing connect openai`) to see what your provider billed beside what llmtray saw.")
        self.chart.set_view(view)
        self._fill_table(view)
        self.loaded.emit()

    def _fill_table(self, view: BillView) -> None:
        lines = sorted(view.result.lines, key=lambda line: (line.day, line.provider, line.model), reverse=True)
        self.table.setRowCount(len(lines))
        for row, line in enumerate(lines):
            j = line.as_json()
            billed = format_usd(line.billed_nanos) if j["billed_usd"] is not None else "—"
            delta = format_usd(line.delta_nanos) if j["delta_usd"] is not None else "—"
            pct = f"{j['delta_pct']} %" if j["delta_pct"] is not None else "—"
            model = line.model + (f" · {line.project}" if line.project else "") + (" (derived)" if j["derived"] else "")
            cells = (j["day"], line.provider, model, format_usd(line.observed_nanos), billed, delta, pct,
                     line.status.replace("_", " "), line.cause)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (3, 4, 5, 6):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == 7:
                    item.setForeground(QBrush(QColor(STATUS_COLORS.get(line.status, theme.TEXT))))
                self.table.setItem(row, col, item)

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.sources.setText(f"The bill could not be read: {message}")

    def shutdown(self) -> None:
        self._timer.stop()
        self._thread.quit()
        self._thread.wait(5000)
