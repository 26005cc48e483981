"""The dashboard window, built the first time it is opened.

An idle tray should stay small (DESKTOP.md: < 150 MB RSS; a PyQt tray used 215 MB until its
window was created lazily, borgbase/vorta#207). Importing pyqtgraph and numpy and building the
charts costs a tray about 85 MB it does not need while nobody looks, so llmtray started at login
builds no window until the tray menu, a notification or a second start asks for it. Until then
`LazyWindow` stands in: it keeps the notices for the window to show, and drops refresh requests
(a new window reads everything anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from llmtray.gui.dashboard import Dashboard


class LazyWindow(QObject):
    """`get()` builds the window (once) with `build`; the slots forward to it once it exists."""

    def __init__(self, build: Callable[[], Dashboard]):
        super().__init__()
        self._build = build
        self.window: Dashboard | None = None
        self._notices: list[str] = []
        self._anchor: QWidget | None = None
        self._offline = ""  # the team database's state, for a window built during an outage

    def get(self) -> Dashboard:
        if self.window is None:
            self.window = self._build()
            for notice in self._notices:
                self.window.show_notice(notice)
            if self._offline:
                self.window.set_connection_state(self._offline)
        return self.window

    def dialog_parent(self) -> QWidget:
        """The parent for a dialog opened from the tray: the window once it is built, else a
        hidden anchor widget. A parentless dialog that nothing references is collected as soon
        as the menu action returns, and the import dialog's worker thread with it (a crash)."""
        if self.window is not None:
            return self.window
        if self._anchor is None:
            self._anchor = QWidget()
        return self._anchor

    @Slot(str)
    def show_notice(self, text: str) -> None:
        """A problem the user must know about: shown now, or when the window is first opened."""
        if self.window is not None:
            self.window.show_notice(text)
        else:
            self._notices.append(text)

    @Slot(str)
    def on_ingest_failed(self, why: str) -> None:
        """The ingest service could not start after all (e.g. the database can't be opened)."""
        self.show_notice(f"Not recording new calls: {why}")

    @Slot(object)
    def on_committed(self, committed: Any) -> None:
        if self.window is not None:
            self.window.on_committed(committed)

    @Slot()
    def on_remote_change(self) -> None:
        if self.window is not None:
            self.window.on_remote_change()

    @Slot(str)
    def set_connection_state(self, why: str) -> None:
        self._offline = why
        if self.window is not None:
            self.window.set_connection_state(why)

    @Slot(object)
    def on_imported(self, result: Any) -> None:
        if self.window is not None:
            self.window.on_imported(result)

    @Slot(object)
    def on_import_removed(self, removal: Any) -> None:
        if self.window is not None:
            self.window.on_import_removed(removal)

    @Slot()
    def refresh(self) -> None:
        if self.window is not None:
            self.window.refresh()

    def shutdown(self) -> None:
        if self.window is not None:
            self.window.shutdown()
