"""Settings → Coding agents: shows what was found (off the GUI thread) and writes `[agents]`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from llmtray import config as configmod
from llmtray.core.store import Store
from llmtray.paths import resolve
from tests.agents.kit import make_home, scan


@pytest.fixture
def scanned(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = make_home(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    store = Store.open(data_dir / "llmtray.db")
    scan(store, home)
    store.close()
    return resolve(data_dir), home


def test_the_section_shows_each_agents_logs_and_skips_and_saves_config(qtbot, scanned):
    from llmtray.gui.settings_dialog import SettingsDialog

    paths, home = scanned
    paths.config_file.write_text("# mine\n[agents.gemini-cli]\nbilling = \"subscription\"\n")
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    section = dlg.agents
    qtbot.waitUntil(lambda: "calls stored" in section.status["claude-code"].text(), timeout=10_000)
    claude = section.status["claude-code"].text()
    assert f"{home / '.claude' / 'projects'}: 4 files, 6 calls stored" in claude
    assert "1 × malformed JSON (Expecting ',' delimiter)" in claude
    assert "3 calls stored" in section.status["opencode"].text() and "2 files" in section.status["gemini-cli"].text()
    assert section.billing["gemini-cli"].currentIndex() == 1
    dlg.resize(760, dlg.sizeHint().height())
    dlg.grab().save(str(paths.data / "settings-agents.png"))
    section.enabled["claude-code"].setChecked(False)
    section.billing["codex"].setCurrentIndex(1)
    section.billing["gemini-cli"].setCurrentIndex(0)
    with qtbot.waitSignal(dlg.saved, timeout=5000):
        dlg.save()
    text = paths.config_file.read_text()
    assert "# mine" in text
    assert tomllib.loads(text)["agents"] == {"claude-code": {"enabled": False}, "codex": {"billing": "subscription"}}
    agents = configmod.load(paths.config_file).agents
    assert not agents.active("claude-code") and agents.of("codex").subscription and agents.active("gemini-cli")


def test_turning_everything_off_writes_one_key(qtbot, scanned):
    from llmtray.gui.settings_dialog import SettingsDialog

    paths, _ = scanned
    dlg = SettingsDialog(paths)
    qtbot.addWidget(dlg)
    dlg.agents.master.setChecked(False)
    assert not dlg.agents.enabled["codex"].isEnabled()
    with qtbot.waitSignal(dlg.saved, timeout=5000):
        dlg.save()
    assert tomllib.loads(paths.config_file.read_text())["agents"] == {"enabled": False}
