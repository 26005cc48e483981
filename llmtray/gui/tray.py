"""The tray: a budget gauge icon, a tooltip, and a menu that holds every action.

What users see all day, so it must cost nothing while idle: no timers while nothing happens; the
spend summary is recomputed on a worker thread (its own read connection) only after a commit
(throttled) or when the menu is about to open. Every action is in the context menu, because
left-click behaviour differs by desktop (GNOME opens the menu, XFCE ignores it); `activated` is
only a shortcut to the dashboard (DESKTOP.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QGuiApplication, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from llmtray.core.blocks import describe_scope, scope_from_dict
from llmtray.core.queries import Queries
from llmtray.otel.setup import TOOLS
from llmtray.gui.connection import UNREACHABLE, forget, on_live_connection, reason, unreachable
from llmtray.gui.gauge import gauge_icon
from llmtray.gui.qt_workarounds import WorkerThread
from llmtray.gui.throttle import Throttle

log = logging.getLogger(__name__)

TOOLTIP_LIMIT = 127  # Windows truncates tray tooltips beyond this
TRAY_RETRY_MS, TRAY_RETRY_LIMIT = 1000, 30  # login race: the panel may start after us


OTEL_TOOLS = tuple(zip(TOOLS, ("Any SDK or framework", "Claude Code", "Codex", "Gemini CLI"), strict=True))


@dataclass(frozen=True)
class TrayActions:
    """What the menu's entries do; app.py wires them to the window, dialogs and services."""

    open_dashboard: Callable[[], None]
    import_usage: Callable[[], None]
    budgets: Callable[[], None]
    settings: Callable[[], None]
    snooze: Callable[[datetime | None], None]  # None = resume alerts
    copy_proxy_url: Callable[[], None]
    copy_hook_snippet: Callable[[], None]
    quit: Callable[[], None]
    unblock: Callable[[int], None]  # a block's id (the summary's `blocks`)
    copy_otel_settings: Callable[[str], None]  # one of llmtray.otel.setup.TOOLS


class SummaryWorker(QObject):
    """Computes the status summary on its own thread. Signals: ready(dict)."""

    ready = Signal(object)

    def __init__(self, db_path: Path, tz: Any, summarize: Callable[[Queries, datetime], dict[str, Any]]):
        super().__init__()
        self._db_path, self._tz, self._summarize = db_path, tz, summarize
        self._db = None

    @Slot()
    def refresh(self) -> None:
        from llmtray.core.db import open_db

        def summarize() -> dict[str, Any]:
            if self._db is None:
                self._db = open_db(self._db_path)
            return self._summarize(Queries(self._db.connection(), self._tz), datetime.now(UTC))

        try:
            self.ready.emit(on_live_connection(summarize, reused=self._db is not None, drop=self.close))
        except Exception as exc:  # a locked or vanished DB must not kill the tray; next commit retries
            if not unreachable(exc):
                log.exception("tray summary failed")
                return
            log.warning("tray summary: team database unreachable (%s)", reason(exc))  # TeamWatch tells the user
            self.close()  # its connection is dead: the next refresh opens a new one

    @Slot()
    def close(self) -> None:
        forget(self._db)
        self._db = None


