"""Shared pieces of the dashboard's charts: the card frame, axes that speak days, clock times,
money and names, a colour legend and a hover box.

Why custom axes: pyqtgraph's DateAxisItem guesses the zone (pyqtgraph#1345) and prints raw
floats; our days are local calendar days already computed by `core.queries`, so the day axis
labels indices, and the clock axis formats instants in the zone it is given.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from llmtray.gui import theme

_TICK_FONT = QFont()
_TICK_FONT.setPointSizeF(8.5)


class ValueAxis(pg.AxisItem):
    """A value axis whose ticks go through a formatter (money, counts, milliseconds)."""

    def __init__(self, orientation: str, fmt: Callable[[float], str], **kwargs):
        super().__init__(orientation, **kwargs)
        self._fmt = fmt

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201 - pyqtgraph API
        return [self._fmt(v * scale) for v in values]


class MoneyAxis(pg.AxisItem):
    """Dollar ticks whose decimals follow the tick spacing (`theme.format_money_axis`)."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201 - pyqtgraph API
        return [theme.format_money_axis(v * scale, spacing * scale) for v in values]


class LogValueAxis(ValueAxis):
    """Ticks for a log-mode axis at 1-2-5 steps, labelled through the formatter."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803, ANN001, ANN201
        lo, hi = 10 ** minVal, 10 ** maxVal
        fit = max(2, int(size // 48))
        for mantissas in ((1, 2, 5), (1, 3), (1,)):  # as many ticks as fit without touching
            ticks, decade = [], 10.0 ** math.floor(minVal)
            while decade <= hi:
                ticks.extend(math.log10(m * decade) for m in mantissas if lo <= m * decade <= hi)
                decade *= 10
            if len(ticks) <= fit:
                break
        return [(1.0, ticks)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201
        return [self._fmt(10 ** v) for v in values]


class DayAxis(pg.AxisItem):
    """Bottom axis over day indices 0..n-1 labelled `Mar 3`; a label every few days, on Mondays
    when the range is long enough for weeks to matter."""

    def __init__(self, **kwargs):
        super().__init__("bottom", **kwargs)
        self.days: list[date] = []

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803, ANN001, ANN201
        n = len(self.days)
        if n == 0:
            return []
        fit = max(1, int(size // 56))  # labels that fit without touching
        if n <= fit:
            picks = list(range(n))
        elif n <= 7 * fit:
            step = -(-n // fit)
            picks = list(range(n - 1, -1, -step))[::-1]
        else:
            weeks = -(-n // (7 * fit))
            mondays = [i for i, d in enumerate(self.days) if d.weekday() == 0]
            picks = mondays[::-1][::weeks][::-1]
        return [(1.0, [float(i) for i in picks if minVal <= i <= maxVal])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201
        out = []
        for v in values:
            i = int(round(v))
            out.append(day_label(self.days[i]) if 0 <= i < len(self.days) else "")
        return out


def day_label(d: date) -> str:
    return f"{d.strftime('%b')} {d.day}"


class ClockAxis(pg.AxisItem):
    """Bottom axis over Unix seconds, labelled HH:MM in an explicit zone (None = local)."""

    def __init__(self, tz: tzinfo | None, **kwargs):
        super().__init__("bottom", **kwargs)
        self._tz = tz

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803, ANN001, ANN201
        step = 600 if size > 360 else 1200
        first = (int(minVal) // step + 1) * step
        return [(float(step), [float(t) for t in range(first, int(maxVal) + 1, step)])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201
        return [datetime.fromtimestamp(v, self._tz).strftime("%H:%M") for v in values]


class NameAxis(pg.AxisItem):
    """Left axis that names the rows of a horizontal bar chart, elided to its width."""

    def __init__(self, width: int = 120, **kwargs):
        super().__init__("left", **kwargs)
        self.names: list[str] = []
        self.setWidth(width)
        self._metrics = QFontMetrics(_TICK_FONT)

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803, ANN001, ANN201
        lo, hi = sorted((minVal, maxVal))  # inverted charts (top row first) pass the range reversed
        return [(1.0, [float(i) for i in range(len(self.names)) if lo <= i <= hi])]

    def fit(self, names: list[str], most: int) -> None:
        """Show `names`, as wide as the longest needs but never more than `most` pixels."""
        self.names = names
        widest = max((self._metrics.horizontalAdvance(short_label(n)) for n in names), default=40)
        self.setWidth(min(max(widest + 18, 60), most))
        self.picture = None
        self.update()

    def tickStrings(self, values, scale, spacing):  # noqa: N802, ANN001, ANN201
        room = int(self.width()) - 14
        out = []
        for v in values:
            i = int(round(v))
            name = short_label(self.names[i]) if 0 <= i < len(self.names) else ""
            out.append(self._metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room))
        return out


_DATE_SUFFIX = re.compile(r"-(20\d\d-?[01]\d-?[0-3]\d)$")


def short_label(name: str) -> str:
    """A model id without its snapshot date (`gpt-4o-2024-08-06` → `gpt-4o`) for axes and
    legends, where room is short; hover boxes and the table keep the full id."""
    return _DATE_SUFFIX.sub("", name)


def style_plot(plot: pg.PlotItem, *, grid_y: bool = True, grid_x: bool = False) -> None:
    """Quiet axes, a faint grid, no pan/zoom: a dashboard chart is read, not explored."""
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setMouseEnabled(x=False, y=False)
    plot.showGrid(x=grid_x, y=grid_y, alpha=0.12)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(theme.BORDER))
        axis.setTextPen(pg.mkPen(theme.MUTED))
        axis.setStyle(tickFont=_TICK_FONT, tickLength=0, tickTextOffset=6)
    plot.layout.setContentsMargins(2, 6, 10, 2)


class ChartCard(QFrame):
    """A white card: title (and optional controls) on top, a legend line, then the plot."""

    def __init__(self, title: str, axis_items: dict[str, pg.AxisItem] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 10, 8)
        layout.setSpacing(4)
        self.header = QHBoxLayout()
        self.title = QLabel(title)
        self.title.setObjectName("cardTitle")
        self.header.addWidget(self.title)
        self.header.addStretch(1)
        self.note = QLabel("")
        self.note.setObjectName("muted")
        self.header.addWidget(self.note)
        layout.addLayout(self.header)
        self.legend = QLabel("")
        self.legend.setObjectName("muted")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.hide()
        layout.addWidget(self.legend)
        self.plot_widget = pg.PlotWidget(axisItems=axis_items or {})
        self.plot_widget.setMinimumHeight(120)
        self.plot = self.plot_widget.getPlotItem()
        style_plot(self.plot)
        layout.addWidget(self.plot_widget, 1)
        self.empty = pg.TextItem("No data for these filters", color=theme.MUTED, anchor=(0.5, 0.5))
        self.empty.setZValue(10)

    def set_legend(self, entries: Sequence[tuple[str, str]]) -> None:
        """`(name, colour)` pairs as coloured squares in one wrapping line."""
        if not entries:
            self.legend.hide()
            return
        # non-breaking hyphens: a line may wrap between names, never inside `gpt-4o-mini`
        parts = [f'<span style="color:{c}">■</span>&nbsp;{html.escape(short_label(n)).replace("-", "&#8209;")}'
                 for n, c in entries]
        self.legend.setText("&nbsp;&nbsp;&nbsp; ".join(parts))
        self.legend.show()

    def show_empty(self, empty: bool) -> None:
        """An explicit "no data" note instead of blank axes."""
        if empty and self.empty.scene() is None:
            self.plot.addItem(self.empty, ignoreBounds=True)
        elif not empty and self.empty.scene() is not None:
            self.plot.removeItem(self.empty)
        if empty:
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.empty.setPos(QPointF(0.5, 0.5))


class HoverBox(QLabel):
    """A tooltip-like card that follows the cursor over a plot (pure widget, no timer)."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setStyleSheet(
            f"background: {theme.CARD}; border: 1px solid {theme.BORDER}; border-radius: 6px; padding: 6px 8px;"
        )
        self.hide()

    def show_at(self, text: str, x: int, y: int) -> None:
        self.setText(text)
        self.adjustSize()
        parent = self.parentWidget()
        assert parent is not None
        left = x + 14 if x + 14 + self.width() < parent.width() else x - 14 - self.width()
        top = min(max(4, y - self.height() // 2), parent.height() - self.height() - 4)
        self.move(max(4, left), top)
        self.show()
        self.raise_()
