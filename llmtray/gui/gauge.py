"""The tray icon: a budget gauge painted at run time, as a pure function of the budget's state.

`paint_gauge(percent, state, size, dark)` returns a QImage and touches no global state, so it is
testable pixel by pixel offscreen and the tray can re-render it for every size and device pixel
ratio a panel asks for (DESKTOP.md: in-memory pixmaps, no theme names or file paths).

Design for 16–24 px: a thick ring (a quarter of the icon) so the fill reads at a glance; the
colour carries the state (green / amber / red) and the arc how far the budget is used. An
exceeded budget is a full red ring with a white '!' mark in the middle; with no budget the ring
is an empty track with a blue dot, so the icon still says "llmtray is running".
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPainter, QPen, QPixmap

STATES = ("none", "ok", "warning", "exceeded")
COLORS = {
    "ok": QColor("#2f9e58"),
    "warning": QColor("#e3a008"),
    "exceeded": QColor("#dc3b3b"),
    "none": QColor("#3b82c4"),
}
TRACK = {False: QColor(0, 0, 0, 70), True: QColor(255, 255, 255, 85)}  # faint on light / dark panels
START_ANGLE = 90  # 12 o'clock, filling clockwise like a clock hand


def paint_gauge(percent: float | None, state: str, size: int, dark: bool = False, dpr: float = 1.0) -> QImage:
    """An antialiased gauge `size` logical pixels square at device pixel ratio `dpr`."""
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    px = max(1, round(size * dpr))
    image = QImage(px, px, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    image.setDevicePixelRatio(dpr)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    width = max(2.0, size * 0.24)
    inset = width / 2 + max(0.5, size * 0.03)
    rect = QRectF(inset, inset, size - 2 * inset, size - 2 * inset)

    track = QPen(TRACK[dark], width)
    track.setCapStyle(Qt.PenCapStyle.FlatCap)
    p.setPen(track)
    p.drawEllipse(rect)

    if state == "none":
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(COLORS["none"]))
        r = size * 0.16
        p.drawEllipse(QPointF(size / 2, size / 2), r, r)
    else:
        fraction = 1.0 if state == "exceeded" else max(0.0, min(1.0, (percent or 0.0) / 100.0))
        arc = QPen(COLORS[state], width)
        arc.setCapStyle(Qt.PenCapStyle.FlatCap)
        p.setPen(arc)
        if fraction >= 1.0:
            p.drawEllipse(rect)
        elif fraction > 0:
            # at least a visible sliver: 1 % of a budget must not look like "nothing"
            span = max(fraction, 0.06) * 360
            p.drawArc(rect, START_ANGLE * 16, int(-span * 16))
        if state == "exceeded":
            _exceeded_mark(p, size)
        elif size >= 32 and percent is not None:
            _percent_text(p, size, percent, dark)
    p.end()
    return image


def _exceeded_mark(p: QPainter, size: int) -> None:
    """A red disc with a white '!' bar: readable even at 16 px where text is not."""
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(COLORS["exceeded"]))
    r = size * 0.2
    p.drawEllipse(QPointF(size / 2, size / 2), r, r)
    p.setBrush(QBrush(QColor("white")))
    bar_w = max(1.0, size * 0.09)
    p.drawRect(QRectF(size / 2 - bar_w / 2, size / 2 - r * 0.7, bar_w, r * 0.85))
    p.drawRect(QRectF(size / 2 - bar_w / 2, size / 2 + r * 0.3, bar_w, r * 0.3))


def _percent_text(p: QPainter, size: int, percent: float, dark: bool) -> None:
    font = p.font()
    font.setPixelSize(max(8, int(size * 0.26)))
    font.setBold(True)
    p.setFont(font)
    p.setPen(QPen(QColor("white") if dark else QColor("#222222")))
    text = f"{min(999, round(percent))}"
    p.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, text)


def gauge_icon(percent: float | None, state: str, dark: bool = False, dpr: float = 1.0) -> QIcon:
    """A QIcon holding every size trays commonly ask for, each painted (not scaled) crisp."""
    icon = QIcon()
    for size in (16, 20, 22, 24, 32, 48, 64):
        icon.addPixmap(QPixmap.fromImage(paint_gauge(percent, state, size, dark, dpr)))
    return icon

