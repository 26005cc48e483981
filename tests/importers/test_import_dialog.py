"""The Import dialog driven end to end with qtbot: detect, preview, map an unknown CSV,
import on the worker thread, read the summary; bad rows stop a file unless skipped; overlap
choice; cancel midway leaves nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PySide6.QtGui import QTextCursor

from llmtray.core.events import parse_event
from llmtray.core.store import Store
from llmtray.gui.import_dialog import PREVIEW_FIELDS, ImportDialog
from llmtray.paths import Paths
from tests.importers.conftest import DATA, assert_rollups_exact
from tests.importers.generate import openrouter_generations

WAIT = 60_000


@pytest.fixture
def paths(data_dir: Path) -> Paths:
    return Paths(data_dir, data_dir, data_dir)


@pytest.fixture
def dialog(qtbot, paths):
    d = ImportDialog(paths)
    qtbot.addWidget(d)
    d.show()
    yield d
    d.close()


def db_count(paths: Paths, where: str = "1") -> int:
    conn = sqlite3.connect(paths.db)
    try:
        return conn.execute(f"SELECT count(*) FROM event WHERE {where}").fetchone()[0]
    finally:
        conn.close()


# The tests wait on what the dialog shows (waitUntil), never on the worker's signals directly:
# a qtbot blocker is a bare callable, which would run on the worker thread.


def add_and_wait(qtbot, dialog, *files: Path) -> None:
    dialog.add_files(list(files))
    qtbot.waitUntil(lambda: all(dialog.files.item(r, 1).text() != "detecting…" for r in range(dialog.files.rowCount())),
                    timeout=WAIT)


def import_and_wait(qtbot, dialog) -> None:
    dialog.import_button.click()
    assert dialog.running
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT * 5)


def test_detects_previews_maps_and_imports(qtbot, dialog, paths, tmp_path):
    add_and_wait(qtbot, dialog, DATA / "openai_usage.csv", DATA / "anthropic_usage_api.json", DATA / "generic.csv")
    formats = [dialog.files.item(r, 1).text() for r in range(3)]
    assert formats == ["OpenAI usage export (CSV)", "Anthropic usage report API pages (JSON)", "CSV with a column mapping"]

    dialog.files.selectRow(0)
    headers = [dialog.preview.horizontalHeaderItem(c).text() for c in range(dialog.preview.columnCount())]
    assert headers == list(PREVIEW_FIELDS) and dialog.preview.rowCount() == 3
    assert dialog.preview.item(0, 2).text() == "gpt-4o-mini-2024-07-18"
    assert not dialog.mapping_editor.isVisible()

    dialog.files.selectRow(2)  # unknown columns: raw rows and the mapping editor with a guess
    assert dialog.mapping_editor.isVisible()
    assert dialog.files.item(2, 2).text().startswith("map columns: ts: needs a column")
    guessed = dialog.mapping_editor.mapping()
    assert guessed.columns["model"] == "Model Name" and guessed.columns["cost_usd"] == "Cost (USD)"
    dialog.mapping_editor.set_combo("ts", "When")
    assert dialog.files.item(2, 2).text() == "ready"
    qtbot.waitUntil(lambda: dialog.preview.horizontalHeaderItem(0).text() == "ts", timeout=WAIT)
    assert dialog.preview.item(0, 0).text() == "2026-05-01T08:00:00Z"  # 10:00+02:00, now as it will be stored
    dialog.grab().save(str(tmp_path / "import_dialog_ready.png"))

    import_and_wait(qtbot, dialog)
    results = dialog.results()
    assert [r.imported for r in results] == [3, 2, 3]
    text = dialog.summary.toPlainText()
    assert "openai_usage.csv — OpenAI usage export (CSV) (dataset 1)" in text
    assert "5 rows read, 3 imported, 0 already there, 2 without usage, 0 errors" in text
    assert db_count(paths) == 8
    assert dialog.progress.value() == 1000
    assert (paths.config_dir / "import_mappings.json").exists()  # the next such file maps itself

    import_and_wait(qtbot, dialog)  # again: nothing new
    assert [r.imported for r in dialog.results()] == [0, 0, 0] and db_count(paths) == 8


def test_bad_rows_stop_the_file_and_are_listed_with_their_lines(qtbot, dialog, paths, tmp_path):
    assert not dialog.skip_bad_rows.isChecked()
    add_and_wait(qtbot, dialog, DATA / "malformed" / "openrouter_generations.csv")
    import_and_wait(qtbot, dialog)
    text = dialog.summary.toPlainText()
    assert "Nothing was imported from this file: 3 bad rows" in text and "Skip bad rows" in text
    assert "line 2: created_at: missing timestamp" in text
    assert "line 3: tokens_prompt: not a whole number: '1.5'" in text
    assert dialog.files.item(0, 2).text() == "not imported: 3 bad rows"
    (result,) = dialog.results()
    assert (result.state, result.imported, result.dataset_id) == ("rejected", 0, None)
    assert db_count(paths) == 0
    dialog.summary.moveCursor(QTextCursor.MoveOperation.Start)
    dialog.grab().save(str(tmp_path / "import-dialog-rejected.png"))  # looked at by hand: see the report

    dialog.skip_bad_rows.setChecked(True)
    import_and_wait(qtbot, dialog)
    assert dialog.files.item(0, 2).text() == "done: 1 imported, 0 duplicates, 3 errors"
    assert "Nothing was imported" not in dialog.summary.toPlainText() and db_count(paths) == 1


def test_preview_shows_amounts_as_written_by_people(qtbot, dialog):
    """OpenAI's cost export pads amounts to 36 decimals; the preview shows the amount itself."""
    add_and_wait(qtbot, dialog, DATA / "openai_cost.csv")
    dialog.files.selectRow(0)
    cost = PREVIEW_FIELDS.index("cost_usd")
    assert [dialog.preview.item(r, cost).text() for r in range(3)] == ["0.0047133", "0.0012288", "0.0000768"]


