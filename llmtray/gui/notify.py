"""Native notifications for alerts, through adapters with a fallback chain.

Every alert is already in the alert history (the window's alerts panel) before it gets here; an
OS notification is best effort on top (DESKTOP.md). Adapters, tried in order:

- freedesktop `org.freedesktop.Notifications` over D-Bus (Linux/BSD) — Qt's `showMessage` is
  *not* native on XEmbed trays (it draws its own balloon), so we call `Notify` ourselves. We use
  jeepney (pure Python, already installed with keyring's SecretStorage backend on Linux) because
  it sends the exact signature `susssasa{sv}i` — QtDBus from Python sends ints as `i` and lists
  as `av`, which notification daemons reject (TESTING.md).
- `QSystemTrayIcon.showMessage` — native on Windows and macOS.
- nothing: the window's alert panel still shows it; we log once.

D-Bus calls run on a worker thread so a slow or hung bus never blocks the GUI; clicks on a
notification ("default" action) come back as `NotificationRelay.clicked(budget)` on the GUI thread.
An alert that names a feature to stop (runaway, spike: `Alert.feature`) also carries the action
"Block <feature> for 1 h" (`block_requested(feature)`); where notifications have no buttons (the
tray balloon on Windows and macOS), clicking it offers that block in the dashboard instead
(`block_offered(feature)`).
"""

from __future__ import annotations

import html
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QSystemTrayIcon

from llmtray.core.alerts import Alert, AlertSink
from llmtray.core.blocks import ALERT_BLOCK_S, describe_duration

log = logging.getLogger(__name__)

APP_NAME = "llmtray"
URGENCY = {"info": 0, "warning": 1, "critical": 2}
_BUS_NAME = "org.freedesktop.Notifications"
_PATH = "/org/freedesktop/Notifications"
BLOCK_ACTION = "block"


def block_label(feature: str) -> str:
    """The notification button: `Block summarize for 1 h`."""
    return f"Block {feature} for {describe_duration(ALERT_BLOCK_S)}"


