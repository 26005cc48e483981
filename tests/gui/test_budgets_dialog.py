"""The budgets dialog end to end on a real database: scope pickers from seen data, live preview,
create, edit, remove, and field errors that store nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtray.core.budgets import BudgetBook
from llmtray.core.db import open_db
from llmtray.core.events import parse_event
from llmtray.core.store import Store


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    path = data_dir / "llmtray.db"
    store = Store.open(path)
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "feature": "search", "cost_usd": "30",
                            "tags": {"team": "a"}}),
               parse_event({"provider": "anthropic", "model": "claude-3-5-haiku-latest", "feature": "chat",
                            "cost_usd": "5"})], "api")
    store.close()
    return path


@pytest.fixture
def dialog(qtbot, db_path):
    from llmtray.gui.budgets_dialog import BudgetsDialog

    dlg = BudgetsDialog(db_path)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.scope_boxes["feature"].count() > 1, timeout=5000)
    yield dlg
    dlg.done(0)


def stored(db_path: Path) -> list:
    db = open_db(db_path)
    try:
        return BudgetBook(db).list()
    finally:
        db.close()


def test_scope_pickers_offer_seen_values(dialog):
    items = lambda name: [dialog.scope_boxes[name].itemText(i) for i in range(dialog.scope_boxes[name].count())]
    assert items("feature") == ["(any)", "chat", "search"]
    assert items("provider") == ["(any)", "anthropic", "openai"]
    assert "team" in dialog.tags.toolTip()


def test_create_with_live_preview_then_edit_and_remove(qtbot, dialog, db_path):
    dialog.name.setText("Search")
    dialog.limit.setText("$40")
    dialog.scope_boxes["feature"].setCurrentText("search")
    qtbot.waitUntil(lambda: "$30.00" in dialog.preview_label.text(), timeout=5000)
    assert "of $40.00 (75%)" in dialog.preview_label.text()
    with qtbot.waitSignal(dialog.changed, timeout=5000):
        dialog.save()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=5000)
    assert [dialog.table.item(0, c).text() for c in (0, 1, 3, 4, 5)] == [
        "Search", "feature search", "$40.00", "$30.00", "75%"]
    (budget,) = stored(db_path)
    assert (budget.name, budget.limit_nanos, budget.scope.feature) == ("Search", 40 * 10**9, "search")

    dialog.table.selectRow(0)
    assert dialog.name.text() == "Search" and dialog.save_button.text() == "Save changes"
    dialog.limit.setText("25")
    dialog.enforce.setChecked(True)
    with qtbot.waitSignal(dialog.changed, timeout=5000):
        dialog.save()
    (budget,) = stored(db_path)
    assert (budget.limit_nanos, budget.enforce) == (25 * 10**9, True)

    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=5000)
    dialog.table.selectRow(0)
    with qtbot.waitSignal(dialog.changed, timeout=5000):
        dialog.remove_selected()
    assert stored(db_path) == []


@pytest.mark.parametrize(("field", "text", "message"), [
    ("limit", "lots", "limit"),
    ("limit", "-5", "limit"),
    ("thresholds", "50,abc", "threshold"),
    ("tags", "team", "KEY=VALUE"),
])
def test_bad_field_says_what_and_stores_nothing(qtbot, dialog, db_path, field, text, message):
    dialog.name.setText("X")
    dialog.limit.setText("10")
    getattr(dialog, field).setText(text)
    dialog.save()
    assert message.lower() in dialog.message.text().lower()
    assert stored(db_path) == []


def test_duplicate_name_is_refused(qtbot, dialog, db_path):
    for _ in range(2):
        dialog.name.setText("All")
        dialog.limit.setText("100")
        dialog.save()
        qtbot.waitUntil(lambda: len(stored(db_path)) == 1, timeout=5000)
    qtbot.waitUntil(lambda: "already exists" in dialog.message.text(), timeout=5000)
    assert len(stored(db_path)) == 1
