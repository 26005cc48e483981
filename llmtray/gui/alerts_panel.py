"""The alert log in the window: every alert is written here first, whether or not the OS showed
a notification (DESKTOP.md: notifications may not appear at all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from PySide6.QtCore import Qt
from PySide6 import QtGui
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QStackedWidget, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from llmtray.gui import theme

_SEVERITY_COLORS = {"info": theme.MUTED, "warning": "#d97706", "critical": theme.ERROR}
# Rich text: the command in code type (Markdown backticks were shown literally).
EMPTY_TEXT = ("No alerts yet.<br><br>Budgets alert here at 50 / 80 / 100 %, as do spend spikes and runaway loops.<br>"
              "Add one with <b>Budgets…</b> in the tray menu or <code>llmtray budgets add --name team --limit 50 "
              "--period day</code>.")
UNAVAILABLE_TEXT = "Alerts are not available in this build."


class AlertsPanel(QWidget):
    """A history table, or a sentence saying why it is empty."""

    def __init__(self, tz: tzinfo | None, parent: QWidget | None = None):
        super().__init__(parent)
        self._tz = tz
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.stack = QStackedWidget()
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Time", "Severity", "Alert", "Details"])
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((140, 80, 320)):
            self.table.setColumnWidth(col, width)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)
        layout.addWidget(self.stack)

    def set_rows(self, alerts: Sequence[Any] | None) -> None:
        """Alerts newest first (objects with ts_us, severity, title, body), or None when the
        alert history does not exist in this build."""
        if not alerts:
            self.empty.setText(UNAVAILABLE_TEXT if alerts is None else EMPTY_TEXT)
            self.stack.setCurrentWidget(self.empty)
            self.table.setRowCount(0)
            return
        self.table.setRowCount(len(alerts))
        for row, a in enumerate(alerts):
            when = datetime.fromtimestamp(a.ts_us / 1e6, self._tz).strftime("%b %d %H:%M")
            cells = (when, a.severity, a.title, a.body.replace("\n", " · "))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(QColor(_SEVERITY_COLORS.get(a.severity, theme.TEXT)))
                # a tooltip is rich text when it looks like it: a feature name with tags must show as typed
                item.setToolTip(QtGui.Qt.convertFromPlainText(a.body) if col == 3 else "")
                self.table.setItem(row, col, item)
        self.stack.setCurrentWidget(self.table)

    def count(self) -> int:
        return self.table.rowCount()
