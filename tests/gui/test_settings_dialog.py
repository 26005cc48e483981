"""The settings dialog writes a valid config.toml (keeping the user's comments), keeps the webhook
in the keyring, and tells a broken keyring apart from an empty one."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from llmtray import config as configmod
from llmtray.paths import resolve


@pytest.fixture
def paths(data_dir: Path):
    return resolve(data_dir)


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    """A real keyring backend (plaintext file, test only) so the secret round-trips."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    import keyring.core

    keyring.core._keyring_backend = None  # let keyring pick the backend from the environment again
    yield
    keyring.core._keyring_backend = None


def test_save_writes_config_and_keeps_comments(qtbot, paths, file_keyring):
    paths.config_file.write_text("# my notes\n[display]\nweek_start = 'sunday'  # US calendar\n")
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.webhook.isEnabled(), timeout=5000)
    assert dlg.week_start.currentText() == "Sunday"
    dlg.port.setValue(8899)
    dlg.timezone.setCurrentIndex(dlg.timezone.findText("Asia/Kathmandu"))
    dlg.spike_floor.setText("2.50")
    dlg.webhook.setText("https://hooks.example.test/T000")
    with qtbot.waitSignal(dlg.saved, timeout=5000) as saved:
        dlg.save()
    text = paths.config_file.read_text()
    assert "# my notes" in text
    data = tomllib.loads(text)
    assert data["ingest"]["port"] == 8899 and data["display"]["timezone"] == "Asia/Kathmandu"
    assert saved.args[0] == configmod.load(paths.config_file)
    from llmtray.core.alerts import load_webhook_url

    assert load_webhook_url() == "https://hooks.example.test/T000"
    assert "hooks.example" not in text  # secrets never in config.toml


def test_invalid_value_shown_and_nothing_written(qtbot, paths):
    from llmtray.gui.settings_dialog import SettingsDialog

    paths.config_file.write_text("[ingest]\nport = 9000\n")
    before = paths.config_file.read_text()
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    dlg.timezone.setEditText("Mars/Olympus")
    dlg.timezone.setCurrentIndex(-1)
    dlg.timezone.setEditText("Mars/Olympus")
    dlg.save()
    assert "Mars/Olympus" in dlg.error.text() and "IANA" in dlg.error.text()
    assert paths.config_file.read_text() == before


def test_no_keyring_is_said_plainly(qtbot, paths):
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)  # conftest's null keyring backend: nothing can be stored
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.webhook_status.text() != "Reading the keyring…", timeout=5000)
    assert dlg.webhook_status.text() in ("Not set.",) or "No keyring" in dlg.webhook_status.text()


def test_broken_config_file_is_named_not_fatal(qtbot, paths):
    from llmtray.gui.settings_dialog import SettingsDialog

    paths.config_file.write_text("[ingest\nport = 1\n")
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    assert str(paths.config_file) in dlg.error.text()


def test_pricing_template_created(qtbot, paths, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    from llmtray.gui.settings_dialog import SettingsDialog

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    dlg.edit_pricing()
    assert opened == [str(paths.pricing_file)]
    from llmtray.core.pricing import load_overrides

    assert load_overrides(paths.pricing_file) == []  # the template is valid and all comments


@pytest.fixture
def no_keyring(monkeypatch):
    """No keyring backend at all (headless Linux without Secret Service): keyring raises
    NoKeyringError."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring.core

    keyring.core._keyring_backend = None
    yield
    keyring.core._keyring_backend = None


def test_save_writes_only_what_changed_as_toml_numbers(qtbot, paths):
    """Saving used to pin every default into config.toml, the floor as a string
    (`spike_floor_usd = "1"`); issue #17."""
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    with qtbot.waitSignal(dlg.saved, timeout=5000):
        dlg.save()  # nothing changed: nothing written
    assert not paths.config_file.exists()
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    dlg.spike_floor.setText("$2.50")
    dlg.spike_factor.setValue(6)
    with qtbot.waitSignal(dlg.saved, timeout=5000) as saved:
        dlg.save()
    assert tomllib.loads(paths.config_file.read_text()) == {"alerts": {"spike_factor": 6, "spike_floor_usd": 2.5}}
    assert saved.args[0].spike_floor_usd == Decimal("2.5") and saved.args[0].port == configmod.DEFAULT_PORT


def test_without_a_keyring_the_webhook_goes_to_a_private_file(qtbot, paths, no_keyring, caplog):
    """Headless Linux: the webhook URL is kept in a 0600 file as the ingest token is; the form is
    not squashed by keyring's paragraph of advice; reading it per alert logs nothing."""
    import logging
    import stat

    from llmtray.core.alerts import load_webhook_url
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(dlg.webhook.isEnabled, timeout=5000)
    assert dlg.webhook_status.text() == "Not set."
    dlg.webhook.setText("hooks.example.test/no-scheme")
    dlg.show()
    dlg.save()
    qtbot.waitUntil(lambda: "webhook URL was not" in dlg.error.text(), timeout=5000)
    assert "https://" in dlg.error.text() and len(dlg.error.text()) < 200
    assert dlg.height() >= dlg.sizeHint().height()  # grown for the message, nothing squashed
    assert not paths.webhook_file.exists()
    dlg.webhook.setText("https://hooks.example.test/T1")
    with qtbot.waitSignal(dlg.saved, timeout=5000):
        dlg.save()
    assert paths.webhook_file.read_text().strip() == "https://hooks.example.test/T1"
    assert stat.S_IMODE(paths.webhook_file.stat().st_mode) == 0o600
    assert "hooks.example" not in (paths.config_file.read_text() if paths.config_file.exists() else "")
    again = SettingsDialog(paths)
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.webhook.text() == "https://hooks.example.test/T1", timeout=5000)
    assert str(paths.webhook_file) in again.webhook_status.text()
    with caplog.at_level(logging.WARNING):
        assert load_webhook_url(paths.webhook_file) == "https://hooks.example.test/T1"
        paths.webhook_file.unlink()
        assert load_webhook_url(paths.webhook_file) is None  # no webhook, no keyring: nothing to warn about
    assert not [r for r in caplog.records if "keyring" in r.getMessage()]


def test_settings_say_what_applies_when(qtbot, paths):
    """#17 item 16: price overrides reload by themselves; upstreams need a restart — said here."""
    from llmtray.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    text = dlg.applies.text()
    assert "Price overrides apply to new events at once" in text and "[proxy.upstreams]" in text
    assert "after restarting llmtray" in text and dlg.applies.isVisible()
