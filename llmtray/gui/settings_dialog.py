"""Settings: what config.toml holds, editable without a text editor, plus the webhook secret.

Saving writes config.toml through `config.save` (comments and layout kept, validated first, so a
bad value is shown next to its field and nothing is written). The webhook URL is a secret: it
goes to the keyring (or, where there is none, to a 0600 file as the ingest token does), and a
keyring can block (locked store, auto-login) — so the keyring is touched on a
thread of its own with a timeout, and "not set", "locked/timed out" and "no keyring" are told
apart in the dialog instead of failing silently (DESKTOP.md).
"""

from __future__ import annotations

import tomllib

import threading
from collections.abc import Callable
from functools import partial
from decimal import Decimal, InvalidOperation
from zoneinfo import available_timezones

from PySide6.QtCore import QObject, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from llmtray import config as configmod
from llmtray.core.alerts import load_webhook_url, save_webhook_url
from llmtray.core.errors import ConfigError
from llmtray.core.pricing import GENAI_PRICES_VERSION, data_cutoff
from llmtray.gui.settings_email import EmailSection
from llmtray.paths import Paths

KEYRING_TIMEOUT_MS = 5000
SYSTEM_ZONE = "System time zone"
PRICING_TEMPLATE = """\
# Your own prices for llmtray (USD per million tokens). After editing: `llmtray reprice`.
#
# [[model]]            # a self-hosted model costs nothing
# provider = "ollama"
# model = "*"
# input_mtok = 0
# output_mtok = 0
#
# [[model]]            # a negotiated discount on list prices
# provider = "openai"
# model = "gpt-4o*"
# discount = 0.8
"""


def first_sentence(exc: Exception) -> str:
    """A backend's message cut to its first sentence: keyring's NoKeyringError is a paragraph of
    install advice that squashed the form."""
    text = " ".join(str(exc).split())
    first = text.split(". ", 1)[0].rstrip(".")
    return first[:160] or type(exc).__name__


# What takes effect when (#17 item 16): said where the settings are, not only in the README.
APPLIES_NOTE = ("Price overrides apply to new events at once (llmtray reprice updates stored ones). "
                "The port and proxy upstreams ([proxy.upstreams] in the settings file) apply after "
                "restarting llmtray.")


class _KeyringCall(QObject):
    """Runs one keyring call on a plain thread. Signals: finished(ok, value_or_message).

    The payload is a str ("" for none): PySide6 has mis-counted references of Python objects
    (None in particular) sent through `object` signals from non-Qt threads."""

    finished = Signal(bool, str)

    thread: threading.Thread | None = None

    def run(self, fn: Callable[[], object]) -> None:
        def work() -> None:
            try:
                value = fn()
                self.finished.emit(True, value if isinstance(value, str) else "")
            except Exception as exc:  # shown to the user: the backend's first sentence
                self.finished.emit(False, first_sentence(exc))

        self.thread = threading.Thread(target=work, name="llmtray-keyring", daemon=True)
        self.thread.start()


