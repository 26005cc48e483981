"""The dashboard's charts, one class per chart. Each takes rows through `set_rows` and runs no
queries; each can say what it drew (`plotted()`), read back from its plot items, so tests compare
the picture itself with `core.queries`.

pyqtgraph items are created once and updated with `setOpts`/`setData` on every refresh (clearing
and re-adding leaks, pyqtgraph#2348), so a live dashboard can refresh for days.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Slot
from PySide6.QtWidgets import QComboBox, QWidget

from llmtray.core.dburl import MACHINE_TAG
from llmtray.core.money import format_usd
from llmtray.core.queries import DailySeries, LatencyStats, Totals
from llmtray.core.sketch import ALPHA
from llmtray.core.wording import plural
from llmtray.gui import theme
from llmtray.gui.chart_parts import (ChartCard, ClockAxis, DayAxis, HoverBox, LogValueAxis, MoneyAxis, NameAxis,
                                     day_label)
from llmtray.gui.views import LiveWindow

NANOS = 1e9
MAX_BARS = 8


def usd_label(usd: float) -> str:
    """A bar's value label from its drawn length in dollars."""
    return format_usd(round(usd * NANOS))


def _swatch(color: str) -> str:
    return f'<span style="color:{color}">■</span>'


class Hover(QObject):
    """Follows the mouse over a card's plot and shows what `describe(x, y)` returns (HTML or None)."""

    def __init__(self, card: ChartCard, describe: Callable[[float, float], str | None],
                 on_hide: Callable[[], None] | None = None):
        super().__init__(card)
        self._card, self._describe, self._on_hide = card, describe, on_hide
        self._box: HoverBox | None = None
        card.plot_widget.scene().sigMouseMoved.connect(self._moved)
        card.plot_widget.viewport().installEventFilter(self)

    @Slot(object)
    def _moved(self, pos: QPointF) -> None:
        vb = self._card.plot.getViewBox()
        text = None
        if vb.sceneBoundingRect().contains(pos):
            point = vb.mapSceneToView(pos)
            text = self._describe(point.x(), point.y())
        if text is None:
            self.hide()
            return
        if self._box is None:  # on the window, not the plot: a day's list may be taller than its chart
            self._box = HoverBox(self._card.window())
        at = self._card.plot_widget.mapTo(self._card.window(), self._card.plot_widget.mapFromScene(pos))
        self._box.show_at(text, at.x(), at.y())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Leave:
            self.hide()
        return False

    def hide(self) -> None:
        if self._box is not None:
            self._box.hide()
        if self._on_hide is not None:
            self._on_hide()


class DailySpendChart(ChartCard):
    """Spend per local day, stacked by model (top 8 + other); hovering a day lists its breakdown."""

    def __init__(self, colors: theme.SeriesColors, parent: QWidget | None = None):
        self._axis = DayAxis()
        super().__init__("Daily spend by model", {"bottom": self._axis, "left": MoneyAxis("left")},
                         parent)
        self._colors = colors
        self._bars: list[pg.BarGraphItem] = []
        self._highlight = pg.BarGraphItem(x=[0], height=[0], width=0.92, brush=pg.mkBrush(79, 70, 229, 28),
                                          pen=pg.mkPen(None))
        self._highlight.setZValue(-5)
        self._highlight.hide()
        self.plot.addItem(self._highlight)
        self._series: DailySeries | None = None
        Hover(self, self._describe, self._highlight.hide)

    def set_rows(self, series: DailySeries) -> None:
        self._series = series
        self._axis.days = series.days
        n = len(series.days)
        names = list(series.series)
        while len(self._bars) < len(names):
            bar = pg.BarGraphItem(x=[], height=[], width=0.72, pen=pg.mkPen(None))
            self.plot.addItem(bar)
            self._bars.append(bar)
        base = [0.0] * n
        for bar, name in zip(self._bars, names):
            heights = [v / NANOS for v in series.series[name]]
            color = self._colors(name)
            bar.setOpts(x=list(range(n)), height=heights, y0=list(base), brush=pg.mkBrush(color))
            bar.show()
            base = [a + b for a, b in zip(base, heights)]
        for bar in self._bars[len(names):]:
            bar.setOpts(x=[], height=[], y0=[])
            bar.hide()
        self.set_legend([(name, self._colors(name)) for name in names])
        empty = not any(series.totals)
        self.show_empty(empty)
        if not empty:
            self.plot.setRange(xRange=(-0.6, n - 0.4), yRange=(0, max(base) * 1.08), padding=0)
        total = sum(series.totals)
        self.note.setText(f"{format_usd(total)} in {n} days" if n else "")

    def plotted(self) -> dict[str, list[float]]:
        """Bar heights in USD per series, as drawn."""
        names = list(self._series.series) if self._series else []
        return {name: list(bar.opts["height"]) for name, bar in zip(names, self._bars)}

    def _describe(self, x: float, y: float) -> str | None:
        s = self._series
        i = int(round(x))
        if s is None or not 0 <= i < len(s.days) or not s.totals[i] and not s.requests[i]:
            return None
        self._highlight.setOpts(x=[i], height=[max(self.plot.getViewBox().viewRange()[1][1], 0)])
        self._highlight.show()
        lines = [f"<b>{s.days[i].strftime('%a')}, {day_label(s.days[i])}</b> — <b>{format_usd(s.totals[i])}</b>",
                 f"<span style='color:{theme.MUTED}'>{plural(s.requests[i], 'request')}</span>"]
        for name, values in sorted(s.series.items(), key=lambda kv: -kv[1][i]):
            if values[i]:
                lines.append(f"{_swatch(self._colors(name))} {html.escape(name)}: {format_usd(values[i])}")
        return "<br>".join(lines)


