"""Settings → Bills against the stub, with a real (file) keyring: a wrong key class is named, a
good key is checked, stored, synced at once and shown as connected; disconnecting forgets it."""

from __future__ import annotations

from datetime import timedelta

import keyring

from llmtray.billing.keys import KEYRING_SERVICE, SPECS
from llmtray.billing.sources import utc_today
from tests.billing.stub import KEYS, BillingStub, anthropic_cost
from tests.gui.test_settings_dialog import file_keyring, paths  # noqa: F401 - fixtures


def test_connect_check_sync_and_disconnect(qtbot, paths, file_keyring, monkeypatch):  # noqa: F811
    from llmtray.gui.settings_dialog import SettingsDialog

    for spec in SPECS.values():
        monkeypatch.delenv(spec.env, raising=False)
    with BillingStub() as stub:
        paths.config_file.write_text("".join(f'[billing.{s}]\nbase_url = "{stub.url}"\n' for s in SPECS))
        stub.data.anthropic_costs[utc_today() - timedelta(days=5)] = [
            anthropic_cost("1234.5", "claude-opus-5", "Claude Opus 5 Usage - Input Tokens")]
        dlg = SettingsDialog(paths)
        qtbot.addWidget(dlg)
        bills = dlg.bills
        qtbot.waitUntil(lambda: bills.status["openai"].text().startswith("Not connected"), timeout=10_000)

        bills.keys["openai"].setText("sk-proj-abc")
        bills.connect_buttons["openai"].click()
        qtbot.waitUntil(lambda: "project key" in bills.status["openai"].text(), timeout=10_000)
        assert stub.requests == []  # refused before anything was sent

        bills.keys["anthropic"].setText(KEYS["anthropic"])
        bills.connect_buttons["anthropic"].click()
        qtbot.waitUntil(lambda: bills.status["anthropic"].text().startswith("Connected"), timeout=15_000)
        assert "30 days, $12.345 billed" in bills.status["anthropic"].text()  # cents → dollars
        assert bills.keys["anthropic"].text() == ""  # never shown again
        assert keyring.get_password(KEYRING_SERVICE, "billing.anthropic") == KEYS["anthropic"]
        assert KEYS["anthropic"] not in paths.config_file.read_text()
        dlg.resize(720, dlg.sizeHint().height())
        qtbot.wait(100)
        dlg.grab().save("/tmp/settings_bills.png")

        bills.disconnect_buttons["anthropic"].click()
        qtbot.waitUntil(lambda: bills.status["anthropic"].text().startswith("Not connected"), timeout=10_000)
        assert keyring.get_password(KEYRING_SERVICE, "billing.anthropic") is None
        dlg.reject()