class SettingsDialog(QDialog):
    """Signals: saved(Config) after config.toml was written."""

    saved = Signal(object)

    def __init__(self, paths: Paths, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("llmtray settings")
        self.setMinimumWidth(520)
        self.paths = paths
        self._webhook_file = paths.webhook_file
        try:
            current = configmod.load(paths.config_file)
            load_error = None
        except ConfigError as exc:
            current, load_error = configmod.Config(), str(exc)
        self._current = current

        # WORKAROUND: no Qt property keyword arguments in constructors (QSpinBox(minimum=…)):
        # PySide6 6.12 drops a reference to None for each, and the interpreter aborts on exit
        # ("none_dealloc") once enough dialogs were built. Plain setters instead.
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(current.port)
        self.timezone = QComboBox()
        self.timezone.setEditable(True)
        # Items carry no userData: QComboBox.addItem(text, data) drops a reference to None per
        # call in PySide6 6.12 (same crash as above). The zone's text is its id.
        self.timezone.addItem(SYSTEM_ZONE)
        self.timezone.addItems(sorted(available_timezones()))
        self.timezone.setCurrentIndex(max(0, self.timezone.findText(current.timezone)) if current.timezone else 0)
        self.week_start = QComboBox()
        self.week_start.addItems([day.capitalize() for day in configmod.WEEKDAYS])
        self.week_start.setCurrentIndex(current.week_start)
        self.spike_factor = QDoubleSpinBox()
        self.spike_factor.setDecimals(1)
        self.spike_factor.setRange(1.5, 100)
        self.spike_factor.setValue(float(current.spike_factor))
        self.spike_floor = QLineEdit(str(current.spike_floor_usd))
        self.webhook = QLineEdit()
        self.webhook.setPlaceholderText("https://hooks.slack.com/services/…")
        self.webhook.setEnabled(False)
        self.webhook_status = QLabel("Reading the keyring…")
        self.webhook_status.setWordWrap(True)
        self.error = QLabel(load_error or "")
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Ingest port (restart to apply)", self.port)
        form.addRow("Time zone for days and months", self.timezone)
        form.addRow("Weeks start on", self.week_start)
        form.addRow("Spike alert: ×", self.spike_factor)
        form.addRow("Spike alert: at least $", self.spike_floor)
        form.addRow("Webhook (Slack-compatible)", self.webhook)
        form.addRow("", self.webhook_status)

        prices = QHBoxLayout()
        prices.addWidget(QLabel(f"Prices: {GENAI_PRICES_VERSION} (data to {data_cutoff():%Y-%m-%d})"))
        edit = QPushButton("Edit price overrides…")
        edit.clicked.connect(self.edit_pricing)
        prices.addStretch(1)
        prices.addWidget(edit)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)

        from llmtray.gui.bills_settings import BillsSection  # here: it uses this module's _KeyringCall
        from llmtray.gui.settings_agents import AgentsSection

        # Each section in its own module (settings_email, settings_agents, bills_settings) and on
        # its own tab: stacked, they made a dialog 840 px tall, past a laptop's screen.
        self.email = EmailSection(current.email, db_path=paths.db, tz=current.tz)
        self.agents = AgentsSection(current.agents, paths.db,  # in team mode, this machine's ledger is its own
                                    ledger=paths.local_db if paths.team else None)
        self.bills = BillsSection(paths)
        self.applies = QLabel(APPLIES_NOTE)
        self.applies.setWordWrap(True)
        general = QWidget()
        general_layout = QVBoxLayout(general)
        general_layout.addLayout(form)
        general_layout.addLayout(prices)
        general_layout.addWidget(self.applies)
        general_layout.addStretch(1)
        self.email.setTitle("")  # the tab names them
        self.agents.setTitle("")
        self.bills.setTitle("What each provider billed (needs an admin or management key)")
        self.tabs = QTabWidget()
        self.tabs.addTab(general, "General")
        self.tabs.addTab(self.email, "Email")
        self.tabs.addTab(self.agents, "Coding agents")
        self.tabs.addTab(self.bills, "Bills")

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(QLabel(f"Settings file: {paths.config_file}"))
        layout.addWidget(self.error)
        layout.addWidget(buttons)

        self._original_webhook: str | None = None
        self._keyring_ok = False
        self._calls: list[_KeyringCall] = []
        self._saving: configmod.Config | None = None
        self._timeout = QTimer(self)
        self._timeout.setSingleShot(True)
        self._timeout.setInterval(KEYRING_TIMEOUT_MS)
        self._timeout.timeout.connect(self._keyring_timed_out)
        # partial, not a lambda on self: the keyring thread must hold no reference to the dialog
        # (its last one dropped there deletes the dialog off the GUI thread: a crash)
        self._call_keyring(partial(load_webhook_url, self._webhook_file), self._webhook_loaded)

    # --- keyring, off the GUI thread ---------------------------------------------------------------

    def _call_keyring(self, fn: Callable[[], object], done: Callable[[bool, str], None]) -> None:
        # No parent: the call object must outlive a dialog closed while the keyring still thinks
        # (its thread holds the only reference); Qt drops connections to a destroyed dialog.
        call = _KeyringCall()
        call.finished.connect(done)
        call.finished.connect(self._timeout.stop)
        self._calls.append(call)
        self._timeout.start()
        call.run(fn)

    @Slot(bool, str)
    def _webhook_loaded(self, ok: bool, value: str) -> None:
        self._keyring_ok = ok
        self.webhook.setEnabled(ok)
        if ok:
            self._original_webhook = value or None
            self.webhook.setText(self._original_webhook or "")
            if not value:
                self.webhook_status.setText("Not set.")
            elif self._webhook_file.exists():
                self.webhook_status.setText(f"Kept in {self._webhook_file} (readable only by you; no keyring).")
            else:
                self.webhook_status.setText("Kept in the system keyring.")
        else:
            self.webhook_status.setText(f"No keyring available ({value}); the webhook can't be stored.")

    @Slot()
    def _keyring_timed_out(self) -> None:
        self.webhook_status.setText("The keyring did not answer (locked?). Unlock it and reopen Settings.")
        self.webhook.setEnabled(False)

    # --- saving ------------------------------------------------------------------------------------

    def _values(self) -> dict[str, dict[str, object]]:
        """What the form changed, and only that: saving must not pin every default into the
        user's config.toml (a later default would never reach them)."""
        try:
            floor = Decimal(self.spike_floor.text().strip().lstrip("$"))
        except InvalidOperation:
            raise ConfigError(f"spike floor: {self.spike_floor.text()!r} is not a dollar amount") from None
        text = self.timezone.currentText().strip()
        zone = None if text in ("", SYSTEM_ZONE) else text
        now = self._current
        form = {
            ("ingest", "port"): (self.port.value(), now.port),
            ("display", "timezone"): (zone, now.timezone),
            ("display", "week_start"): (configmod.WEEKDAYS[self.week_start.currentIndex()],
                                        configmod.WEEKDAYS[now.week_start]),
            ("alerts", "spike_factor"): (Decimal(str(round(self.spike_factor.value(), 1))), now.spike_factor),
            ("alerts", "spike_floor_usd"): (floor, now.spike_floor_usd),
        }
        changed: dict[str, dict[str, object]] = {}
        for (section, key), (value, before) in form.items():
            if value != before:
                changed.setdefault(section, {})[key] = value
        for tables in (self.email.values(), self.agents.values()):  # their keys map 1:1 onto the file's
            for section, table in tables.items():
                on_file = self._file_section(section)
                for key, value in table.items():
                    if value != on_file.get(key):
                        changed.setdefault(section, {})[key] = value
        return changed

    def _file_section(self, section: str) -> dict[str, object]:
        """[section] as config.toml holds it now."""
        try:
            data = tomllib.loads(self.paths.config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return {}
        table = data.get(section)
        return table if isinstance(table, dict) else {}

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.layout().activate()  # the wrapped message's height counts in the hint from now on
        self.resize(self.width(), max(self.height(), self.sizeHint().height()))  # grow, don't squash the form

    @Slot()
    def save(self) -> None:
        try:
            changes = self._values()
            config = configmod.save(self.paths.config_file, changes) if changes else self._current
        except ConfigError as exc:
            self._show_error(str(exc))
            return
        url = self.webhook.text().strip() or None
        if self._keyring_ok and url != self._original_webhook:
            self.save_button.setEnabled(False)
            self._saving = config
            self._call_keyring(partial(save_webhook_url, url, self._webhook_file), self._webhook_saved)
            return
        self.saved.emit(config)
        self.accept()

    @Slot(bool, str)
    def _webhook_saved(self, ok: bool, message: str) -> None:
        self.save_button.setEnabled(True)
        if not ok:
            self._show_error(f"Settings saved, but the webhook URL was not: {message}.")
            return
        self.saved.emit(self._saving)
        self.accept()

    def done(self, result: int) -> None:
        """Give a keyring call still running a moment to finish, so it never reports into a
        dialog (or an interpreter) that is going away; a hung keyring is abandoned after 1 s."""
        for call in self._calls:
            if call.thread is not None:
                call.thread.join(timeout=1.0)
        self.email.wait()
        self.bills.wait()
        self.agents.thread.join(timeout=1.0)
        super().done(result)

    @Slot()
    def edit_pricing(self) -> None:
        path = self.paths.pricing_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(PRICING_TEMPLATE, encoding="utf-8")
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
