"""What the charts draw where data is sparse or tiny: read back from the rendered picture and the
axes' own tick labels (issue #17, cosmetic)."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from llmtray.core.queries import DailySeries


def series(costs_nanos: list[int | None]) -> DailySeries:
    """One day per entry; None = no request that day."""
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(len(costs_nanos))]
    requests = [0 if c is None else 10 for c in costs_nanos]
    totals = [0 if c is None else c * 10 for c in costs_nanos]
    return DailySeries(days, {}, requests, totals, [0] * len(days))


@pytest.fixture
def chart(qtbot):
    from llmtray.gui import theme
    from llmtray.gui.charts import CostPerRequestChart

    theme.configure_pyqtgraph()
    c = CostPerRequestChart()
    c.setStyleSheet(theme.STYLESHEET)
    c.resize(700, 320)
    qtbot.addWidget(c)
    c.show()
    qtbot.waitExposed(c)
    return c


def _shot(widget, name: str, tmp_path: Path):  # noqa: ANN001, ANN202
    image = widget.grab().toImage()
    image.save(str(Path(os.environ.get("LLMTRAY_SHOTS", tmp_path)) / name))
    return image


def test_cost_per_request_fill_stops_at_gaps(qtbot, chart, tmp_path):
    """Days without requests are gaps in the line *and* its fill (the fill used to bridge them with
    slanted triangles)."""
    chart.set_rows(series([2_000_000, 3_000_000, 2_500_000] + [None] * 6 + [3_000_000, 2_000_000, 2_000_000]))
    qtbot.wait(50)
    assert set(chart.plotted()) == {0, 1, 2, 9, 10, 11}
    image = _shot(chart, "cost-per-request-gaps.png", tmp_path)
    x, top = at(chart, 6, 3.2e-3)  # the middle of the gap, from above the data to the baseline
    _, bottom = at(chart, 6, 0)
    tinted = bluish(image, x - 20, x + 20, top + 2, bottom - 2)
    assert tinted == 0, f"{tinted} tinted pixels in the middle of the gap"
    x, y = at(chart, 1, 0.5e-3)
    assert bluish(image, x - 3, x + 3, y - 3, y + 3) > 0  # the fill is there under the data


def at(chart, x: float, y: float) -> tuple[float, float]:  # noqa: ANN001
    """Where a data point is drawn, in the chart widget's pixels."""
    from PySide6.QtCore import QPointF

    view = chart.plot.scene().views()[0]
    p = view.mapTo(chart, view.mapFromScene(chart.plot.getViewBox().mapViewToScene(QPointF(x, y))))
    return p.x(), p.y()


def bluish(image, x0: float, x1: float, y0: float, y1: float) -> int:  # noqa: ANN001
    """Pixels tinted by the indigo fill (blue clearly above red and green) in a rectangle."""
    count = 0
    for x in range(int(x0), int(x1)):
        for y in range(int(y0), int(y1)):
            c = image.pixelColor(x, y)
            if c.blue() - c.red() > 8 and c.blue() - c.green() > 8:
                count += 1
    return count


def test_tiny_costs_get_distinct_axis_labels(qtbot, chart, tmp_path):
    """Costs of a few hundred-thousandths of a dollar: every tick label distinct and readable
    (they read "$0.0001" twice and "$0.")."""
    chart.set_rows(series([20_000, 50_000, 120_000, 80_000]))  # $0.00002 … $0.00012 per request
    qtbot.wait(50)
    _shot(chart, "cost-per-request-tiny.png", tmp_path)
    axis = chart.plot.getAxis("left")
    low, high = chart.plot.getViewBox().viewRange()[1]
    labels = []
    for spacing, values in axis.tickValues(low, high, axis.height()):
        labels += axis.tickStrings(values, 1.0, spacing)
    assert len(labels) >= 3
    assert len(set(labels)) == len(labels), labels
    assert not any(label.endswith(".") for label in labels), labels
    from decimal import Decimal

    for spacing, values in axis.tickValues(low, high, axis.height()):
        for value, label in zip(values, axis.tickStrings(values, 1.0, spacing), strict=True):
            assert abs(Decimal(label.lstrip("$")) - Decimal(repr(value))) <= Decimal("1e-9"), (value, label)
