"""`llmtray [--demo] --screenshot PATH` end to end, as a user runs it: a real process, offscreen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage


def run_llmtray(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("LLMTRAY_PORT", None)
    return subprocess.run([sys.executable, "-m", "llmtray", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def colours(image: QImage) -> int:
    """Distinct colours on a coarse grid: a blank or half-drawn window has a handful."""
    seen = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    return len(seen)


def test_screenshot_of_a_new_install_shows_onboarding(tmp_path: Path):
    shot = tmp_path / "shot.png"
    proc = run_llmtray("--data-dir", str(tmp_path / "data"), "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1400, 900)
    assert colours(image) > 20
    assert not (tmp_path / "data" / "ingest.json").exists()  # a screenshot never takes the port


def test_demo_screenshot_after_the_data_has_loaded(tmp_path: Path, demo_db_template: Path):
    """With demo history already in the demo database, `--demo` reuses it (no second fill)."""
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    shutil.copy(demo_db_template, data / "demo" / "llmtray.db")
    size_before = (data / "demo" / "llmtray.db").stat().st_size
    shot = tmp_path / "demo.png"
    proc = run_llmtray("--data-dir", str(data), "--demo", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1400, 900)
    assert colours(image) > 100  # bars in a dozen model colours, text, cards
    assert (data / "demo" / "llmtray.db").stat().st_size == size_before
    assert not (data / "llmtray.db").exists()  # demo data never touches the real database


def test_a_damaged_database_is_repaired_before_the_window_opens_it(qapp, tmp_path: Path):
    from llmtray.gui.prepare_db import prepare_database

    db = tmp_path / "llmtray.db"
    db.write_bytes(b"not a database, a sync tool's half-written copy" * 1000)
    recovered = prepare_database(qapp, db)
    assert recovered is not None and recovered.events == 0 and recovered.moved_to.exists()
    assert prepare_database(qapp, db) is None  # the fresh database passes


def test_an_old_database_is_upgraded_before_the_window_opens_it(qapp, tmp_path: Path, monkeypatch):
    """With the busy dialog (forced here: a small database upgrades in well under half a second)."""
    from PySide6.QtWidgets import QProgressDialog

    from llmtray.core import db as dbmod
    from llmtray.gui import prepare_db

    db = tmp_path / "llmtray.db"
    assert dbmod.migrate(db, upto=4) == 4
    assert [m.version for m in dbmod.pending_migrations(db)] == [m.version for m in dbmod.MIGRATIONS if m.version > 4]
    shown: list[str] = []
    monkeypatch.setattr(prepare_db, "BUSY_AFTER_S", 0.0)
    monkeypatch.setattr(QProgressDialog, "show", lambda self: shown.append(self.labelText()))
    assert prepare_db.prepare_database(qapp, db) is None
    assert dbmod.pending_migrations(db) == [] and (tmp_path / "llmtray.db.before-v5.bak").exists()
    assert shown and shown[0] in (prepare_db.CHECKING, prepare_db.UPGRADING)


def test_the_window_says_what_to_do_when_a_refresh_meets_damage(make_dashboard, tmp_path: Path):
    from llmtray.core.damage import damage_marker
    from tests.core.test_recovery import damage, fill

    db = tmp_path / "data" / "llmtray.db"
    db.parent.mkdir()
    fill(db)
    for table in ("rollup_day", "rollup_hour", "rollup"):  # what the charts read
        damage(db, table, pages=3)
    window = make_dashboard(db)
    assert window.status.text() == "refresh failed: database damaged (see above)"
    assert window.status.toolTip().startswith("The database is damaged")
    assert window.notice.isVisible() and "start it again" in window.notice.text()
    assert damage_marker(db).exists()


def test_a_database_another_llmtray_serves_is_not_touched(tmp_path: Path):
    """`llmtray serve` holds the data dir: the app must not move its file away under it."""
    from llmtray.ingest import discovery
    from llmtray.paths import Paths

    paths = Paths(tmp_path, tmp_path, tmp_path)

    def served_elsewhere(paths: Paths) -> bool:  # what run_app asks before touching the file
        return discovery.live_owner(paths.ingest_file) is not None

    assert not served_elsewhere(paths)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        discovery.write(paths.ingest_file, "http://127.0.0.1:1", "t", pid=sleeper.pid)
        assert served_elsewhere(paths)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not served_elsewhere(paths)  # its process is gone: a stale announcement


def test_tray_dialogs_open_before_the_window_exists(qtbot, tmp_path: Path):
    """At login the dashboard is not built yet: Import usage…, Budgets… and Settings… from the
    tray must still open, and stay open after a garbage collection (a parentless dialog that
    nothing references would be collected at once, its worker thread with it)."""
    import gc

    from PySide6.QtWidgets import QApplication

    from llmtray.config import Config
    from llmtray.gui.app import Desktop, WindowActions
    from llmtray.gui.block_actions import BlockActions
    from llmtray.gui.budgets_dialog import BudgetsDialog
    from llmtray.gui.import_dialog import ImportDialog
    from llmtray.gui.lazy_window import LazyWindow
    from llmtray.gui.settings_dialog import SettingsDialog
    from llmtray.paths import Paths

    def no_window():  # noqa: ANN202
        raise AssertionError("a tray dialog must not build the dashboard")

    paths = Paths(tmp_path, tmp_path, tmp_path)
    lazy = LazyWindow(no_window)
    actions = WindowActions(lazy, paths, ImportDialog)
    desk = Desktop(QApplication.instance(), lazy, actions, paths, Config(), "http://127.0.0.1:1", None,
                   BlockActions(paths.db))
    try:
        actions.open_import()
        desk.open_budgets()
        desk.open_settings()
        gc.collect()
        qtbot.wait(50)
        open_now = {type(w) for w in QApplication.topLevelWidgets() if w.isVisible()}
        assert {ImportDialog, BudgetsDialog, SettingsDialog} <= open_now
        for w in QApplication.topLevelWidgets():
            if isinstance(w, (ImportDialog, BudgetsDialog, SettingsDialog)):
                w.close()
        assert lazy.window is None
    finally:
        desk.stop()


def test_a_later_notice_does_not_hide_a_repair_report(make_dashboard, tmp_path: Path):
    """Told before the window exists (a repair at start), then after (no tray found): both show."""
    from llmtray.gui.lazy_window import LazyWindow

    db = tmp_path / "data" / "llmtray.db"
    db.parent.mkdir()
    lazy = LazyWindow(lambda: make_dashboard(db))
    lazy.show_notice("The database was damaged. It was moved to X.")
    window = lazy.get()
    lazy.show_notice("No system tray found")
    lazy.show_notice("No system tray found")  # told twice, shown once
    assert window.notice.text().splitlines() == ["⚠ The database was damaged. It was moved to X.",
                                                 "⚠ No system tray found"]


@pytest.mark.parametrize("how", ["--data-dir", "LLMTRAY_DATA_DIR", "default"])
def test_load_demo_data_starts_a_command_python_and_llmtray_accept(tmp_path: Path, monkeypatch, how: str):
    """"Load demo data" under an explicit data dir launched `python --data-dir D -m llmtray --demo`,
    which Python rejects (issue #17): run the command it builds (with `--version` appended, so it
    stops after parsing) and parse it as llmtray does."""
    import subprocess
    import sys

    from llmtray import paths as pathsmod
    from llmtray.cli import build_parser
    from llmtray.gui.app import demo_arguments

    data = tmp_path / "data"
    monkeypatch.delenv("LLMTRAY_DATA_DIR", raising=False)
    if how == "LLMTRAY_DATA_DIR":
        monkeypatch.setenv("LLMTRAY_DATA_DIR", str(data))
    if how == "default":  # the platform's folders: data and config apart
        paths = pathsmod.Paths(data, tmp_path / "config", tmp_path / "run")
    else:
        paths = pathsmod.resolve(data if how == "--data-dir" else None)
    args = demo_arguments(paths)
    ran = subprocess.run([sys.executable, *args, "--version"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("llmtray ")
    assert args[:2] == ["-m", "llmtray"]
    parsed = build_parser().parse_args(args[2:])
    assert parsed.demo and parsed.command is None
    assert parsed.data_dir == (None if how == "default" else str(data.resolve()))


def test_a_corrupt_config_is_shown_in_a_dialog_and_still_exits_2(qtbot, tmp_path: Path, capsys):
    """Started from a launcher, nobody reads stderr (issue #17): the message is in a dialog too;
    the file is left as it was."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from llmtray.cli import main

    data = tmp_path / "data"
    data.mkdir()
    bad = b"[display]\ntimezone = 'Europe/Berlin\n"
    (data / "config.toml").write_bytes(bad)
    shown: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        shown.append(f"{box.windowTitle()}|{box.text()}")
        box.grab().save(str(tmp_path / "dialog.png"))
        box.accept()

    QTimer.singleShot(20, answer)
    assert main(["--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'config.toml'}" in err and "llmtray: error:" in err
    assert len(shown) == 1
    title, text = shown[0].split("|", 1)
    assert title == "llmtray could not start"
    assert text in err and "config.toml" in text
    assert (data / "config.toml").read_bytes() == bad


def test_urls_and_snippets_point_at_the_llmtray_serving_this_data_dir(qtbot, tmp_path: Path, monkeypatch):
    """`llmtray serve --port N` already serves the data dir: the tray's Copy proxy URL and the
    onboarding panel show N, not the configured 8787, and the hook snippet names the data dir
    whose LLMTRAY_DATA_DIR makes the hook find that server (issue #17)."""
    import shlex

    from PySide6.QtWidgets import QApplication

    from llmtray.config import Config
    from llmtray.gui.app import Desktop, WindowActions, served_url
    from llmtray.gui.block_actions import BlockActions
    from llmtray.gui.lazy_window import LazyWindow
    from llmtray.gui.onboarding import Onboarding
    from llmtray.hooks.endpoint import discover
    from llmtray.ingest.service import IngestService
    from llmtray.paths import Paths

    data = tmp_path / "data"
    paths = Paths(data, data, data).ensure()
    config = Config()
    assert config.port == 8787
    serve = IngestService(paths, config, port=0)
    serve.start()
    assert serve.wait_ready(30)
    lazy = LazyWindow(lambda: None)
    desk = None
    try:
        url = served_url(paths, config, None)
        assert url == serve.url and not url.endswith(":8787")
        desk = Desktop(QApplication.instance(), lazy, WindowActions(lazy, paths, None), paths, config, url, None,
                       BlockActions(paths.db), data)
        clipboard = QApplication.clipboard()
        desk.tray.action("Copy proxy URL").trigger()
        assert clipboard.text() == f"{serve.url}/proxy/openai/v1"
        desk.tray.action("Codex").trigger()  # Copy OpenTelemetry settings → Codex: the same lines as `otel-env`
        assert f'endpoint = "{serve.url}/v1/logs"' in clipboard.text() and serve.token in clipboard.text()
        desk.tray.action("Copy hook snippet").trigger()
        snippet = clipboard.text()
        onboarding = Onboarding(url, False, data)
        qtbot.addWidget(onboarding)
        assert f'base_url="{serve.url}/proxy/openai/v1"' in onboarding.proxy.text.text()
        assert onboarding.hook.text.text() == snippet
        setting = next(line for line in snippet.splitlines() if "LLMTRAY_DATA_DIR=" in line)
        monkeypatch.setenv("LLMTRAY_DATA_DIR", shlex.split(setting.split("LLMTRAY_DATA_DIR=", 1)[1])[0])
        monkeypatch.delenv("LLMTRAY_URL", raising=False)
        found = discover()
        assert found is not None and found.url == serve.url
    finally:
        if desk is not None:
            desk.stop()
        serve.stop()


def test_the_tray_shows_a_budget_added_by_another_process(qtbot, tmp_path: Path):
    """#17 item 8: `llmtray budgets add` in a terminal while the app runs — no event follows, yet
    the monitor checks the budget and the tray icon and tooltip show it within seconds."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from PySide6.QtWidgets import QApplication

    from llmtray.config import Config
    from llmtray.core.alerts import AlertLog
    from llmtray.core.budgets import Budget, BudgetBook
    from llmtray.core.db import open_db
    from llmtray.gui.app import Desktop, WindowActions
    from llmtray.gui.block_actions import BlockActions
    from llmtray.gui.lazy_window import LazyWindow
    from llmtray.paths import Paths
    from tests.core.budget_kit import add, event, open_store

    paths = Paths(tmp_path, tmp_path, tmp_path)
    store = open_store(paths.db)
    add(store, [event(datetime.now(UTC), "2")])
    lazy = LazyWindow(lambda: None)
    desk = Desktop(QApplication.instance(), lazy, WindowActions(lazy, paths, None), paths, Config(),
                   "http://127.0.0.1:1", None, BlockActions(paths.db))
    try:
        desk.start(show_window=False)
        qtbot.waitUntil(lambda: "today_usd" in (desk.tray.summary or {}), timeout=10_000)
        assert desk.tray.summary["today_usd"] == "2" and desk.tray.summary["budgets"] == []
        other = open_db(paths.db)  # what `llmtray budgets add` does, in its own process
        BudgetBook(other).add(Budget("late", 1_000_000_000, "day"))
        other.close()
        qtbot.waitUntil(lambda: bool(desk.tray.summary["budgets"]), timeout=10_000)
        assert "late" in desk.tray.icon.toolTip()
        assert Decimal(str(desk.tray.summary["budgets"][0]["percent"])) == 200
        qtbot.waitUntil(lambda: [a.title for a in AlertLog(store.db).history() if a.kind == "threshold"]
                        == ["Budget “late” exceeded"], timeout=10_000)
    finally:
        desk.stop()
        store.close()
