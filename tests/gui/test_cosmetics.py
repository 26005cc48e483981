"""What a new user saw and should not have (issue #17, "Cosmetic"): each read back from the
widgets of a dashboard on a real database, with a screenshot saved beside (LLMTRAY_SHOTS)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from llmtray.core.events import parse_event
from llmtray.core.store import Store

LONG_FEATURE = "customer-support-summarizer-long-name"
COSTS = ["0.0125", "0.0000004", "0.00015", "1.5", "0.004", "0.0312", "0.000021", "0.25"]


def shot(widget, name: str, tmp_path: Path) -> None:  # noqa: ANN001
    widget.grab().save(str(Path(os.environ.get("LLMTRAY_SHOTS", tmp_path)) / name))


@pytest.fixture
def sixteen(data_dir: Path) -> Path:
    """16 events in the last minutes, costs from under a micro-dollar to $1.50, a long feature name."""
    now = datetime.now(UTC)
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"id": f"e{i}", "provider": "openai", "model": "gpt-4o",
                            "feature": LONG_FEATURE if i % 3 == 0 else "chat", "input_tokens": 10,
                            "cost_usd": COSTS[i % len(COSTS)], "ts": (now - timedelta(minutes=i)).timestamp()})
               for i in range(16)], "api")
    store.close()
    return data_dir / "llmtray.db"


def test_events_tab_says_all_loaded_shows_every_cost_alike_and_fits_the_feature(qtbot, make_dashboard, sixteen,
                                                                                 tmp_path):
    window = make_dashboard(sixteen)
    window.tabs.setCurrentWidget(window.events)
    table = window.events
    qtbot.waitUntil(lambda: table.model.fetched() == 16 and "16" in table.status.text(), timeout=10_000)
    qtbot.wait(50)
    shot(window, "events-tab.png", tmp_path)
    assert "scroll for more" not in table.status.text()  # was "16 of 16 events loaded — scroll for more"
    assert table.status.text().startswith("16 events, all shown")
    model, cost_col, feature_col = table.model, 7, 3
    shown = [model.data(model.index(r, cost_col)) for r in range(16)]
    assert "$0.00" not in shown and "<$0.000001" in shown  # $0.0000004: not rounded to nothing
    for text in shown:
        if text.startswith("$"):
            assert len(text.split(".")[1]) == 6, text  # one precision for all: $0.012500, $1.500000
    exact = {model.data(model.index(r, cost_col), role=3) for r in range(16)}  # ToolTipRole
    assert any(t.startswith("$0.0000004 ") for t in exact)
    assert sum(Decimal(t.lstrip("$")) for t in shown if t.startswith("$")) > 0
    fm = table.view.fontMetrics()
    assert table.view.columnWidth(feature_col) > fm.horizontalAdvance(LONG_FEATURE)  # not "customer-…"


def test_one_request_is_singular(qtbot, make_dashboard, data_dir, tmp_path):
    store = Store.open(data_dir / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "0.5"})], "api")
    store.close()
    window = make_dashboard(data_dir / "llmtray.db")
    shot(window, "one-request.png", tmp_path)
    assert window.kpis.cards["today"].sub.text() == "1 request"
    assert window.kpis.cards["month"].sub.text() == "1 request"


def test_alerts_empty_state_has_no_markdown_backticks(qtbot, make_dashboard, sixteen, tmp_path):
    from llmtray.core.alerts import AlertLog

    window = make_dashboard(sixteen, alert_log=AlertLog)
    window.tabs.setCurrentWidget(window.alerts)
    qtbot.wait(50)
    shot(window, "alerts-empty.png", tmp_path)
    label = window.alerts.empty
    assert label.isVisible()
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(label.text())
    assert "`" not in doc.toPlainText()
    assert "llmtray budgets add" in doc.toPlainText()


def test_budgets_dialog_lists_all_three_demo_budgets_without_scrolling(qtbot, sixteen, tmp_path):
    from llmtray import demo
    from llmtray.gui.budgets_dialog import BudgetsDialog

    store = Store.open(sixteen)
    demo.add_budgets(store)
    store.close()
    from PySide6.QtWidgets import QWidget

    from llmtray.gui import theme

    window = QWidget()  # opened from the dashboard: its style sheet (taller rows) applies
    window.setStyleSheet(theme.STYLESHEET)
    qtbot.addWidget(window)
    dialog = BudgetsDialog(sixteen, parent=window)
    try:
        dialog.show()
        qtbot.waitUntil(lambda: dialog.table.rowCount() == 3, timeout=10_000)
        qtbot.wait(50)
        shot(dialog, "budgets-dialog.png", tmp_path)
        table = dialog.table
        last = table.rowViewportPosition(2) + table.rowHeight(2)
        assert 0 <= table.rowViewportPosition(2) and last <= table.viewport().height(), (last, table.viewport().height())
    finally:
        dialog.done(0)