def test_dropped_files_are_added(qtbot, dialog):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(DATA / "openrouter_activity.csv"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    dialog.dropEvent(event)
    qtbot.waitUntil(lambda: dialog.files.item(0, 1).text() == "OpenRouter activity export (CSV)", timeout=WAIT)
    assert dialog.import_button.isEnabled()


def test_unknown_file_cannot_be_imported(qtbot, dialog, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just words\n", encoding="utf-8")
    add_and_wait(qtbot, dialog, path)
    assert dialog.files.item(0, 1).text() == "not recognised"
    assert "not a usage export" in dialog.files.item(0, 2).toolTip() or "unknown" in dialog.files.item(0, 2).toolTip()
    assert not dialog.import_button.isEnabled()


def test_overlap_refused_then_replaced(qtbot, dialog, paths):
    store = Store.open(paths.db)
    store.add([parse_event({"ts": "2026-05-01T09:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
                            "input_tokens": 7})], "hook")
    store.close()
    add_and_wait(qtbot, dialog, DATA / "openai_usage.csv")
    import_and_wait(qtbot, dialog)
    assert "Not imported: these days already have events recorded by hooks or the proxy: openai: 2026-05-01" \
        in dialog.summary.toPlainText()
    assert db_count(paths) == 1
    dialog.overlap.setCurrentIndex(dialog.overlap.findData("replace"))
    import_and_wait(qtbot, dialog)
    assert "1 observed events replaced" in dialog.summary.toPlainText()
    assert db_count(paths, "source = 'hook'") == 0 and db_count(paths) == 3

    # Previous imports: removing that import brings the hook's event back
    dialog.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: dialog.datasets.rowCount() == 1, timeout=WAIT)
    assert [dialog.datasets.item(0, c).text() for c in (3, 8, 9)] == ["openai_usage.csv", "1", "done"]
    assert not dialog.remove_import_button.isEnabled()  # nothing selected yet
    dialog.datasets.selectRow(0)
    dialog.confirm_removal = lambda dataset: True  # the user answers Yes
    with qtbot.waitSignal(dialog.import_removed, timeout=WAIT) as removed:
        dialog.remove_import_button.click()
    assert (removed.args[0].removed, removed.args[0].restored) == (3, 1)
    qtbot.waitUntil(lambda: dialog.datasets.rowCount() == 0, timeout=WAIT)
    assert dialog.datasets_status.text() == ("Removed import 1: 3 events deleted, 1 observed events it had "
                                             "replaced restored.")
    assert db_count(paths, "source = 'hook' AND input_tokens = 7") == 1 and db_count(paths) == 1
    conn = sqlite3.connect(paths.db)
    try:
        assert_rollups_exact(conn)
    finally:
        conn.close()


def test_previous_imports_lists_each_import_and_asks_before_removing(qtbot, dialog, paths):
    add_and_wait(qtbot, dialog, DATA / "openrouter_generations.csv", DATA / "litellm_ui_team.csv")
    import_and_wait(qtbot, dialog)
    dialog.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: dialog.datasets.rowCount() == 2, timeout=WAIT)
    assert [dialog.datasets.item(r, 3).text() for r in range(2)] == ["litellm_ui_team.csv", "openrouter_generations.csv"]
    assert dialog.datasets_status.text() == "2 import(s)"
    dialog.datasets.selectRow(1)
    asked = []
    dialog.confirm_removal = lambda dataset: asked.append(dataset["name"]) or False  # the user says Cancel
    dialog.remove_import_button.click()
    assert asked == ["openrouter_generations.csv"] and db_count(paths) == 5
    dialog.confirm_removal = lambda dataset: True
    dialog.remove_import_button.click()
    qtbot.waitUntil(lambda: dialog.datasets.rowCount() == 1, timeout=WAIT)
    assert dialog.datasets_status.text() == "Removed import 1: 3 events deleted."
    assert db_count(paths) == 2 and db_count(paths, "source = 'import:litellm-ui'") == 2


