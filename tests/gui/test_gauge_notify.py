"""The tray gauge painter (pixel checks of colour by state) and native notifications over a real
(private) D-Bus session with a fake notification service."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from llmtray.core.alerts import Alert
from llmtray.gui.gauge import COLORS, paint_gauge

SIZES = (16, 22, 24, 32)


def pixel(image, x: float, y: float) -> QColor:
    dpr = image.devicePixelRatio()
    return image.pixelColor(int(x * dpr), int(y * dpr))


def ring_point(size: int, angle_deg_clockwise_from_top: float) -> tuple[float, float]:
    """A point in the middle of the ring's stroke at a clock angle."""
    import math

    width = max(2.0, size * 0.24)
    inset = width / 2 + max(0.5, size * 0.03)
    r = (size - 2 * inset) / 2
    a = math.radians(angle_deg_clockwise_from_top)
    return size / 2 + r * math.sin(a), size / 2 - r * math.cos(a)


def close_to(c: QColor, ref: QColor, tol: int = 40) -> bool:
    return c.alpha() > 200 and all(abs(a - b) <= tol for a, b in
                                   ((c.red(), ref.red()), (c.green(), ref.green()), (c.blue(), ref.blue())))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dpr", [1.0, 2.0])
@pytest.mark.parametrize(("percent", "state"), [(30, "ok"), (85, "warning"), (130, "exceeded")])
def test_ring_colour_by_state_and_fill_by_percent(qapp, size, dpr, percent, state):
    img = paint_gauge(percent, state, size, dark=False, dpr=dpr)
    assert (img.width(), img.height()) == (round(size * dpr),) * 2
    # 20° clockwise from 12 o'clock is filled in every state above 6 %
    assert close_to(pixel(img, *ring_point(size, 20)), COLORS[state])
    # 200° is filled only when more than 55 % is used
    far = pixel(img, *ring_point(size, 200))
    assert close_to(far, COLORS[state]) == (percent > 55)


@pytest.mark.parametrize("dark", [False, True])
def test_exceeded_has_a_white_mark_in_the_centre(qapp, dark):
    img = paint_gauge(150, "exceeded", 24, dark=dark)
    centre = pixel(img, 12, 10)
    assert centre.red() > 230 and centre.green() > 230 and centre.blue() > 230


def test_no_budget_is_neutral(qapp):
    img = paint_gauge(None, "none", 22)
    assert close_to(pixel(img, 11, 11), COLORS["none"])
    for state in ("ok", "warning", "exceeded"):
        assert not close_to(pixel(img, *ring_point(22, 20)), COLORS[state])


def test_track_visible_on_light_and_dark_panels(qapp):
    light = pixel(paint_gauge(0, "ok", 24, dark=False), *ring_point(24, 180))
    dark = pixel(paint_gauge(0, "ok", 24, dark=True), *ring_point(24, 180))
    assert light.alpha() > 40 and dark.alpha() > 40
    assert dark.lightness() > light.lightness()  # light track on dark panels, dark on light


def test_unknown_state_is_an_error(qapp):
    with pytest.raises(ValueError, match="state must be one of"):
        paint_gauge(10, "green", 16)


# --- notifications over D-Bus ------------------------------------------------------------------

from tests.gui.fake_notifications import FakeNotificationService, PrivateSessionBus  # noqa: E402


@pytest.fixture
def session_bus(monkeypatch):
    if not PrivateSessionBus.available():
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon)")
    bus = PrivateSessionBus()
    address = bus.start()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    service = FakeNotificationService(address)
    service.start()
    yield service
    service.stop()
    bus.stop()


def alert(severity: str = "warning", budget: str | None = "team") -> Alert:
    return Alert("threshold", severity, "Budget 'team' at 80 %", "$80.00 of $100.00 this month", 0, budget=budget)


def test_desktop_notification_has_the_exact_wire_signature(qtbot, session_bus):
    from llmtray.gui.notify import NotificationRelay

    relay = NotificationRelay(tray=None, icon_path="/icon.png")
    try:
        assert relay.desktop is not None
        relay.show.emit(alert("critical"))
        qtbot.waitUntil(lambda: any(c[0] == "susssasa{sv}i" for c in session_bus.calls), timeout=5000)
        signature, body = next(c for c in session_bus.calls if c[0] == "susssasa{sv}i")
        app, replaces, icon, title, text, actions, hints, timeout = body
        assert (app, replaces, icon, title, text) == ("llmtray", 0, "/icon.png", "Budget 'team' at 80 %",
                                                       "$80.00 of $100.00 this month")
        assert actions == ["default", "Open dashboard"] and timeout == -1
        assert hints["urgency"] == ("y", 2) and hints["desktop-entry"] == ("s", "llmtray")
        assert relay.delivered == [("freedesktop", alert("critical"))]
    finally:
        relay.close()


