"""One palette, one stylesheet and the number formats every part of the window shares.

Why one module: a chart that picks its own colours or prints `1234567` where its neighbour prints
`1.2M` looks broken. Series colours are assigned per name once (`SeriesColors`) so a model is the
same colour in the daily stack, the by-model bars and the latency chart.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

import pyqtgraph as pg

from llmtray.core.money import format_usd

BG = "#f4f5f7"
CARD = "#ffffff"
BORDER = "#e3e6eb"
TEXT = "#1f2430"
MUTED = "#6b7280"
GRID = "#eef0f3"
ACCENT = "#4f46e5"
WARN_BG, WARN_BORDER, WARN_TEXT = "#fff7e6", "#f5c46b", "#7a4b00"
ERROR = "#dc2626"
OK = "#059669"
# Distinct, colour-blind-friendly hues that read on white; "other" is always neutral grey.
SERIES = ("#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6",
          "#84cc16", "#f97316", "#06b6d4", "#a855f7")
OTHER = "#9ca3af"
TOKEN_COLORS = {"uncached input": "#6366f1", "cache read": "#10b981", "cache write": "#f59e0b",
                "output": "#0ea5e9", "reasoning": "#a855f7"}
PERCENTILE_COLORS = {"p50": "#4f46e5", "p95": "#f59e0b", "p99": "#ef4444"}

STYLESHEET = f"""
QMainWindow, QWidget#dashboardRoot {{ background: {BG}; }}
QWidget {{ color: {TEXT}; font-size: 10pt; }}
QFrame#card {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 10px; }}
QLabel#cardTitle {{ font-weight: 600; font-size: 10pt; }}
QLabel#muted, QLabel#kpiTitle {{ color: {MUTED}; }}
QLabel#kpiTitle {{ font-size: 9pt; }}
QLabel#kpiValue {{ font-size: 17pt; font-weight: 600; }}
QLabel#kpiSub {{ color: {MUTED}; font-size: 8.5pt; }}
QLabel#appTitle {{ font-size: 14pt; font-weight: 700; }}
QLabel#warning {{ background: {WARN_BG}; border: 1px solid {WARN_BORDER}; border-radius: 8px;
                  color: {WARN_TEXT}; padding: 6px 10px; }}
QLabel#stale {{ color: {ERROR}; }}
QPushButton {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 6px; padding: 5px 12px; }}
QPushButton:hover {{ border-color: {ACCENT}; }}
QPushButton#primary {{ background: {ACCENT}; color: white; border: none; font-weight: 600; }}
QTabWidget::pane {{ border: none; }}
QTabBar::tab {{ background: transparent; padding: 6px 14px; color: {MUTED}; border: none;
                border-bottom: 2px solid transparent; }}
QTabBar::tab:selected {{ color: {TEXT}; border-bottom: 2px solid {ACCENT}; font-weight: 600; }}
QTableView {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 8px;
              gridline-color: {GRID}; selection-background-color: #e0e7ff; selection-color: {TEXT}; }}
QHeaderView::section {{ background: {CARD}; border: none; border-bottom: 1px solid {BORDER};
                        padding: 4px 6px; color: {MUTED}; font-weight: 600; }}
QLabel#code {{ background: #f8f9fb; border: 1px solid {BORDER}; border-radius: 6px;
               font-family: monospace; padding: 6px 8px; }}
QPushButton:disabled {{ color: {MUTED}; background: {BG}; }}
"""


def configure_pyqtgraph() -> None:
    """Light charts with antialiased lines; call once before building plots."""
    pg.setConfigOptions(antialias=True, background=CARD, foreground=MUTED)


class SeriesColors:
    """A stable colour per series name for the life of the window (first come, first coloured)."""

    def __init__(self) -> None:
        self._assigned: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name == "other":
            return OTHER
        if name not in self._assigned:
            self._assigned[name] = SERIES[len(self._assigned) % len(SERIES)]
        return self._assigned[name]

    def qcolor(self, name: str) -> QColor:
        return QColor(self(name))


def format_count(n: float) -> str:
    """Token and request counts: 950, 12.3k, 4.5M, 1.2B (no trailing `.0`)."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            text = f"{n / limit:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{int(n):,}"


def format_money_axis(usd: float, step: float = 1.0) -> str:
    """Axis ticks: whole dollars when large ($1.2k, $250), cents when small ($0.05), and below a
    dime's spacing as many decimals as the spacing needs ($0.00005, $0.00010): a fixed four
    decimals labelled tiny costs "$0.0001" twice and "$0."."""
    if abs(usd) >= 1000:
        return "$" + format_count(usd)
    if usd == 0:
        return "$0"
    if step < 0.1:
        return f"${usd:.{decimals_for(step)}f}"
    if abs(usd) >= 10:
        return f"${usd:,.0f}"
    return f"${usd:.2f}".rstrip("0").rstrip(".") if usd % 1 else f"${usd:.0f}"


def decimals_for(step: float, most: int = 9) -> int:
    """The fewest decimals (at least 2) that write every multiple of `step` exactly."""
    decimals = 2
    while decimals < most and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6 * step * 10**decimals:
        decimals += 1
    return decimals


def format_unit_cost(nanos: int) -> str:
    """A per-request cost: four decimals below a dollar ($0.0185), where cents would hide the
    difference between a cheap and a dear model."""
    if abs(nanos) >= 1_000_000_000:
        return format_usd(nanos)
    return f"${nanos / 1e9:.4f}"


def format_ms(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def format_ms_axis(ms: float) -> str:
    """Compact latency ticks: 200ms, 1s, 20s."""
    if ms >= 1000:
        return f"{ms / 1000:.1f}".rstrip("0").rstrip(".") + "s"
    return f"{ms:.0f}ms"

