"""Render resources/icons/llmtray.svg to the PNG sizes desktops and bundles ask for.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

The PNGs are committed (so no build step needs Qt's SVG renderer); run this after editing the SVG.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def main() -> None:
    app = QGuiApplication([])  # noqa: F841 - fonts for the SVG's text need a GUI application
    renderer = QSvgRenderer(str(ICONS / "llmtray.svg"))
    if not renderer.isValid():
        raise SystemExit("llmtray.svg does not parse")
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        image.save(str(ICONS / f"llmtray-{size}.png"))
        print(f"wrote llmtray-{size}.png")


if __name__ == "__main__":
    main()