class FreedesktopNotifier:
    """Sends `Notify` on the session bus from a thread of its own and listens for clicks."""

    name = "freedesktop"

    def __init__(self, icon_path: str = "", on_click: Callable[[str | None], None] | None = None,
                 bus: str = "SESSION", on_block: Callable[[str], None] | None = None):
        self.icon_path = icon_path
        self.on_click = on_click
        self.on_block = on_block
        self._bus = bus
        self._jobs: queue.Queue[Alert | None] = queue.Queue()
        self._ids: dict[int, tuple[str | None, str | None]] = {}  # notification id → (budget, feature)
        self._lock = threading.Lock()
        self._sender: Any = None
        self._listener: Any = None
        self._threads: list[threading.Thread] = []

    def available(self) -> bool:
        """True when a notification service owns its bus name (checked once, with a timeout)."""
        try:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection

            conn = open_dbus_connection(bus=self._bus)
        except Exception as exc:  # no bus, no jeepney: not available
            log.info("no D-Bus session for notifications: %s", exc)
            return False
        try:
            dbus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                               interface="org.freedesktop.DBus")
            reply = conn.send_and_get_reply(new_method_call(dbus, "NameHasOwner", "s", (_BUS_NAME,)), timeout=2)
            return bool(reply.body[0])
        except Exception as exc:
            log.info("D-Bus notification service check failed: %s", exc)
            return False
        finally:
            conn.close()

    def start(self) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self._sender = open_dbus_connection(bus=self._bus)
        self._threads = [threading.Thread(target=self._send_loop, name="llmtray-notify", daemon=True)]
        if self.on_click is not None:
            self._listener = open_dbus_connection(bus=self._bus)
            self._threads.append(threading.Thread(target=self._listen_loop, name="llmtray-notify-clicks", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._jobs.put(None)
        if self._listener is not None:
            self._listener.close()  # unblocks the listener's recv
        for t in self._threads:
            t.join(timeout=2)
        if self._sender is not None:
            self._sender.close()

    def notify(self, alert: Alert) -> None:
        self._jobs.put(alert)

    def _send_loop(self) -> None:
        from jeepney import DBusAddress, new_method_call

        addr = DBusAddress(_PATH, bus_name=_BUS_NAME, interface=_BUS_NAME)
        while (alert := self._jobs.get()) is not None:
            hints = {
                "urgency": ("y", URGENCY.get(alert.severity, 1)),
                "desktop-entry": ("s", APP_NAME),
                "category": ("s", "x-llmtray.budget"),
            }
            actions = ["default", "Open dashboard"]
            if alert.feature:
                actions += [BLOCK_ACTION, block_label(alert.feature)]
            msg = new_method_call(addr, "Notify", "susssasa{sv}i", (
                APP_NAME, 0, self.icon_path, alert.title, body_markup(alert.body), actions, hints, -1,
            ))
            try:
                reply = self._sender.send_and_get_reply(msg, timeout=5)
                if reply.header.message_type.name == "error":
                    raise RuntimeError(f"{reply.header.fields} {reply.body}")
                with self._lock:
                    self._ids[int(reply.body[0])] = (alert.budget, alert.feature)
            except Exception as exc:  # the panel has it; the bus is best effort
                log.warning("desktop notification failed: %s", exc)

    def _listen_loop(self) -> None:
        from jeepney import MatchRule, message_bus

        rule = MatchRule(type="signal", interface=_BUS_NAME, member="ActionInvoked", path=_PATH)
        try:
            self._listener.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)
            with self._listener.filter(rule) as signals:
                while True:
                    msg = self._listener.recv_until_filtered(signals)
                    nid, action = msg.body
                    with self._lock:
                        known, (budget, feature) = nid in self._ids, self._ids.get(nid, (None, None))
                    if known and action == "default" and self.on_click is not None:
                        self.on_click(budget)
                    elif known and action == BLOCK_ACTION and feature and self.on_block is not None:
                        self.on_block(feature)
        except Exception:  # connection closed on stop, or the bus went away
            return


def body_markup(text: str) -> str:
    """A notification body as the freedesktop spec's markup: servers with `body-markup` read
    `<a href>`, `<b>`, `<img>` and entities, so names a local process chose (a feature header)
    are escaped to show as typed. The summary (title) is plain text by the spec."""
    return html.escape(text, quote=False)


class NotificationRelay(QObject):
    """Carries alerts from the monitor's thread to the GUI thread and clicks back to the app.

    Signals:
        show(object): an Alert to notify, emitted from any thread, handled on the GUI thread.
        clicked(object): the budget name (or None) of a notification the user clicked.
        block_requested(str): the user pressed "Block <feature> for 1 h" on a notification.
        block_offered(str): the user clicked a tray balloon whose alert named a feature to block.
    """

    show = Signal(object)
    clicked = Signal(object)
    block_requested = Signal(str)
    block_offered = Signal(str)

    def __init__(self, tray: QSystemTrayIcon | None, icon_path: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self.tray = tray
        self.desktop: FreedesktopNotifier | None = None
        self.delivered: list[tuple[str, Alert]] = []  # (adapter, alert), for the window and tests
        self._warned = False
        self._last_budget: str | None = None
        self._last_feature: str | None = None
        if not sys.platform.startswith(("win", "darwin")):
            candidate = FreedesktopNotifier(icon_path, on_click=self.clicked.emit, on_block=self.block_requested.emit)
            if candidate.available():
                candidate.start()
                self.desktop = candidate
        if tray is not None:
            tray.messageClicked.connect(self._tray_clicked)
        self.show.connect(self._show)

    @Slot(object)
    def _show(self, alert: Alert) -> None:
        if self.desktop is not None:
            self.desktop.notify(alert)
            self.delivered.append(("freedesktop", alert))
        elif self.tray is not None and self.tray.isVisible() and QSystemTrayIcon.supportsMessages():
            icon = QSystemTrayIcon.MessageIcon.Critical if alert.severity == "critical" else \
                QSystemTrayIcon.MessageIcon.Warning if alert.severity == "warning" else QSystemTrayIcon.MessageIcon.Information
            self._last_budget, self._last_feature = alert.budget, alert.feature
            self.tray.showMessage(alert.title, alert.body, icon, 15_000)
            self.delivered.append(("tray", alert))
        elif not self._warned:
            log.warning("no notification service or tray: alerts are shown in the window only")
            self._warned = True

    @Slot()
    def _tray_clicked(self) -> None:
        self.clicked.emit(self._last_budget)
        if self._last_feature:
            self.block_offered.emit(self._last_feature)

    def close(self) -> None:
        if self.desktop is not None:
            self.desktop.stop()
            self.desktop = None


class DesktopSink(AlertSink):
    """The budget monitor's sink for OS notifications: hands alerts to the relay and returns.
    Every machine of a team shows a crossing on its own screen (`AlertSink.per_machine`)."""

    per_machine = True

    def __init__(self, relay: NotificationRelay):
        self.relay = relay

    def send(self, alert: Alert) -> None:
        self.relay.show.emit(alert)
