"""The tray app's Desktop hands alerts to the mail service beside the tray and the webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.core.budgets import Budget, BudgetBook
from tests.core.budget_kit import event, open_store


def test_desktop_mails_a_crossing_and_refreshes_the_window(qtbot, tmp_path: Path, smtp_server):
    from PySide6.QtWidgets import QApplication

    from llmtray.config import load
    from llmtray.gui.app import Desktop, WindowActions
    from llmtray.gui.block_actions import BlockActions
    from llmtray.gui.import_dialog import ImportDialog
    from llmtray.gui.lazy_window import LazyWindow
    from llmtray.paths import Paths

    server = smtp_server("plain")
    paths = Paths(tmp_path, tmp_path, tmp_path)
    paths.config_file.write_text(f'[email]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
                                 'from = "llmtray@example.com"\nto = ["me@example.com"]\nalerts = true\n',
                                 encoding="utf-8")
    store = open_store(paths.db)
    BudgetBook(store.db).add(Budget("api", 1_000_000_000, "day"))
    store.add([event(datetime.now(UTC) - timedelta(minutes=1), "1.50")], "hook")
    store.close()

    lazy = LazyWindow(lambda: None)
    actions = WindowActions(lazy, paths, ImportDialog)
    desk = Desktop(QApplication.instance(), lazy, actions, paths, load(paths.config_file), "http://127.0.0.1:1", None,
                   BlockActions(paths.db))
    refreshed: list[object] = []
    desk.alerted.connect(lambda: refreshed.append(1))
    try:
        desk.mail.start()  # what Desktop.start does, without a tray icon (none offscreen)
        desk.monitor.start()
        [(_, msg)] = server.inbox.wait_for(1)
        assert msg["Subject"] == "[llmtray] Budget “api” exceeded"
        qtbot.waitUntil(lambda: len(refreshed) >= 2, timeout=10000)  # the alert, then its mail
    finally:
        desk.stop()