def test_notification_body_markup_from_a_feature_name_is_shown_as_typed(qtbot, session_bus):
    """#26 item 2: the body is freedesktop markup; a feature name any local process chose
    (`<a href=…>`, `&`) reaches the daemon escaped, the title (plain text by the spec) unchanged."""
    from llmtray.gui.notify import NotificationRelay

    hostile = Alert("runaway", "warning", "Runaway calls: feature “<b>x</b>”",
                    '12 calls/min — feature <a href="https://evil.example">open llmtray</a> & more', 0)
    relay = NotificationRelay(tray=None)
    try:
        relay.show.emit(hostile)
        qtbot.waitUntil(lambda: any(c[0] == "susssasa{sv}i" for c in session_bus.calls), timeout=5000)
        _, body = next(c for c in session_bus.calls if c[0] == "susssasa{sv}i")
        assert body[3] == "Runaway calls: feature “<b>x</b>”"
        assert body[4] == ('12 calls/min — feature &lt;a href="https://evil.example"&gt;open llmtray&lt;/a&gt; '
                           "&amp; more")
    finally:
        relay.close()


def test_alert_details_tooltip_shows_markup_from_a_feature_name_as_text(qtbot):
    from PySide6.QtGui import QTextDocument

    from llmtray.gui.alerts_panel import AlertsPanel

    panel = AlertsPanel(None)
    qtbot.addWidget(panel)
    body = 'feature <img src="file:///etc/passwd"><a href="https://evil.example">open llmtray</a> & more'
    panel.set_rows([Alert("runaway", "warning", "Runaway calls", body, 0)])
    shown = QTextDocument()
    shown.setHtml(panel.table.item(0, 3).toolTip())
    assert shown.toPlainText() == body


def test_clicking_a_notification_names_its_budget(qtbot, session_bus):
    from llmtray.gui.notify import NotificationRelay

    relay = NotificationRelay(tray=None)
    clicked: list[object] = []
    relay.clicked.connect(clicked.append)
    try:
        relay.show.emit(alert(budget="team"))
        qtbot.waitUntil(lambda: any(c[0] == "susssasa{sv}i" for c in session_bus.calls), timeout=5000)
        qtbot.waitUntil(lambda: 1 in relay.desktop._ids, timeout=5000)
        session_bus.click(1)
        qtbot.waitUntil(lambda: clicked == ["team"], timeout=5000)
    finally:
        relay.close()


def test_no_service_no_tray_logs_once_and_keeps_going(qtbot, monkeypatch, caplog):
    from llmtray.gui.notify import NotificationRelay

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    relay = NotificationRelay(tray=None)
    assert relay.desktop is None
    relay.show.emit(alert())
    relay.show.emit(alert())
    assert relay.delivered == []
    assert sum("alerts are shown in the window only" in r.message for r in caplog.records) == 1
    relay.close()


def test_a_runaway_notification_offers_to_block_its_feature(qtbot, session_bus):
    from llmtray.gui.notify import NotificationRelay

    relay = NotificationRelay(tray=None)
    requested: list[str] = []
    clicked: list[object] = []
    relay.block_requested.connect(requested.append)
    relay.clicked.connect(clicked.append)
    try:
        relay.show.emit(Alert("runaway", "critical", "Runaway calls: feature “agent”", "12 calls/min", 0,
                              feature="agent"))
        relay.show.emit(alert())  # names no feature: no block button
        qtbot.waitUntil(lambda: len([c for c in session_bus.calls if c[0] == "susssasa{sv}i"]) == 2, timeout=5000)
        runaway, budget = [c[1] for c in session_bus.calls if c[0] == "susssasa{sv}i"]
        assert runaway[5] == ["default", "Open dashboard", "block", "Block agent for 1 h"]
        assert budget[5] == ["default", "Open dashboard"]
        qtbot.waitUntil(lambda: {1, 2} <= set(relay.desktop._ids), timeout=5000)
        session_bus.click(2, "block")  # a notification without the action: ignored
        session_bus.click(1, "block")
        qtbot.waitUntil(lambda: requested == ["agent"], timeout=5000)
        assert clicked == []  # the button blocks; it does not also open the window
    finally:
        relay.close()


def test_a_tray_balloon_click_offers_the_block_in_the_window(qtbot, monkeypatch):
    """Windows and macOS: no notification buttons, so clicking the balloon offers the block."""
    from PySide6.QtWidgets import QSystemTrayIcon

    from llmtray.gui import notify

    monkeypatch.setattr(notify.sys, "platform", "win32")
    monkeypatch.setattr(QSystemTrayIcon, "supportsMessages", staticmethod(lambda: True))
    icon = QSystemTrayIcon()
    monkeypatch.setattr(icon, "isVisible", lambda: True)
    monkeypatch.setattr(icon, "showMessage", lambda *a: None)
    relay = notify.NotificationRelay(icon)
    offered: list[str] = []
    relay.block_offered.connect(offered.append)
    relay.show.emit(Alert("spike", "warning", "Spending spike", "…", 0, feature="search"))
    assert relay.delivered[-1][0] == "tray"
    icon.messageClicked.emit()
    assert offered == ["search"]
    relay.show.emit(alert())
    icon.messageClicked.emit()
    assert offered == ["search"]  # a budget alert offers nothing