class CostPerRequestChart(ChartCard):
    """Average cost of a priced request per local day (unpriced requests have no cost to share)."""

    def __init__(self, parent: QWidget | None = None):
        self._axis = DayAxis()
        super().__init__("Cost per request", {"bottom": self._axis, "left": MoneyAxis("left")},
                         parent)
        self._curve = pg.PlotDataItem(pen=pg.mkPen(theme.ACCENT, width=2),
                                      symbol="o", symbolSize=4, symbolBrush=theme.ACCENT, symbolPen=None,
                                      fillLevel=0, fillBrush=pg.mkBrush(79, 70, 229, 30))
        self.plot.addItem(self._curve)
        self._series: DailySeries | None = None
        Hover(self, self._describe)

    def set_rows(self, series: DailySeries) -> None:
        self._series = series
        self._axis.days = series.days
        values = [series.cost_per_request(i) for i in range(len(series.days))]
        # NaN where a day had no priced request: a gap in the line *and* its fill. A `connect`
        # mask broke only the line; the fill ran across gaps as slanted triangles.
        ys = [v / NANOS for v in values if v is not None]
        if ys:
            self._curve.setData(np.arange(len(values), dtype=float),
                                np.array([np.nan if v is None else v / NANOS for v in values], dtype=float),
                                connect="finite")
        else:  # all NaN: pyqtgraph's bounds warn
            self._curve.setData([], [])
        self.show_empty(not ys)
        if ys:
            self.plot.setRange(xRange=(-0.5, len(series.days) - 0.5), yRange=(0, max(ys) * 1.15), padding=0)
            priced = sum(series.requests) - sum(series.unpriced)
            self.note.setText(f"avg {theme.format_unit_cost(sum(series.totals) // priced)}" if priced else "")
        else:
            self.note.setText("")

    def plotted(self) -> dict[int, float]:
        """USD per request by day index, as drawn (days without a priced request are left out)."""
        xs, ys = self._curve.getData()
        return {} if xs is None else {int(x): float(y) for x, y in zip(xs, ys) if not math.isnan(y)}

    def _describe(self, x: float, y: float) -> str | None:
        s = self._series
        i = int(round(x))
        if s is None or not 0 <= i < len(s.days):
            return None
        value = s.cost_per_request(i)
        if value is None:
            return None
        return (f"<b>{s.days[i].strftime('%a')}, {day_label(s.days[i])}</b><br>"
                f"{theme.format_unit_cost(value)} per request<br>"
                f"<span style='color:{theme.MUTED}'>{plural(s.requests[i] - s.unpriced[i], 'priced request')}</span>")


