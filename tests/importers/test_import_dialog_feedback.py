"""What the Import dialog says before and after an import (issue #17, cosmetic): a preview that
finds bad rows says so instead of "ready"; the bar is busy (not stuck at 0 %) until the first
report, and ends grey when cancelled, red with problems. Screenshots saved (LLMTRAY_SHOTS)."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtGui import QColor

from tests.importers.conftest import DATA
from tests.importers.generate import openrouter_generations
from tests.importers.test_import_dialog import WAIT, add_and_wait, dialog, import_and_wait, paths  # noqa: F401

BLUE_ACCENT = QColor("#4f46e5")


def chunk_color(dialog) -> QColor:  # noqa: ANN001
    """The colour of the progress bar's filled part, read from its picture."""
    image = dialog.progress.grab().toImage()
    return image.pixelColor(6, image.height() // 2)


def shot(widget, name: str, tmp_path: Path) -> None:  # noqa: ANN001
    widget.grab().save(str(Path(os.environ.get("LLMTRAY_SHOTS", tmp_path)) / name))


def test_preview_names_bad_rows_instead_of_ready(qtbot, dialog, tmp_path):  # noqa: F811
    add_and_wait(qtbot, dialog, DATA / "malformed" / "openrouter_generations.csv", DATA / "openrouter_generations.csv")
    shot(dialog, "import-preview-bad-rows.png", tmp_path)
    bad = dialog.files.item(0, 2)
    assert bad.text().startswith("3 bad rows of 4: fix the file"), bad.text()
    assert "Skip bad rows" in bad.toolTip()
    assert dialog.files.item(1, 2).text() == "ready"
    assert dialog.import_button.isEnabled()  # it can still be imported (skipping them, or to list them)


def test_bar_is_busy_first_and_ends_red_with_problems(qtbot, dialog, tmp_path):  # noqa: F811
    add_and_wait(qtbot, dialog, DATA / "malformed" / "openrouter_generations.csv")
    dialog.import_button.click()
    assert dialog.progress.maximum() == 0  # busy, not a bar at 0 %
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT * 5)
    shot(dialog, "import-failed.png", tmp_path)
    color = chunk_color(dialog)
    assert color.red() > 180 and color.blue() < 120, color.name()


def test_bar_ends_grey_when_cancelled(qtbot, dialog, tmp_path):  # noqa: F811
    big = openrouter_generations(tmp_path / "big.csv", 60_000)
    add_and_wait(qtbot, dialog, big)
    dialog.import_button.click()
    qtbot.waitUntil(lambda: "rows read" in dialog.files.item(0, 2).text()
                    and not dialog.files.item(0, 2).text().endswith(" 0 imported"), timeout=WAIT * 5)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT * 5)
    shot(dialog, "import-cancelled.png", tmp_path)
    color = chunk_color(dialog)
    assert abs(color.red() - color.blue()) < 30 and color != BLUE_ACCENT, color.name()
