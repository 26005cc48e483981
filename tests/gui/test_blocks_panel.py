"""The Blocks tab and the GUI's block actions: blocks made by another process show with the calls
they refused, Unblock and an alert's offer go out as requests, and `BlockActions` writes them on
its own thread (the real database, no GUI-thread I/O)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llmtray.core.blocks import BlockBook
from llmtray.core.budgets import Scope
from llmtray.core.events import parse_event
from llmtray.core.store import Store


def _fill(db: Path) -> tuple[int, int]:
    store = Store.open(db)
    book = BlockBook(store.conn)
    active = book.add(Scope(feature="agent"), "runaway calls: 12 calls/min over the last 5 min", "alert", 3600)
    ended = book.add(Scope(model="gpt-4o"), "too dear")
    book.lift(ended.id)
    refused = [parse_event(active.refused_event("openai", "gpt-4o-mini", {"feature": "agent"}, {})) for _ in range(3)]
    store.add([*refused, parse_event({"provider": "openai", "model": "gpt-4o", "input_tokens": 9})], "proxy")
    store.close()
    return active.id, ended.id


def test_the_blocks_tab_lists_blocks_and_sends_unblock_and_the_offered_block(qtbot, make_dashboard, tmp_path):
    db = tmp_path / "llmtray.db"
    active, ended = _fill(db)
    window = make_dashboard(db)
    panel = window.blocks
    assert window.tabs.tabText(window.tabs.indexOf(panel)) == "Blocks (1)"
    table = panel.table
    rows = [[table.item(r, c).text() for c in range(6)] for r in range(table.rowCount())]
    assert rows[0][:4] == [f"#{active}", "feature agent", "runaway calls: 12 calls/min over the last 5 min", "alert"]
    assert rows[0][4].startswith("until ") and rows[0][5] == "3"
    assert rows[1][:2] == [f"#{ended}", "model gpt-4o"] and rows[1][4].startswith("lifted ") and rows[1][5] == "0"
    assert table.cellWidget(1, 6) is None  # an ended block has no Unblock button
    with qtbot.waitSignal(panel.lift_requested) as lifted:
        table.cellWidget(0, 6).click()
    assert lifted.args == [active]

    window.offer_block("search")
    assert window.tabs.currentWidget() is panel and panel.offer_bar.isVisible()
    assert panel.offer_button.text() == "Block search for 1 h"
    window.resize(1200, 700)
    qtbot.wait(50)
    shot = tmp_path / "blocks-tab.png"
    assert window.grab().save(str(shot))
    with qtbot.waitSignal(panel.block_requested) as requested:
        panel.offer_button.click()
    assert requested.args == ["search"] and not panel.offer_bar.isVisible()


def test_an_empty_blocks_tab_says_how_to_block(make_dashboard, tmp_path):
    db = tmp_path / "llmtray.db"
    Store.open(db).close()
    window = make_dashboard(db)
    assert window.blocks.stack.currentWidget() is window.blocks.empty
    assert "llmtray block --feature F --for 1h" in window.blocks.empty.text()


def test_block_actions_write_on_their_thread_and_report(qtbot, tmp_path):
    from llmtray.gui.block_actions import BlockActions

    db = tmp_path / "llmtray.db"
    Store.open(db).close()
    actions = BlockActions(db)
    try:
        with qtbot.waitSignal(actions.changed) as done:
            actions.block_feature("agent")
        conn = sqlite3.connect(db)
        [block] = BlockBook(conn).active()
        assert block.scope == Scope(feature="agent") and block.created_by == "alert"
        assert done.args == [f"Blocked feature agent for 1 h (block #{block.id})."]
        with qtbot.waitSignal(actions.changed):
            actions.lift(block.id)
        assert BlockBook(conn).active() == []
        with qtbot.waitSignal(actions.failed) as failed:
            actions.lift(block.id)
        assert failed.args == [f"Could not unblock: block #{block.id} was lifted already; no block is active"]
        conn.close()
    finally:
        actions.close()
