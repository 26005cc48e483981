"""Budgets: list, create, edit and remove, with a live preview of the period's spend.

Scope pickers are filled from what has actually been seen (providers, models, features, users,
projects, envs, tag keys), so a typo can't create a budget that silently counts nothing. Every
database call runs on a worker thread with its own connection; the dialog only sends requests
and shows answers (the GUI never blocks).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmtray.core.budgets import (
    SCOPE_FIELDS,
    Budget,
    BudgetBook,
    BudgetError,
    Scope,
    evaluate,
    parse_limit,
    parse_tag,
    parse_thresholds,
)
from llmtray.core.db import open_db
from llmtray.core.money import format_usd
from llmtray.core.queries import Queries
from llmtray.core.wording import plural
from llmtray.gui.qt_workarounds import WorkerThread

log = logging.getLogger(__name__)
ANY = "(any)"
VISIBLE_ROWS = 6  # budgets listed without scrolling
STATE_COLORS = {"ok": "#2f9e58", "warning": "#b7791f", "exceeded": "#dc3b3b"}


class BudgetWorker(QObject):
    """All budget I/O, on its own thread. Signals: loaded(dict), previewed(dict), failed(str), changed()."""

    loaded = Signal(object)
    previewed = Signal(object)
    failed = Signal(str)
    changed = Signal()

    def __init__(self, db_path: Path, tz: Any, week_start: int = 0):
        super().__init__()
        self._path, self._tz, self._week_start = db_path, tz, week_start
        self._db = None

    def _open(self) -> tuple[Queries, BudgetBook]:
        if self._db is None:
            self._db = open_db(self._path)
        return Queries(self._db.connection(), self._tz), BudgetBook(self._db)

    @Slot()
    def load(self) -> None:
        try:
            queries, book = self._open()
            now = datetime.now(UTC)
            rows = [(b, evaluate(queries, b, now, self._week_start)) for b in book.list()]
            seen = {name: queries.distinct(name) for name in SCOPE_FIELDS}
            seen["tag keys"] = queries.tag_keys()
            self.loaded.emit({"budgets": rows, "seen": seen})
        except Exception as exc:
            log.exception("loading budgets failed")
            self.failed.emit(str(exc))

    @Slot(object)
    def preview(self, budget: Budget) -> None:
        try:
            queries, _ = self._open()
            self.previewed.emit({"budget": budget, "status": evaluate(queries, budget, datetime.now(UTC),
                                                                        self._week_start)})
        except Exception as exc:
            self.failed.emit(str(exc))

    @Slot(object, object)
    def save(self, budget: Budget, replacing: str | None) -> None:
        try:
            _, book = self._open()
            if replacing is not None and replacing.lower() != budget.name.lower():
                if budget.name.lower() in {b.name.lower() for b in book.list()}:
                    raise BudgetError(f"a budget named {budget.name!r} already exists")
            if replacing is not None:
                book.remove(replacing)
            book.add(budget)
            self.changed.emit()
        except BudgetError as exc:
            self.failed.emit(str(exc))

    @Slot(str)
    def remove(self, name: str) -> None:
        try:
            self._open()[1].remove(name)
            self.changed.emit()
        except BudgetError as exc:
            self.failed.emit(str(exc))

    @Slot()
    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class BudgetsDialog(QDialog):
    """Signals (to the worker): request_load(), request_preview(Budget), request_save(Budget, str|None),
    request_remove(str); changed() after budgets were added or removed."""

    request_load = Signal()
    request_preview = Signal(object)
    request_save = Signal(object, object)
    request_remove = Signal(str)
    changed = Signal()

    def __init__(self, db_path: Path, tz: Any = None, week_start: int = 0, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Budgets")
        self.resize(860, 600)
        self._editing: str | None = None
        self._budgets: list[tuple[Budget, Any]] = []

        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Budget", "Scope", "Period", "Limit", "Spent", "Used"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._selected)
        self.empty = QLabel("No budgets yet. Create one below: a limit, a period and what it counts.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.name = QLineEdit()
        self.limit = QLineEdit()
        self.limit.setPlaceholderText("e.g. 50 or $1,200")
        self.period = QComboBox()
        self.period.addItems(["day", "week", "month"])
        self.period.setCurrentIndex(2)
        self.scope_boxes: dict[str, QComboBox] = {}
        for field_name in SCOPE_FIELDS:
            box = QComboBox()
            box.setEditable(True)
            box.addItem(ANY)
            self.scope_boxes[field_name] = box
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("key=value, key=value (all must match)")
        self.thresholds = QLineEdit("50,80,100")
        self.enforce = QCheckBox("Hard cap: the proxy and enforcing hooks refuse calls once it is used up")
        self.preview_label = QLabel("")
        self.preview_label.setWordWrap(True)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c0392b")

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Limit (USD)", self.limit)
        form.addRow("Period", self.period)
        for field_name, box in self.scope_boxes.items():
            form.addRow(field_name.capitalize(), box)
        form.addRow("Tags", self.tags)
        form.addRow("Alert at (% of limit)", self.thresholds)
        form.addRow("", self.enforce)
        form.addRow("This period so far", self.preview_label)
        editor = QGroupBox("New budget")
        self.editor = editor
        editor.setLayout(form)

        self.save_button = QPushButton("Add budget")
        self.save_button.clicked.connect(self.save)
        self.new_button = QPushButton("New")
        self.new_button.clicked.connect(self.clear_form)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self.remove_selected)
        row = QHBoxLayout()
        row.addWidget(self.message, 1)
        for b in (self.remove_button, self.new_button, self.save_button):
            row.addWidget(b)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.empty)
        layout.addWidget(editor, 3)
        layout.addLayout(row)
        layout.addWidget(close)

        self._thread = WorkerThread(self)
        self._worker = BudgetWorker(db_path, tz, week_start)
        self._worker.moveToThread(self._thread)
        self.request_load.connect(self._worker.load)
        self.request_preview.connect(self._worker.preview)
        self.request_save.connect(self._worker.save)
        self.request_remove.connect(self._worker.remove)
        self._worker.loaded.connect(self._loaded)
        self._worker.previewed.connect(self._previewed)
        self._worker.failed.connect(self.message.setText)
        self._worker.changed.connect(self._after_change)
        self._thread.start()

        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(250)
        self._preview_timer.timeout.connect(self._send_preview)
        for w in (self.name, self.limit, self.tags, self.thresholds):
            w.textChanged.connect(self._preview_timer.start)
        self.period.currentIndexChanged.connect(self._preview_timer.start)
        for box in self.scope_boxes.values():
            box.currentTextChanged.connect(self._preview_timer.start)
        self.request_load.emit()

    # --- building a Budget from the form -------------------------------------------------------

    def budget_from_form(self) -> Budget:
        """The form as a validated Budget; raises BudgetError naming the field."""
        try:
            limit = parse_limit(self.limit.text())
        except BudgetError:
            raise
        except ValueError as exc:
            raise BudgetError(f"limit: {exc}") from None
        scope_values = {f: (b.currentText().strip() or None) for f, b in self.scope_boxes.items()}
        scope_values = {f: (None if v == ANY else v) for f, v in scope_values.items()}
        tags = tuple(parse_tag(t.strip()) for t in self.tags.text().split(",") if t.strip())
        return Budget(
            name=self.name.text(),
            limit_nanos=limit,
            period=self.period.currentText(),
            scope=Scope(tags=tags, **scope_values),
            thresholds=parse_thresholds(self.thresholds.text()),
            enforce=self.enforce.isChecked(),
        )

    @Slot()
    def _send_preview(self) -> None:
        try:
            budget = self.budget_from_form()
        except (BudgetError, ValueError) as exc:
            self.preview_label.setText("")
            if self.limit.text().strip() and self.name.text().strip():
                self.message.setText(str(exc))
            return
        self.message.setText("")
        self.request_preview.emit(budget)

    @Slot(object)
    def _previewed(self, payload: dict[str, Any]) -> None:
        status = payload["status"]
        state = status.state
        self.preview_label.setText(
            f"<b style='color:{STATE_COLORS[state]}'>{format_usd(status.spent_nanos)}</b> of "
            f"{format_usd(status.budget.limit_nanos)} ({status.percent:.0f}%) — projected "
            f"{format_usd(status.projected_nanos)} by the end of the {status.budget.period}"
            + (f"; {plural(status.unpriced_requests, 'unpriced request')} not counted" if status.unpriced_requests else "")
        )

    # --- list -------------------------------------------------------------------------------------

    def _fit_rows(self) -> None:
        """Tall enough for every budget up to `VISIBLE_ROWS` (then it scrolls): the form below
        took the space and left room for about two, so the demo's third budget was hidden."""
        rows = min(max(len(self._budgets), 1), VISIBLE_ROWS)
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(rows)) if self._budgets else 30
        if self.table.horizontalScrollBar().isVisible():
            height += self.table.horizontalScrollBar().height()
        self.table.setMinimumHeight(height)

    @Slot(object)
    def _loaded(self, payload: dict[str, Any]) -> None:
        self._budgets = payload["budgets"]
        self.table.setRowCount(len(self._budgets))
        for r, (b, status) in enumerate(self._budgets):
            cells = [b.name, b.scope.describe(), b.period, format_usd(b.limit_nanos),
                     format_usd(status.spent_nanos), f"{status.percent:.0f}%"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c >= 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
            self.table.item(r, 5).setForeground(_color(STATE_COLORS[status.state]))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._fit_rows()
        self.empty.setVisible(not self._budgets)
        for name, box in self.scope_boxes.items():
            text = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItem(ANY)
            box.addItems(payload["seen"].get(name, []))
            box.setCurrentText(text or ANY)
            box.blockSignals(False)
        keys = payload["seen"].get("tag keys", [])
        self.tags.setToolTip("Tag keys seen: " + (", ".join(keys) if keys else "none yet"))

    @Slot()
    def _selected(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        self.remove_button.setEnabled(bool(rows))
        if len(rows) != 1:
            return
        budget = self._budgets[rows.pop()][0]
        self._editing = budget.name
        self.editor.setTitle(f"Edit budget '{budget.name}'")
        self.save_button.setText("Save changes")
        self.name.setText(budget.name)
        self.limit.setText(budget.limit_usd)
        self.period.setCurrentText(budget.period)
        for name, box in self.scope_boxes.items():
            box.setCurrentText(getattr(budget.scope, name) or ANY)
        self.tags.setText(", ".join(f"{k}={v}" for k, v in budget.scope.tags))
        self.thresholds.setText(",".join(str(t) for t in budget.thresholds))
        self.enforce.setChecked(budget.enforce)

    @Slot()
    def clear_form(self) -> None:
        self._editing = None
        self.table.clearSelection()
        self.editor.setTitle("New budget")
        self.save_button.setText("Add budget")
        for w in (self.name, self.limit, self.tags):
            w.clear()
        self.thresholds.setText("50,80,100")
        self.period.setCurrentIndex(2)
        for box in self.scope_boxes.values():
            box.setCurrentText(ANY)
        self.enforce.setChecked(False)
        self.preview_label.clear()
        self.message.clear()

    @Slot()
    def save(self) -> None:
        try:
            budget = self.budget_from_form()
        except (BudgetError, ValueError) as exc:
            self.message.setText(str(exc))
            return
        self.message.clear()
        self.request_save.emit(budget, self._editing)

    @Slot()
    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        for r in rows:
            self.request_remove.emit(self._budgets[r][0].name)

    @Slot()
    def _after_change(self) -> None:
        self.clear_form()
        self.request_load.emit()
        self.changed.emit()

    def done(self, result: int) -> None:
        if self._thread.isRunning():
            QMetaObject.invokeMethod(self._worker, "close", Qt.ConnectionType.BlockingQueuedConnection)
            self._thread.quit()
            self._thread.wait(5000)
        super().done(result)


def _color(hex_color: str) -> QBrush:
    return QBrush(QColor(hex_color))