def test_cancel_midway_leaves_nothing_of_the_file(qtbot, dialog, paths, tmp_path):
    big = openrouter_generations(tmp_path / "big.csv", 60_000)
    add_and_wait(qtbot, dialog, big)
    dialog.import_button.click()
    # cancelled once chunks have been committed: those are what must go again
    qtbot.waitUntil(lambda: "rows read" in dialog.files.item(0, 2).text()
                    and not dialog.files.item(0, 2).text().endswith(" 0 imported"), timeout=WAIT * 5)
    assert dialog.running and dialog.cancel_button.isEnabled()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT * 5)
    (result,) = dialog.results()
    assert (result.state, result.imported, result.dataset_id) == ("cancelled", 0, None)
    assert db_count(paths) == 0
    assert "Cancelled: nothing was imported from this file." in dialog.summary.toPlainText()
    assert dialog.files.item(0, 2).text() == "cancelled: nothing imported"
    conn = sqlite3.connect(paths.db)
    try:
        assert conn.execute("SELECT count(*) FROM dataset").fetchone() == (0,)
        assert_rollups_exact(conn)
    finally:
        conn.close()
    assert not dialog.running and dialog.import_button.isEnabled()


def test_closing_stops_the_worker_thread(qtbot, paths):
    d = ImportDialog(paths)
    qtbot.addWidget(d)
    add_and_wait(qtbot, d, DATA / "litellm_ui_team.csv")
    d.close()
    assert not d._thread.isRunning()


def test_a_cr_only_file_is_detected_previewed_and_imported(qtbot, dialog, paths, tmp_path):
    """#17 item 6: Excel's "CSV (Macintosh)" — the dialog used to show the raw text."""
    mac = tmp_path / "openai_usage_mac.csv"
    mac.write_bytes((DATA / "openai_usage.csv").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    add_and_wait(qtbot, dialog, mac)
    assert dialog.files.item(0, 1).text() == "OpenAI usage export (CSV)"
    dialog.files.selectRow(0)
    assert dialog.preview.rowCount() == 3 and dialog.preview.item(0, 2).text() == "gpt-4o-mini-2024-07-18"
    import_and_wait(qtbot, dialog)
    assert [r.imported for r in dialog.results()] == [3] and db_count(paths) == 3
