"""Making and lifting blocks from the GUI (tray menu, notification actions, the Blocks panel),
off the GUI thread: the write waits on SQLite's lock like any writer, and the GUI never blocks.

`BlockActions` is the GUI-thread face; its `_Worker` lives on a thread of its own with its own
connection. Signals: changed(str) — what was done, once it is committed (refresh the tray and the
window); failed(str) — what went wrong, for the window's notice banner.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, Signal, Slot

from llmtray.core import db as dbmod
from llmtray.core.blocks import ALERT_BLOCK_S, Block, BlockBook, describe_duration
from llmtray.core.budgets import Scope
from llmtray.core.errors import LLMTrayError
from llmtray.gui.connection import forget, on_live_connection, reason, unreachable
from llmtray.gui.qt_workarounds import WorkerThread

log = logging.getLogger(__name__)


class _Worker(QObject):
    changed = Signal(str)
    failed = Signal(str)

    def __init__(self, db_path: Path):
        super().__init__()
        self._db_path = db_path
        self._conn: sqlite3.Connection | None = None

    def _book(self) -> BlockBook:
        if self._conn is None:
            self._conn = dbmod.connect(self._db_path)
        return BlockBook(self._conn)

    def _with_book(self, action: Callable[[BlockBook], Block]) -> Block:
        """`action` on the block book. On a team database a connection that died since the last
        action is replaced once, and a server that can't be reached is an error saying so (the
        next action connects afresh)."""
        try:
            return on_live_connection(lambda: action(self._book()), reused=self._conn is not None, drop=self.close)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self.close()
            raise LLMTrayError(f"the team database is unreachable ({reason(exc)})") from exc

    @Slot(str, str, str, int)
    def block_feature(self, feature: str, reason: str, created_by: str, for_s: int) -> None:
        try:
            block = self._with_book(lambda book: book.add(Scope(feature=feature), reason, created_by, for_s))
        except (LLMTrayError, sqlite3.Error) as exc:
            self.failed.emit(f"Could not block feature {feature!r}: {exc}")
            return
        self.changed.emit(f"Blocked {block.what} for {describe_duration(for_s)} (block #{block.id}).")

    @Slot(int)
    def lift(self, block_id: int) -> None:
        try:
            block = self._with_book(lambda book: book.lift(block_id))
        except (LLMTrayError, sqlite3.Error) as exc:
            self.failed.emit(f"Could not unblock: {exc}")
            return
        self.changed.emit(f"Unblocked {block.what} (block #{block.id}).")

    @Slot()
    def close(self) -> None:
        forget(self._conn)
        self._conn = None


class BlockActions(QObject):
    """Ask for a block or an unblock from the GUI thread; the answer comes back as a signal."""

    changed = Signal(str)
    failed = Signal(str)
    _block = Signal(str, str, str, int)
    _lift = Signal(int)

    def __init__(self, db_path: Path, parent: QObject | None = None):
        super().__init__(parent)
        self._thread = WorkerThread(self)
        self._thread.setObjectName("llmtray-blocks")
        self._worker = _Worker(db_path)
        self._worker.moveToThread(self._thread)
        self._block.connect(self._worker.block_feature)
        self._lift.connect(self._worker.lift)
        self._worker.changed.connect(self.changed)
        self._worker.failed.connect(self.failed)
        self._worker.failed.connect(self._log)
        self._thread.start()

    @Slot(str)
    def block_feature(self, feature: str, reason: str = "blocked from an llmtray alert", created_by: str = "alert",
                      for_s: int = ALERT_BLOCK_S) -> None:
        """Block a feature (by default: the "Block <feature> for 1 h" of a notification)."""
        self._block.emit(feature, reason, created_by, for_s)

    @Slot(int)
    def lift(self, block_id: int) -> None:
        self._lift.emit(block_id)

    @Slot(str)
    def _log(self, message: Any) -> None:
        log.warning("%s", message)

    def close(self) -> None:
        QMetaObject.invokeMethod(self._worker, "close", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.quit()
        self._thread.wait(5000)
