"""The Email section of Settings: SMTP server, login, recipients, alert mails and the digest,
with "Send test mail" and a state line that says what happened.

The password goes to the keyring (its own button, so it is never written to config.toml and
never held by the dialog longer than needed). Sending a test and touching the keyring happen on
plain threads (`_KeyringCall`): SMTP has a 20 s timeout and a keyring may wait on an unlock
prompt, neither of which may freeze the window. The test uses the values on screen, unsaved, so
a user can try settings before keeping them.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from email.message import EmailMessage
from pathlib import Path

from PySide6.QtCore import Qt, QTime, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTimeEdit,
    QWidget,
)

from llmtray import config as configmod
from llmtray.core.errors import ConfigError
from llmtray.mail import smtp
from llmtray.mail.service import last_news

OK_STYLE, ERROR_STYLE = "color: #1e8449", "color: #c0392b"


class EmailSection(QGroupBox):
    """`values()` gives the `[email]` updates for `config.save` (all None when no server is set,
    so an unused section never appears in config.toml)."""

    def __init__(self, current: configmod.EmailConfig, parent: QWidget | None = None, *,
                 db_path: Path | None = None, tz: tzinfo | None = None):
        super().__init__("Email", parent)
        self.host = QLineEdit(current.host or "")
        self.host.setPlaceholderText("smtp.example.com")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("default")
        self.port.setValue(current.port or 0)
        self.security = QComboBox()
        self.security.addItems(list(configmod.EMAIL_SECURITY))
        self.security.setCurrentIndex(configmod.EMAIL_SECURITY.index(current.security))
        self.username = QLineEdit(current.username or "")
        self.username.setPlaceholderText("none: no login")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("kept in the keyring")
        self.save_password = QPushButton("Save password")
        self.save_password.clicked.connect(self._save_password)
        self.sender = QLineEdit(current.sender or "")
        self.sender.setPlaceholderText("llmtray@example.com")
        self.to = QLineEdit(", ".join(current.to))
        self.to.setPlaceholderText("me@example.com, lead@example.com")
        self.alerts = QCheckBox("Every alert also by mail")
        self.alerts.setChecked(current.alerts)
        self.digest = QComboBox()
        self.digest.addItems(list(configmod.DIGEST_CHOICES))
        self.digest.setCurrentIndex(configmod.DIGEST_CHOICES.index(current.digest))
        self.digest_at = QTimeEdit(QTime.fromString(current.digest_at, "HH:mm"))
        self.digest_at.setDisplayFormat("HH:mm")
        self.test = QPushButton("Send test mail")
        self.test.clicked.connect(self.send_test)
        self.state = QLabel("Not tested yet." if current.configured else "Not set up.")
        self.state.setWordWrap(True)
        # Room for four lines up front: a top-level dialog doesn't grow for a wrapped label whose
        # text arrives later, and an SMTP error cut in half is no help. The tooltip has it whole.
        self.state.setMinimumHeight(self.state.fontMetrics().lineSpacing() * 4 + 4)
        self.state.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        server = QHBoxLayout()
        server.addWidget(self.host, 1)
        server.addWidget(QLabel("port"))
        server.addWidget(self.port)
        server.addWidget(self.security)
        login = QHBoxLayout()
        login.addWidget(self.username, 1)
        login.addWidget(self.password, 1)
        login.addWidget(self.save_password)
        schedule = QHBoxLayout()
        schedule.addWidget(self.alerts)
        schedule.addStretch(1)
        schedule.addWidget(QLabel("Digest"))
        schedule.addWidget(self.digest)
        schedule.addWidget(QLabel("at"))
        schedule.addWidget(self.digest_at)
        test = QHBoxLayout()
        test.addWidget(self.test)
        test.addStretch(1)
        form = QFormLayout(self)
        form.addRow("SMTP server", server)
        form.addRow("Login, password", login)
        form.addRow("From", self.sender)
        form.addRow("To", self.to)
        form.addRow("Send", schedule)
        form.addRow("", test)
        form.addRow(self.state)  # a full-width row: an SMTP error is a sentence or two
        self._calls: list[object] = []
        self._password_set = False
        if db_path is not None and current.configured:  # what happened to the mail sent meanwhile
            self._run(lambda: last_news(db_path, tz), self._news)

    def values(self) -> dict[str, dict[str, object]]:
        recipients = [a for a in re.split(r"[\s,;]+", self.to.text()) if a]
        if not (self.host.text().strip() or self.sender.text().strip() or recipients):
            return {"email": dict.fromkeys(("host", "port", "security", "username", "from", "to", "alerts",
                                            "digest", "digest_at"))}
        return {"email": {
            "host": self.host.text().strip() or None,
            "port": self.port.value() or None,
            "security": self.security.currentText(),
            "username": self.username.text().strip() or None,
            "from": self.sender.text().strip() or None,
            "to": recipients or None,
            "alerts": self.alerts.isChecked(),
            "digest": self.digest.currentText(),
            "digest_at": self.digest_at.time().toString("HH:mm"),
        }}

    def email_config(self) -> configmod.EmailConfig:
        """The settings on screen, validated like config.toml (raises `ConfigError` naming the key)."""
        values = {k: v for k, v in self.values()["email"].items() if v is not None}
        return configmod.parse({"email": values}, "Email settings").email

    # --- off the GUI thread ------------------------------------------------------------------------

    def _run(self, fn, done) -> None:  # noqa: ANN001 - (callable, slot)
        from llmtray.gui.settings_dialog import _KeyringCall  # the dialog's thread helper (it includes us)

        call = _KeyringCall()
        call.finished.connect(done)
        self._calls.append(call)
        call.run(fn)

    @Slot()
    def send_test(self) -> None:
        try:
            config = self.email_config()
        except ConfigError as exc:
            self._show(False, str(exc))
            return
        typed = self.password.text()
        message = EmailMessage()
        message["Subject"] = "[llmtray] Test mail"
        message.set_content("This is a test from llmtray's settings: alert mails and digests will arrive "
                            "like this one.\n")

        def send() -> None:
            smtp.send(config, message, typed or smtp.load_password())

        self.test.setEnabled(False)
        self._show(None, f"Sending to {', '.join(config.to) or '…'}…")
        self._run(send, self._tested)

    @Slot(bool, str)
    def _news(self, ok: bool, text: str) -> None:
        """The last digest and mail problem, as news (neutral: the problem may be fixed since)."""
        if ok and text and self.state.text() == "Not tested yet.":  # a test started meanwhile says more
            self._show(None, text)

    @Slot(bool, str)
    def _tested(self, ok: bool, detail: str) -> None:
        self.test.setEnabled(True)
        sent_to = ", ".join(a for a in re.split(r"[\s,;]+", self.to.text()) if a)
        self._show(ok, f"Sent to {sent_to} at {QTime.currentTime().toString('HH:mm')}." if ok
                   else f"Not sent — {detail.removeprefix('MailError: ')}")

    @Slot()
    def _save_password(self) -> None:
        password = self.password.text()
        self._password_set = bool(password)
        self.save_password.setEnabled(False)
        self._run(lambda: smtp.save_password(password or None), self._password_saved)

    @Slot(bool, str)
    def _password_saved(self, ok: bool, detail: str) -> None:
        self.save_password.setEnabled(True)
        if not ok:
            self._show(False, f"Password not saved: {detail}")
            return
        self.password.clear()
        self._show(True, "Password kept in the system keyring." if self._password_set
                   else "Password removed from the keyring.")

    def _show(self, ok: bool | None, text: str) -> None:
        self.state.setStyleSheet("" if ok is None else OK_STYLE if ok else ERROR_STYLE)
        self.state.setText(text)
        self.state.setToolTip(text)

    def wait(self, timeout: float = 1.0) -> None:
        """Give threads still running a moment (the dialog is closing)."""
        for call in self._calls:
            thread = getattr(call, "thread", None)
            if thread is not None:
                thread.join(timeout=timeout)
