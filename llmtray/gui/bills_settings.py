"""Settings → Bills: connect or disconnect each billing source, and see its last sync and error.

Connecting checks the key's class, then the key with one call, puts it in the keyring and runs
the first sync (the backfill) right away rather than at the app's next interval — all on a
thread (the network and the keyring can both block), through the dialog's own `_KeyringCall`.
A key pasted here is never shown again: the field clears once connected.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QLineEdit, QPushButton, QWidget

from llmtray import config as configmod
from llmtray.billing.errors import BillingError
from llmtray.billing.keys import SPECS
from llmtray.billing.sources import SOURCES
from llmtray.billing.sync import connect, disconnect, sync_source
from llmtray.billing.view import source_statuses
from llmtray.gui.settings_dialog import _KeyringCall
from llmtray.paths import Paths

NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "openrouter": "OpenRouter"}
# `_KeyringCall` reports a failure as "TypeName: message"; these are ours, worded for the user
BILLING_ERRORS = {cls.__name__ for cls in (BillingError, *BillingError.__subclasses__())}


class BillsSection(QGroupBox):
    """One row per source: name, key field, Connect, Disconnect, and a status line under it."""

    def __init__(self, paths: Paths, parent: QWidget | None = None):
        super().__init__("Bills — what each provider billed (admin / management keys)", parent)
        self._db: Path = paths.db
        self._config_file = paths.config_file
        self._calls: list[_KeyringCall] = []
        grid = QGridLayout(self)
        grid.setColumnStretch(1, 1)
        self.keys: dict[str, QLineEdit] = {}
        self.status: dict[str, QLabel] = {}
        self.connect_buttons: dict[str, QPushButton] = {}
        self.disconnect_buttons: dict[str, QPushButton] = {}
        for row, name in enumerate(SOURCES):
            key = QLineEdit()
            key.setEchoMode(QLineEdit.EchoMode.Password)
            key.setPlaceholderText(SPECS[name].prefix + "…" if SPECS[name].prefix else "management key")
            key.setToolTip(f"Needs {SPECS[name].kind}")
            add, remove = QPushButton("Connect"), QPushButton("Disconnect")
            add.clicked.connect(lambda _=False, n=name: self._connect(n))
            remove.clicked.connect(lambda _=False, n=name: self._disconnect(n))
            status = QLabel("…")
            status.setObjectName("muted")
            status.setWordWrap(True)
            grid.addWidget(QLabel(NAMES[name]), 2 * row, 0)
            grid.addWidget(key, 2 * row, 1)
            grid.addWidget(add, 2 * row, 2)
            grid.addWidget(remove, 2 * row, 3)
            grid.addWidget(status, 2 * row + 1, 1, 1, 3)
            self.keys[name], self.status[name] = key, status
            self.connect_buttons[name], self.disconnect_buttons[name] = add, remove
        self.refresh()

    def _run(self, fn, done) -> None:  # noqa: ANN001
        call = _KeyringCall()  # no parent: it must outlive a dialog closed meanwhile
        call.finished.connect(done)
        self._calls.append(call)
        call.run(fn)

    @Slot()
    def refresh(self) -> None:
        """Read each source's state (keyring and database) off the GUI thread."""
        self._run(lambda: json.dumps(source_statuses(self._db)), self._show)

    @Slot(bool, str)
    def _show(self, ok: bool, payload: str) -> None:
        if not ok:
            for label in self.status.values():
                label.setText(f"Unavailable: {payload}")
            return
        for row in json.loads(payload):
            name = row["source"]
            self.disconnect_buttons[name].setEnabled(row["connected"])
            self.status[name].setText(describe(row))

    def _connect(self, name: str) -> None:
        key = self.keys[name].text().strip()
        if not key:
            self.status[name].setText(f"Paste {SPECS[name].kind} first.")
            return
        self.status[name].setText("Checking the key with one call, then fetching the last 30 days…")
        self.connect_buttons[name].setEnabled(False)

        def work() -> str:
            config = configmod.load(self._config_file)
            connect(config, name, key)
            try:
                sync_source(self._db, config, name)
            except BillingError:
                pass  # recorded as the source's state, which the refresh shows
            return name

        self._run(work, lambda ok, message, n=name: self._connected(n, ok, message))

    def _connected(self, name: str, ok: bool, message: str) -> None:
        self.connect_buttons[name].setEnabled(True)
        if ok:
            self.keys[name].clear()
            self.refresh()
            return
        kind, _, text = message.partition(": ")
        if kind in BILLING_ERRORS:
            self.status[name].setText(text)
        else:
            self.status[name].setText(f"The key works, but the keyring did not keep it ({message}); "
                                      f"set {SPECS[name].env} instead.")

    def _disconnect(self, name: str) -> None:
        self._run(lambda: disconnect(self._db, name), lambda ok, message: self.refresh())

    def wait(self, timeout: float = 1.0) -> None:
        """Let running calls finish before the dialog goes (as the webhook's do)."""
        for call in self._calls:
            if call.thread is not None:
                call.thread.join(timeout=timeout)


def describe(row: dict) -> str:
    """One line: 'Connected · synced 2026-12-07 04:30Z · 30 days, $12.34 billed' or the problem."""
    if row["key_problem"]:
        return row["key_problem"]
    if not row["connected"]:
        return f"Not connected (or set {SPECS[row['source']].env})."
    parts = ["Connected"]
    if row["last_sync"]:
        parts.append(f"synced {row['last_sync']}")
    if row["days"]:
        parts.append(f"{row['days']} days, ${row['billed_usd']} billed")
    if row["state"] not in ("ok", "never_synced") and row["message"]:
        parts.append(row["message"])
    return " · ".join(parts)