def top_budget(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The budget the gauge shows: the one most used (highest percent)."""
    budgets = summary.get("budgets") or []
    return max(budgets, key=lambda b: Decimal(str(b.get("percent", 0)))) if budgets else None


def money(text: str | None) -> str:
    """Cents, four decimals below a cent, and "<$0.0001" below that (it read "$0.0000")."""
    if text is None:
        return "—"
    d = Decimal(text)
    if d >= Decimal("0.01") or d == 0:
        return f"${d:,.2f}"
    return f"${d:.4f}" if d >= Decimal("0.0001") else "<$0.0001"


def spend_lines(summary: dict[str, Any]) -> list[str | None]:
    """The menu's info lines (None: a separator): today, this month, the API-price value of agents
    used on a subscription (when there is any), then up to 8 budgets."""
    lines: list[str | None] = [
        f"Today: {money(summary.get('today_usd', '0'))}",
        f"This month: {money(summary.get('month_usd', '0'))} "
        f"(projected {money(summary.get('projected_month_usd', '0'))})"]
    if Decimal(summary.get("subscription_month_usd") or 0):
        lines.append(f"Agents on a subscription: {money(summary['subscription_month_usd'])} at API prices "
                     "this month (not spend)")
    budgets = summary.get("budgets") or []
    if budgets:
        lines.append(None)
        lines.extend(budget_line(b) for b in budgets[:8])
    return lines


def tooltip_text(summary: dict[str, Any]) -> str:
    parts = [f"llmtray — today {money(summary.get('today_usd'))}", f"month {money(summary.get('month_usd'))}"]
    top = top_budget(summary)
    if top is not None:
        parts.append(f"{top['name']} {Decimal(str(top['percent'])):.0f}%")
    if Decimal(summary.get("subscription_month_usd") or 0):  # coding agents on a flat plan: value, not spend
        parts.append(f"plan value {money(summary['subscription_month_usd'])}")
    text = " · ".join(parts)
    return text if len(text) <= TOOLTIP_LIMIT else text[: TOOLTIP_LIMIT - 1] + "…"


def budget_line(b: dict[str, Any]) -> str:
    pace = ""
    projected = b.get("projected_usd")
    if projected is not None and Decimal(projected) > Decimal(b["limit_usd"]):
        pace = f" · on pace for {money(projected)}"
    return f"{b['name']}: {Decimal(str(b['percent'])):.0f}% of {money(b['limit_usd'])} ({b['period']}){pace}"


def block_line(b: dict[str, Any]) -> str:
    """`Blocked: feature summarize (until 15:04)` — an entry of the summary's `blocks`."""
    until = "until unblocked"
    if b.get("until"):
        until = "until " + datetime.fromisoformat(b["until"]).astimezone().strftime("%H:%M")
    return f"Blocked: {describe_scope(scope_from_dict(b['scope']))} ({until})"


class Tray(QObject):
    """Owns the QSystemTrayIcon and its menu.

    Signals:
        unavailable(): no system tray appeared within 30 s; the app shows the window instead.
        refresh_requested(): ask the summary worker for fresh numbers.
    """

    unavailable = Signal()
    refresh_requested = Signal()

    def __init__(self, actions: TrayActions, worker: SummaryWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.actions = actions
        self.summary: dict[str, Any] = {}
        self._offline = ""  # why the team database can't be reached; "" while it answers
        self.icon = QSystemTrayIcon(self)
        self.icon.setIcon(self._gauge(None, "none"))
        self.icon.setToolTip("llmtray")
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.request_refresh)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._lines: list[QAction] = []
        self._blocks: list[QAction] = []  # one submenu (with Unblock) per active block
        self._block_ids: list[int] = []
        self._build_menu()

        self._thread = WorkerThread(self)
        self._thread.setObjectName("llmtray-tray-summary")
        self._worker = worker
        worker.moveToThread(self._thread)
        self.refresh_requested.connect(worker.refresh)
        worker.ready.connect(self._apply)
        self._thread.start()
        self._throttle = Throttle(self.refresh_requested.emit, 500, self)

        self._tries = 0
        self.retry_limit = TRAY_RETRY_LIMIT
        self._retry = QTimer(self)
        self._retry.setInterval(TRAY_RETRY_MS)
        self._retry.timeout.connect(self._try_show)

    # --- life cycle ----------------------------------------------------------------------------

    def show(self) -> None:
        """Show now if a tray exists, else retry each second for 30 s (the panel may be late)."""
        self.request_refresh()
        self._try_show()

    @Slot()
    def _try_show(self) -> None:
        if QSystemTrayIcon.isSystemTrayAvailable():
            self._retry.stop()
            self.icon.show()
            return
        self._tries += 1
        if self._tries == 1:
            self._retry.start()
        if self._tries > self.retry_limit:
            self._retry.stop()
            log.warning("no system tray found; on GNOME install the 'AppIndicator and KStatusNotifierItem "
                        "Support' extension. Alerts are shown in the dashboard window.")
            self.unavailable.emit()

    @property
    def visible(self) -> bool:
        return self.icon.isVisible()

    def close(self) -> None:
        self._retry.stop()
        self._throttle.cancel()
        self.icon.hide()
        QMetaObject.invokeMethod(self._worker, "close", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.quit()
        self._thread.wait(5000)
        self.menu.deleteLater()

    # --- data ------------------------------------------------------------------------------------

    @Slot()
    @Slot(object)
    def request_refresh(self, *_: object) -> None:
        """Call after each commit (throttled to two refreshes a second) and on menu open."""
        self._throttle.trigger()

    @Slot(object)
    def _apply(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        top = top_budget(summary)
        if top is None:
            self.icon.setIcon(self._gauge(None, "none"))
        else:
            self.icon.setIcon(self._gauge(float(Decimal(str(top["percent"]))), top["state"]))
        self._show_tooltip()
        self._show_lines()
        self._show_blocks()

    @Slot(str)
    def set_connection_state(self, why: str) -> None:
        """`TeamWatch.state_changed`: while the team database can't be reached the tooltip says
        so (the menu keeps the last figures); once it answers, the figures are read again."""
        was, self._offline = self._offline, why
        self._show_tooltip()
        if was and not why:
            self.request_refresh()

    def _show_tooltip(self) -> None:
        if self._offline:
            self.icon.setToolTip(f"llmtray — {UNREACHABLE}")
        elif self.summary:
            self.icon.setToolTip(tooltip_text(self.summary))

    def _gauge(self, percent: float | None, state: str) -> QIcon:
        hints = QGuiApplication.styleHints()
        dark = hints.colorScheme().name == "Dark" if hasattr(hints, "colorScheme") else False
        app = QGuiApplication.instance()
        dpr = app.devicePixelRatio() if app is not None else 1.0
        return gauge_icon(percent, state, dark=dark, dpr=dpr)

    # --- menu ------------------------------------------------------------------------------------

    def _build_menu(self) -> None:
        """The actions, once. Only the spend lines above them change (`_show_lines`): the refresh
        that opening the menu asks for lands ~100 ms later, and rebuilding the open menu then
        (`clear()`, every action deleted and added again; with or without the submenu) closed the
        XEmbed tray's popup at once, so a tray-only start never showed its menu (issue #17)."""
        m = self.menu
        self._lines_end = m.addSeparator()
        self._blocks_end = m.addSeparator()  # adjacent separators collapse while there is no block
        self._add(m, "Open dashboard", self.actions.open_dashboard)
        self._add(m, "Import usage…", self.actions.import_usage)
        self._add(m, "Budgets…", self.actions.budgets)
        self._add(m, "Settings…", self.actions.settings)
        snooze = m.addMenu("Snooze alerts")
        self._add(snooze, "For 1 hour", lambda: self.actions.snooze(_in_hours(1)))
        self._add(snooze, "Until tomorrow", lambda: self.actions.snooze(_tomorrow()))
        self._add(snooze, "Resume alerts", lambda: self.actions.snooze(None))
        m.addSeparator()
        self._add(m, "Copy proxy URL", self.actions.copy_proxy_url)
        self._add(m, "Copy hook snippet", self.actions.copy_hook_snippet)
        otel = m.addMenu("Copy OpenTelemetry settings")
        for tool, label in OTEL_TOOLS:
            self._add(otel, label, lambda t=tool: self.actions.copy_otel_settings(t))
        m.addSeparator()
        self._add(m, "Quit llmtray", self.actions.quit)
        self._show_lines()
        self._show_blocks()

    def _show_blocks(self) -> None:
        """The active blocks, each a submenu with Unblock, between the spend lines and the actions.
        Retexted in place while the same blocks are active; rebuilt only when one is added or
        lifted (rare, and never by the refresh that opening the menu asks for)."""
        blocks = (self.summary.get("blocks") or [])[:8]
        ids = [b["id"] for b in blocks]
        if ids == self._block_ids:
            for action, b in zip(self._blocks, blocks, strict=True):
                action.setText(block_line(b))
            return
        for action in self._blocks:
            self.menu.removeAction(action)
            action.menu().deleteLater()
        self._blocks = []
        for b in blocks:
            sub = QMenu(block_line(b), self.menu)
            self._add(sub, "Unblock", lambda i=b["id"]: self.actions.unblock(i))
            self._blocks.append(self.menu.insertMenu(self._blocks_end, sub))
        self._block_ids = ids

    def _show_lines(self) -> None:
        """The spend and budget lines at the top: retexted in place when their layout is unchanged
        (an open menu keeps every action), else replaced — never the actions below them."""
        wanted = spend_lines(self.summary)
        if [a.isSeparator() for a in self._lines] == [text is None for text in wanted]:
            for action, text in zip(self._lines, wanted, strict=True):
                if text is not None:
                    action.setText(text)
            return
        for action in self._lines:
            self.menu.removeAction(action)
            action.deleteLater()
        self._lines = []
        for text in wanted:
            action = QAction(self.menu)
            if text is None:
                action.setSeparator(True)
            else:
                action.setText(text)
                action.setEnabled(False)
            self.menu.insertAction(self._lines_end, action)
            self._lines.append(action)

    @staticmethod
    def _add(menu: QMenu, text: str, fn: Callable[[], None]) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(lambda _checked=False: fn())
        return action

    def action(self, text: str) -> QAction:
        """The menu entry with this text (for tests and accessibility tooling)."""
        for a in self._all_actions(self.menu):
            if a.text() == text:
                return a
        raise KeyError(text)

    def _all_actions(self, menu: QMenu) -> list[QAction]:
        out = []
        for a in menu.actions():
            out.append(a)
            if a.menu() is not None:
                out.extend(self._all_actions(a.menu()))
        return out

    @Slot(QSystemTrayIcon.ActivationReason)
    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.actions.open_dashboard()


def _in_hours(hours: int) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def _tomorrow() -> datetime:
    """Local midnight tonight."""
    now = datetime.now().astimezone()
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