class BarListChart(ChartCard):
    """Horizontal ranked bars with a name axis and a value label at each bar's end.

    Serves spend by model, spend by feature/user/project/tag and the token breakdown: the same
    picture with different rows, so one class rather than three near-copies."""

    def __init__(self, title: str, fmt: Callable[[float], str], parent: QWidget | None = None):
        self._names = NameAxis()
        super().__init__(title, {"left": self._names}, parent)
        self._fmt = fmt
        self.plot.invertY(True)
        self.plot.hideAxis("bottom")
        self.plot.showGrid(x=False, y=False)
        self._bars = pg.BarGraphItem(x0=[], y=[], height=0.62, width=[], pen=pg.mkPen(None))
        self.plot.addItem(self._bars)
        self._labels: list[pg.TextItem] = []
        self._rows: list[tuple[str, float, str]] = []
        Hover(self, self._describe)
        self._tooltips: list[str] = []

    def set_rows(self, rows: Sequence[tuple[str, float, str]], tooltips: Sequence[str] = ()) -> None:
        """`(name, value, colour)` rows, drawn top to bottom in the order given."""
        self._rows = list(rows)
        self._tooltips = list(tooltips)
        self._names.fit([r[0] for r in rows], int(self.width() * 0.4))
        self._bars.setOpts(x0=[0] * len(rows), y=list(range(len(rows))), width=[r[1] for r in rows],
                           brushes=[pg.mkBrush(r[2]) for r in rows])
        while len(self._labels) < len(rows):
            label = pg.TextItem(color=theme.TEXT, anchor=(0, 0.5))
            self.plot.addItem(label)
            self._labels.append(label)
        for i, (label, (_, value, _)) in enumerate(zip(self._labels, rows)):
            label.setText(self._fmt(value))
            label.setPos(value, i)
            label.show()
        for label in self._labels[len(rows):]:
            label.hide()
        empty = not rows or not any(r[1] for r in rows)
        self.show_empty(empty)
        if not empty:
            top = max(r[1] for r in rows)
            self.plot.setRange(xRange=(0, top * 1.32), yRange=(-0.6, max(len(rows), 4) - 0.4), padding=0)

    def plotted(self) -> list[tuple[str, float]]:
        """(name, bar length) as drawn, top to bottom."""
        return list(zip(self._names.names, [float(w) for w in self._bars.opts["width"]]))

    def _describe(self, x: float, y: float) -> str | None:
        i = int(round(y))
        if not 0 <= i < len(self._rows) or x > self._rows[i][1] * 1.3 + 1e-12:
            return None
        if i < len(self._tooltips):
            return self._tooltips[i]
        name, value, color = self._rows[i]
        return f"{_swatch(color)} <b>{html.escape(name)}</b><br>{self._fmt(value)}"


def top_rows(rows: Sequence[tuple[str, Totals]], limit: int = MAX_BARS) -> list[tuple[str, Totals]]:
    """The `limit - 1` largest rows and the rest folded into "other (n)", so the chart stays legible."""
    if len(rows) <= limit:
        return list(rows)
    rest = Totals()
    for _, t in rows[limit - 1:]:
        rest.add(t)
    return [*rows[:limit - 1], (f"other ({len(rows) - limit + 1})", rest)]


def spend_tooltip(name: str, t: Totals, color: str) -> str:
    unpriced = f"<br><span style='color:{theme.WARN_TEXT}'>{t.unpriced:,} unpriced requests</span>" if t.unpriced else ""
    return (f"{_swatch(color)} <b>{html.escape(name)}</b><br>{format_usd(t.cost_nanos)} · {plural(t.requests, 'request')}"
            f"<br><span style='color:{theme.MUTED}'>{theme.format_count(t.input_tokens)} in · "
            f"{theme.format_count(t.output_tokens)} out</span>{unpriced}")


