"""Settings' Email section: "Send test mail" reaches a real server off the GUI thread and says
what went wrong when it doesn't; saving writes [email] (never the password) or names the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmtray import config as configmod
from llmtray.mail import smtp
from llmtray.paths import resolve
from tests.mail.smtp_kit import PASSWORD, USER


@pytest.fixture
def paths(data_dir: Path):
    return resolve(data_dir)


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    """A real keyring backend (plaintext file, test only) so the password round-trips."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(smtp.PASSWORD_ENV, raising=False)
    import keyring.core

    keyring.core._keyring_backend = None
    yield
    keyring.core._keyring_backend = None


def dialog(qtbot, paths):  # noqa: ANN001, ANN201
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    return dlg


def fill(section, port: int, security: str = "none", username: str = "") -> None:  # noqa: ANN001
    section.host.setText("127.0.0.1")
    section.port.setValue(port)
    section.security.setCurrentText(security)
    section.username.setText(username)
    section.sender.setText("llmtray@example.com")
    section.to.setText("me@example.com, lead@example.com")


def test_test_mail_is_sent_and_the_state_says_so(qtbot, paths, smtp_server):
    server = smtp_server("plain")
    dlg = dialog(qtbot, paths)
    assert dlg.email.state.text() == "Not set up."
    fill(dlg.email, server.port)
    dlg.email.test.click()
    assert not dlg.email.test.isEnabled()  # the click returned at once; sending runs on a thread
    qtbot.waitUntil(lambda: dlg.email.state.text().startswith("Sent to"), timeout=20000)
    [(rcpt, msg)] = server.inbox.wait_for(1)
    assert rcpt == ["me@example.com", "lead@example.com"] and msg["Subject"] == "[llmtray] Test mail"
    assert dlg.email.test.isEnabled() and "me@example.com, lead@example.com" in dlg.email.state.text()
    assert not paths.config_file.exists()  # testing saves nothing


def test_wrong_password_is_shown(qtbot, paths, smtp_server, trust, file_keyring):
    server = smtp_server("starttls", auth=True)
    dlg = dialog(qtbot, paths)
    fill(dlg.email, server.port, "starttls", USER)
    dlg.email.password.setText("wrong")
    dlg.email.test.click()
    qtbot.waitUntil(lambda: dlg.email.state.text().startswith("Not sent"), timeout=20000)
    assert "wrong SMTP username or password" in dlg.email.state.text() and "c0392b" in dlg.email.state.styleSheet()

    dlg.email.password.setText(PASSWORD)  # kept in the keyring, then the test uses it from there
    dlg.email.save_password.click()
    qtbot.waitUntil(lambda: "keyring" in dlg.email.state.text(), timeout=10000)
    assert dlg.email.password.text() == "" and smtp.load_password() == PASSWORD
    dlg.email.test.click()
    qtbot.waitUntil(lambda: dlg.email.state.text().startswith("Sent to"), timeout=20000)
    assert len(server.inbox.received) == 1


def test_save_writes_the_section_and_never_the_password(qtbot, paths, file_keyring):
    paths.config_file.write_text("# mine\n[display]\nweek_start = \"sunday\"\n", encoding="utf-8")
    dlg = dialog(qtbot, paths)
    fill(dlg.email, 2525, "ssl", USER)
    dlg.email.password.setText(PASSWORD)
    dlg.email.alerts.setChecked(True)
    dlg.email.digest.setCurrentText("weekly")
    with qtbot.waitSignal(dlg.saved, timeout=10000) as saved:
        dlg.save()
    text = paths.config_file.read_text(encoding="utf-8")
    assert text.startswith("# mine") and PASSWORD not in text
    email = tomllib.loads(text)["email"]
    assert email["to"] == ["me@example.com", "lead@example.com"] and email["security"] == "ssl"
    assert saved.args[0].email == configmod.load(paths.config_file).email
    assert saved.args[0].email.alerts and saved.args[0].email.digest == "weekly"


def test_unused_section_is_not_written_and_bad_values_are_named(qtbot, paths):
    dlg = dialog(qtbot, paths)
    with qtbot.waitSignal(dlg.saved, timeout=10000):
        dlg.save()
    # nothing was changed, so nothing is written (Settings' Save writes only what changed)
    assert not paths.config_file.exists()
    paths.config_file.write_text("[display]\ntimezone = \"UTC\"\n", encoding="utf-8")
    before = paths.config_file.read_text(encoding="utf-8")
    dlg = dialog(qtbot, paths)
    fill(dlg.email, 25)
    dlg.email.to.setText("me@example.com, nobody")
    dlg.save()
    assert "email.to[1] must be a mail address" in dlg.error.text()
    assert paths.config_file.read_text(encoding="utf-8") == before
    dlg.email.test.click()  # the test names the same mistake, without sending
    assert "email.to[1]" in dlg.email.state.text()


def test_the_last_digest_and_mail_problem_are_shown(qtbot, paths):
    from llmtray.core.alerts import Alert, AlertLog
    from llmtray.core.db import open_db
    from llmtray.core.store import to_us
    from llmtray.mail.service import DIGEST_LAST

    paths.config_file.write_text('[email]\nhost = "127.0.0.1"\nfrom = "a@example.com"\nto = ["b@example.com"]\n'
                                 '[display]\ntimezone = "UTC"\n', encoding="utf-8")
    db = open_db(paths.db)
    log = AlertLog(db)
    log.set_state(DIGEST_LAST, "2026-03-17")
    log.record(Alert("mail", "warning", "Digest not sent", "wrong SMTP username or password",
                     to_us(datetime(2026, 3, 18, 8, 0, tzinfo=UTC))), snoozed=False)
    db.close()
    dlg = dialog(qtbot, paths)
    qtbot.waitUntil(lambda: dlg.email.state.text().startswith("Last digest"), timeout=10000)
    assert dlg.email.state.text() == ("Last digest: Tue 17 Mar. Last problem, Wed 18 Mar 08:00: Digest not sent — "
                                      "wrong SMTP username or password")
