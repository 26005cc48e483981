"""Settings → "Coding agents": reading agents' logs on or off, per agent on/off and billing, and
what was found (log folders, files, calls, lines skipped and why).

The status comes from the database and a look at the log folders, so it is read on a thread of its
own and arrives by signal (the GUI never waits on I/O). `values()` gives the `[agents]` part of
config.toml for `config.save`; defaults are written as "absent", so an untouched config stays empty.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from llmtray.core import db as dbmod
from llmtray.core.dburl import Database
from llmtray.agents.settings import LABELS, SOURCES, AgentsConfig

BILLING_TEXT = {"api": "Pay per token (API)", "subscription": "Subscription (show API value, not spend)"}


class _StatusReader(QObject):
    """Signals: loaded(list) — `llmtray.agents.status.status` rows, from a plain thread."""

    loaded = Signal(object)

    def start(self, db: Database, config: AgentsConfig, ledger: Path | None = None) -> threading.Thread:
        """`ledger`: this machine's own record of the files read, in team mode."""
        def work() -> None:
            from llmtray.agents.status import status

            try:
                conn = dbmod.connect(db, read_only=True)
                local = dbmod.connect(ledger, read_only=True) if ledger is not None and ledger.exists() else None
                try:
                    rows = status(conn, config, ledger_conn=local)
                finally:
                    conn.close()
                    if local is not None:
                        local.close()
            except sqlite3.Error as exc:  # no database yet, or an old schema: say so, don't fail
                rows = [{"agent": s, "error": str(exc)} for s in SOURCES]
            self.loaded.emit(rows)

        thread = threading.Thread(target=work, name="llmtray-agents-status", daemon=True)
        thread.start()
        return thread


class AgentsSection(QGroupBox):
    def __init__(self, config: AgentsConfig, db: Database, parent: QWidget | None = None,
                 ledger: Path | None = None):
        super().__init__("Coding agents", parent)
        self.master = QCheckBox("Read coding agents' usage logs on this machine")
        self.master.setChecked(config.enabled)
        grid = QGridLayout()
        self.enabled: dict[str, QCheckBox] = {}
        self.billing: dict[str, QComboBox] = {}
        self.status: dict[str, QLabel] = {}
        for row, source in enumerate(SOURCES):
            settings = config.of(source)
            box = QCheckBox(LABELS[source])
            box.setChecked(settings.enabled)
            billing = QComboBox()
            billing.addItems(list(BILLING_TEXT.values()))
            billing.setCurrentIndex(list(BILLING_TEXT).index(settings.billing))
            status = QLabel("Looking for logs…")
            status.setWordWrap(True)
            status.setStyleSheet("color: palette(placeholder-text)")
            grid.addWidget(box, 2 * row, 0)
            grid.addWidget(billing, 2 * row, 1)
            grid.addWidget(status, 2 * row + 1, 0, 1, 2)
            self.enabled[source], self.billing[source], self.status[source] = box, billing, status
        grid.setColumnStretch(0, 1)
        self.master.toggled.connect(self._master_toggled)
        self._master_toggled(config.enabled)
        layout = QVBoxLayout(self)
        layout.addWidget(self.master)
        layout.addLayout(grid)
        self._reader = _StatusReader()  # no parent: its thread may outlive a closed dialog
        self._reader.loaded.connect(self.show_status)
        self.thread = self._reader.start(db, config, ledger)

    @Slot(bool)
    def _master_toggled(self, on: bool) -> None:
        for source in SOURCES:
            self.enabled[source].setEnabled(on)
            self.billing[source].setEnabled(on)

    @Slot(object)
    def show_status(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.status[row["agent"]].setText(describe(row))

    def values(self) -> dict[str, dict[str, Any]]:
        """The `[agents]` table for `config.save` (None: back to the default, removed)."""
        table: dict[str, Any] = {"enabled": None if self.master.isChecked() else False}
        for source in SOURCES:
            billing = list(BILLING_TEXT)[self.billing[source].currentIndex()]
            entry = {k: v for k, v in (("enabled", None if self.enabled[source].isChecked() else False),
                                       ("billing", None if billing == "api" else billing)) if v is not None}
            table[source] = entry or None
        return {"agents": table}


def describe(row: dict[str, Any]) -> str:
    """One agent's status in a sentence or two."""
    if "error" in row:
        return f"Status unavailable: {row['error']}"
    if not row["roots"]:
        return "No logs found on this machine."
    text = f"{', '.join(row['roots'])}: {row['files']} files, {row['events']} calls stored"
    if row["newest_event"]:
        text += f", newest {row['newest_event'][:16].replace('T', ' ')} UTC"
    if row["billing"] == "subscription":
        text += f"; ${row['api_equivalent_usd']} at API prices (not spend)"
    if row["skipped_lines"]:
        reasons = "; ".join(f"{s['lines']} × {reason} (first at {s['first']})" for reason, s in row["skipped"].items())
        text += f". Skipped lines: {reasons}"
    return text