class BreakdownChart(BarListChart):
    """Spend by feature, user, project, env, provider, source, machine (team events' `machine`
    tag, offered once events carry it) or another tag key — the user picks.

    Signals: dimension_changed(str) (the combo's `currentTextChanged` re-emitted with the key)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Spend by", usd_label, parent)
        self.picker = QComboBox()
        self.picker.setMinimumWidth(120)
        self.header.insertWidget(1, self.picker)
        self.set_dimensions(["feature", "user", "project", "env", "provider", "source"], [])

    def set_dimensions(self, dims: Sequence[str], tag_keys: Sequence[str]) -> None:
        current = self.dimension()
        self.picker.blockSignals(True)
        self.picker.clear()
        for d in dims:
            self.picker.addItem(d, d)
        if MACHINE_TAG in tag_keys:
            self.picker.addItem("machine", f"tag:{MACHINE_TAG}")
        for k in tag_keys:
            if k != MACHINE_TAG:
                self.picker.addItem(f"tag: {k}", f"tag:{k}")
        index = self.picker.findData(current) if current else 0
        self.picker.setCurrentIndex(max(index, 0))
        self.picker.blockSignals(False)

    def dimension(self) -> str:
        return self.picker.currentData() or "feature"


class LatencyChart(ChartCard):
    """p50 / p95 / p99 latency per model on a log scale (embeddings take 100 ms, reasoning 20 s)."""

    def __init__(self, parent: QWidget | None = None):
        self._names = NameAxis()
        super().__init__("Latency per model", {"left": self._names, "bottom": LogValueAxis("bottom", theme.format_ms_axis)},
                         parent)
        self.plot.invertY(True)
        self.plot.setLogMode(x=True, y=False)
        self.plot.showGrid(x=True, y=False, alpha=0.12)
        self._span = pg.PlotDataItem(pen=pg.mkPen(theme.BORDER, width=3), connect="pairs")
        self.plot.addItem(self._span)
        self._points = {}
        for name, color in theme.PERCENTILE_COLORS.items():
            item = pg.PlotDataItem(pen=None, symbol="o", symbolSize=8, symbolBrush=color, symbolPen=pg.mkPen("w"))
            self.plot.addItem(item)
            self._points[name] = item
        self.set_legend(list(theme.PERCENTILE_COLORS.items()))
        self.note.setToolTip(f"percentiles of every successful call in the range, per model, within "
                             f"{ALPHA:.0%} of the exact value")
        self._stats: list[LatencyStats] = []
        Hover(self, self._describe)

    def set_rows(self, stats: Sequence[LatencyStats]) -> None:
        self._stats = list(stats)
        self._names.fit([s.model for s in stats], int(self.width() * 0.45))
        ys = list(range(len(stats)))
        for name, item in self._points.items():
            item.setData([max(getattr(s, name), 1.0) for s in stats], ys)  # a log axis has no 0 ms
        span_x, span_y = [], []
        for i, s in enumerate(stats):
            span_x += [max(s.p50, 1.0), max(s.p99, 1.0)]
            span_y += [i, i]
        self._span.setData(span_x, span_y)
        self.show_empty(not stats)
        self.note.setText(plural(sum(s.count for s in stats), "call") if stats else "")
        if stats:
            lo = min(max(s.p50, 1.0) for s in stats)
            hi = max(s.p99 for s in stats)
            self.plot.setRange(xRange=(math.log10(lo) - 0.25, math.log10(max(hi, lo * 2)) + 0.15),
                               yRange=(-0.6, max(len(stats), 4) - 0.4), padding=0)

    def plotted(self) -> list[tuple[str, float, float, float]]:
        """(model, p50, p95, p99) in ms as drawn."""
        xs = [self._points[p].getOriginalDataset()[0] for p in ("p50", "p95", "p99")]
        cols = [[] if x is None else list(x) for x in xs]
        return [(name, *(float(c[i]) for c in cols)) for i, name in enumerate(self._names.names)]

    def _describe(self, x: float, y: float) -> str | None:
        i = int(round(y))
        if not 0 <= i < len(self._stats):
            return None
        s = self._stats[i]
        ttft = "" if s.ttft is None else ("<br>first token: p50 " + " · p95 ".join(map(theme.format_ms, s.ttft[:2]))
                                          + f" · p99 {theme.format_ms(s.ttft[2])}")
        return (f"<b>{html.escape(s.model)}</b><br>p50 {theme.format_ms(s.p50)} · p95 {theme.format_ms(s.p95)}"
                f" · p99 {theme.format_ms(s.p99)}{ttft}<br><span style='color:{theme.MUTED}'>{s.count:,} calls</span>")


class LiveChart(ChartCard):
    """Spend per minute over the last hour, on a clock axis in the user's zone; it moves as
    events arrive (each commit refreshes it)."""

    def __init__(self, tz: tzinfo | None, parent: QWidget | None = None):
        super().__init__("Live · last hour", {"bottom": ClockAxis(tz), "left": MoneyAxis("left")},
                         parent)
        self._bars = pg.BarGraphItem(x=[], height=[], width=48, brush=pg.mkBrush(theme.SERIES[1]), pen=pg.mkPen(None))
        self.plot.addItem(self._bars)
        self._window: LiveWindow | None = None
        self._tz = tz
        Hover(self, self._describe)

    def set_rows(self, window: LiveWindow) -> None:
        self._window = window
        xs = [m / 1e6 + 30 for m, _, _ in window.minutes]
        heights = [c / NANOS for _, c, _ in window.minutes]
        self._bars.setOpts(x=xs, height=heights)
        top = max(heights, default=0)
        self.plot.setRange(xRange=(window.start_us / 1e6, window.end_us / 1e6),
                           yRange=(0, top * 1.15 if top else 0.01), padding=0)
        cost = sum(c for _, c, _ in window.minutes)
        requests = sum(r for _, _, r in window.minutes)
        self.note.setText(f"{format_usd(cost)} · {plural(requests, 'request')}")

    def plotted(self) -> list[tuple[int, float]]:
        """(minute start µs, USD) as drawn."""
        xs, hs = self._bars.opts["x"], self._bars.opts["height"]
        return [(int(round((x - 30) * 1e6)), float(h)) for x, h in zip(xs, hs)]

    def _describe(self, x: float, y: float) -> str | None:
        if self._window is None:
            return None
        for minute, cost, requests in self._window.minutes:
            if minute / 1e6 <= x < minute / 1e6 + 60:
                at = datetime.fromtimestamp(minute / 1e6, self._tz).strftime("%H:%M")
                return f"<b>{at}</b><br>{format_usd(cost)} · {plural(requests, 'request')}"
        return None
