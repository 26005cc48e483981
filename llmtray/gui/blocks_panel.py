"""The Blocks tab: what is blocked, why, until when, and how many calls each block refused.

A table of recent blocks (active first), each active one with an Unblock button, and an offer bar
for the block an alert suggested ("Block summarize for 1 h"): where notifications carry no
buttons (Windows and macOS balloons), clicking the alert opens this tab with the offer ready. The
panel runs no query and writes nothing: rows come from the dashboard's query lane (the `blocks`
view), and its requests go out as signals to `block_actions.BlockActions`.

Signals: lift_requested(int) — Unblock pressed; block_requested(str) — the offered block accepted.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QStackedWidget, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from llmtray.core.blocks import Block
from llmtray.gui.notify import block_label
from llmtray.gui.views import BlockList

COLUMNS = ("Block", "What", "Reason", "By", "Until", "Refused calls", "")
EMPTY_TEXT = ("Nothing is blocked.\n\nBlock a feature, model or tag from an alert, the tray menu or "
              "`llmtray block --feature F --for 1h`;\nguards (`llmtray guards add`) block by themselves "
              "when a call costs too much.")


class BlocksPanel(QWidget):
    lift_requested = Signal(int)
    block_requested = Signal(str)

    def __init__(self, tz: tzinfo | None, parent: QWidget | None = None):
        super().__init__(parent)
        self._tz = tz
        self._offered: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        self.offer_bar = QFrame()
        self.offer_bar.setObjectName("card")
        bar = QHBoxLayout(self.offer_bar)
        self.offer_text = QLabel()
        self.offer_text.setWordWrap(True)
        self.offer_button = QPushButton()
        self.offer_button.setObjectName("primary")
        self.offer_button.clicked.connect(self._accept_offer)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(self.offer_bar.hide)
        bar.addWidget(self.offer_text, 1)
        bar.addWidget(self.offer_button)
        bar.addWidget(dismiss)
        self.offer_bar.hide()
        layout.addWidget(self.offer_bar)
        self.stack = QStackedWidget()
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(36)  # room for the Unblock buttons
        for col, width in ((0, 60), (1, 200), (3, 60), (4, 170), (5, 120), (6, 110)):
            self.table.setColumnWidth(col, width)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)
        layout.addWidget(self.stack, 1)

    def set_blocks(self, data: BlockList) -> None:
        """Active blocks first (oldest first), then ended ones (newest first)."""
        active = sorted((b for b in data.blocks if b.active_at(data.now_us)), key=lambda b: b.id)
        ended = [b for b in data.blocks if not b.active_at(data.now_us)]
        rows = active + ended
        self.table.setRowCount(len(rows))
        for row, b in enumerate(rows):
            live = b.active_at(data.now_us)
            cells = (f"#{b.id}", b.what, b.reason, b.created_by, self._until(b, data.now_us),
                     f"{data.refused.get(b.id, 0):,}")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(b.reason if col == 2 else "")
                if col == 5:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if not live:
                    item.setForeground(Qt.GlobalColor.gray)
                self.table.setItem(row, col, item)
            self.table.setCellWidget(row, 6, self._unblock_button(b.id) if live else None)
        self.stack.setCurrentWidget(self.table if rows else self.empty)

    def offer(self, feature: str) -> None:
        """Show the block an alert suggested, ready to accept with one click."""
        self._offered = feature
        self.offer_text.setText(f"An alert suggests stopping the calls of feature “{feature}”. Refused calls are "
                                "answered with a 429 naming the block and counted here.")
        self.offer_button.setText(block_label(feature))
        self.offer_bar.show()

    @Slot()
    def _accept_offer(self) -> None:
        if self._offered:
            self.block_requested.emit(self._offered)
        self.offer_bar.hide()

    def _unblock_button(self, block_id: int) -> QPushButton:
        button = QPushButton("Unblock")
        button.clicked.connect(lambda _checked=False, i=block_id: self.lift_requested.emit(i))
        return button

    def _until(self, b: Block, now_us: int) -> str:
        if b.lifted_us is not None:
            return f"lifted {self._time(b.lifted_us)}"
        if b.until_us is None:
            return "until unblocked"
        return ("until " if b.until_us > now_us else "ended ") + self._time(b.until_us)

    def _time(self, us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, self._tz).strftime("%b %d %H:%M")
