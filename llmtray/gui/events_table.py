"""The recent-events table: a lazy model that holds only the pages the user scrolled to.

With millions of events, loading the table would take seconds and hundreds of megabytes; Qt's
`canFetchMore`/`fetchMore` ask for more rows only as the view nears the end, and each page is a
keyset query on the worker thread (`Queries.events_page`), so page 5,000 costs what page 1 does.
Sorting is done by the database, not by the model, for the same reason.

The Machine column (team events' `machine` tag, DESIGN §16) shows only while events carry the
tag; it comes from the row's tags, which the database can't sort by, so it doesn't sort.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from llmtray.core.dburl import MACHINE_TAG
from llmtray.core.money import format_usd, nanos_to_decimal, nanos_to_str
from llmtray.core.queries import PAGE_ORDERS, Filters
from llmtray.gui import theme
from llmtray.gui.query_worker import PageRequest
from llmtray.gui.views import EVENTS_PAGE

COLUMNS: tuple[tuple[str, str], ...] = (
    ("Time", "ts"), ("Provider", "provider"), ("Model", "model"), ("Feature", "feature"), ("User", "user"),
    ("Input", "input_tokens"), ("Output", "output_tokens"), ("Cost", "cost_nanos"), ("Latency", "latency_ms"),
    ("Status", "status"), ("Source", "source"), ("Machine", MACHINE_TAG),
)
MACHINE_COLUMN = len(COLUMNS) - 1
TEXT_COLUMN_MAX = 320  # px: a long feature name is elided past this, not the whole table
_NUMERIC = {"input_tokens", "output_tokens", "cost_nanos", "latency_ms"}
Index = QModelIndex | QPersistentModelIndex


class EventsModel(QAbstractTableModel):
    """Rows fetched so far, newest first unless the user sorts otherwise.

    Signals: page_wanted(token, PageRequest) — connect to a worker; answer with `add_page(token, rows)`.
    """

    page_wanted = Signal(int, object)

    def __init__(self, tz: tzinfo | None, parent: Any = None):
        super().__init__(parent)
        self._tz = tz
        self._rows: list[dict[str, Any]] = []
        self._filters = Filters()
        self._order, self._descending = "ts", True
        self._exhausted = True
        self._pending: int | None = None
        self._token = 0
        self._started = False  # nothing is asked for before the dashboard sets the first filters

    # --- Qt model API ---------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802, ANN201
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.TextAlignmentRole:
            return _align(COLUMNS[section][1])
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        row, key = self._rows[index.row()], COLUMNS[index.column()][1]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, key)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _align(key)
        if role == Qt.ItemDataRole.ForegroundRole:
            if key == "status" and row["status"] == "error" or key == "cost_nanos" and row["cost_nanos"] is None:
                return QColor(theme.ERROR if key == "status" else theme.WARN_TEXT)
            if key in ("ts", "source"):
                return QColor(theme.MUTED)
        if role == Qt.ItemDataRole.ToolTipRole:
            if key == "status" and row.get("error"):
                return row["error"]
            if key == "cost_nanos":
                if row["cost_nanos"] is None:
                    return "no price for this model: not counted in totals"
                return (f"${nanos_to_str(row['cost_nanos'])} · {row['cost_source']}"
                        + (f" · {row['pricing_version']}" if row.get("pricing_version") else ""))
        return None

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: N802, B008
        return not parent.isValid() and not self._exhausted and self._pending is None

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: N802, B008
        if self.canFetchMore(parent) and self._rows:
            last = self._rows[-1]
            self._request((last["sort_key"], last["id"]))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if COLUMNS[column][1] not in PAGE_ORDERS:
            return  # the view puts its sort indicator back (`EventsTable._keep_sortable`)
        self._order = COLUMNS[column][1]
        self._descending = order == Qt.SortOrder.DescendingOrder
        if self._started:
            self._restart()

    # --- feeding --------------------------------------------------------------------------

    @property
    def filters(self) -> Filters:
        return self._filters

    def set_filters(self, filters: Filters) -> None:
        """New filters: drop what is loaded and start again from the first page."""
        self._filters = filters
        self._started = True
        self._restart()

    def merge_head(self, filters: Filters, rows: list[dict[str, Any]]) -> None:
        """Newest events from a live refresh: prepended when the table shows newest-first,
        so scrolling position and loaded pages survive a commit."""
        if filters != self._filters or (self._order, self._descending) != ("ts", True) or self._pending is not None:
            return
        if not self._rows:
            self._append(rows)
            return
        newest = (self._rows[0]["ts"], self._rows[0]["id"])
        fresh = [r for r in rows if (r["ts"], r["id"]) > newest]
        if fresh:
            self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
            self._rows[:0] = fresh
            self.endInsertRows()

    @Slot(int, object)
    def add_page(self, token: int, rows: list[dict[str, Any]]) -> None:
        if token != self._pending:
            return  # an answer for filters or a sort no longer shown
        self._pending = None
        self._append(rows)

    def fetched(self) -> int:
        return len(self._rows)

    def complete(self) -> bool:
        """Every row the filters match is loaded (the last page came back short)."""
        return self._exhausted and self._pending is None

    def _append(self, rows: list[dict[str, Any]]) -> None:
        self._exhausted = len(rows) < EVENTS_PAGE
        if rows:
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows) + len(rows) - 1)
            self._rows.extend(rows)
            self.endInsertRows()

    def _restart(self) -> None:
        self.beginResetModel()
        self._rows = []
        self._exhausted = False
        self.endResetModel()
        self._request(None)

    def _request(self, after: tuple[Any, int] | None) -> None:
        self._token += 1
        self._pending = self._token
        self.page_wanted.emit(self._token, PageRequest(self._filters, self._order, self._descending, after))

    def _text(self, row: dict[str, Any], key: str) -> str:
        if key == MACHINE_TAG:
            return json.loads(row["tags"]).get(MACHINE_TAG, "") if row.get("tags") else ""
        value = row[key]
        if key == "ts":
            return datetime.fromtimestamp(value / 1e6, self._tz).strftime("%b %d %H:%M:%S")
        if key == "cost_nanos":
            return event_cost(value)
        if key in ("input_tokens", "output_tokens"):
            return f"{value:,}"
        if key == "latency_ms":
            return theme.format_ms(value) if value is not None else ""
        return "" if value is None else str(value)


def event_cost(nanos: int | None) -> str:
    """One call's cost, always to the micro-dollar so the column's decimal points line up and no
    cost is rounded away (they were cents from $0.01 up, six decimals below, and a nonzero cost
    under half a micro-dollar read "$0.00"). The tooltip has the exact amount."""
    if nanos is None:
        return "unpriced"
    if 0 < nanos < 1000:
        return "<$0.000001"
    return format_usd(nanos, precise=True) if nanos < 0 else f"${nanos_to_decimal(nanos):,.6f}"


def _align(key: str) -> Qt.AlignmentFlag:
    side = Qt.AlignmentFlag.AlignRight if key in _NUMERIC else Qt.AlignmentFlag.AlignLeft
    return side | Qt.AlignmentFlag.AlignVCenter


class EventsTable(QWidget):
    """The table view plus a line saying how much is loaded."""

    def __init__(self, model: EventsModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.view = QTableView()
        self.view.setModel(model)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setAlternatingRowColors(False)
        self.view.setShowGrid(False)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(24)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((130, 90, 230, 120, 80, 80, 80, 90, 80, 60, 90)):
            self.view.setColumnWidth(col, width)
        self.view.setColumnHidden(MACHINE_COLUMN, True)  # until events carry a machine tag
        self._sorted = (0, Qt.SortOrder.DescendingOrder)
        header.sortIndicatorChanged.connect(self._keep_sortable)
        layout.addWidget(self.view)
        self.status = QLabel("")
        self.status.setObjectName("muted")
        layout.addWidget(self.status)
        model.rowsInserted.connect(self._update_status)
        model.modelReset.connect(self._update_status)
        model.rowsInserted.connect(self._fit_text_columns)
        self._total: int | None = None

    def show_machines(self, shown: bool) -> None:
        self.view.setColumnHidden(MACHINE_COLUMN, not shown)

    @Slot(int, Qt.SortOrder)
    def _keep_sortable(self, column: int, order: Qt.SortOrder) -> None:
        """A click on a column the database can't sort by leaves the sort (and its arrow) as it was."""
        if COLUMNS[column][1] in PAGE_ORDERS:
            self._sorted = (column, order)
            return
        header = self.view.horizontalHeader()
        header.blockSignals(True)
        header.setSortIndicator(*self._sorted)
        header.blockSignals(False)

    def set_total(self, total: int) -> None:
        self._total = total
        self._update_status()

    @Slot()
    def _update_status(self) -> None:
        loaded = self.model.fetched()
        if self.model.complete() or self._total is not None and loaded >= self._total:
            noun = "event" if loaded == 1 else "events"
            self.status.setText(f"{loaded:,} {noun}, all shown; click a column to sort")
            return
        total = f" of {self._total:,}" if self._total is not None else ""
        self.status.setText(f"{loaded:,}{total} events loaded — scroll for more; click a column to sort")

    @Slot()
    def _fit_text_columns(self) -> None:
        """Widen Model, Feature and User to what the loaded rows need (up to a limit): their
        fixed widths truncated "customer-…" with half the table empty."""
        for col in (2, 3, 4):
            wanted = min(self.view.sizeHintForColumn(col) + 16, TEXT_COLUMN_MAX)  # + room before the next
            if wanted > self.view.columnWidth(col):
                self.view.setColumnWidth(col, wanted)
