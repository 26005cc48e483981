"""The KPI strip: seven numbers a developer checks at a glance, each with a line saying what it covers."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from llmtray.core.money import format_usd, usd_to_nanos
from llmtray.core.wording import plural
from llmtray.gui import theme
from llmtray.gui.views import Kpis

KPI_KEYS = ("today", "month", "projected", "budget", "cost_per_request", "requests", "cache_savings")
_TITLES = {
    "today": "Today",
    "month": "This month",
    "projected": "Projected month end",
    "budget": "Top budget",
    "cost_per_request": "Cost per request",
    "requests": "Requests",
    "cache_savings": "Cache savings",
}
_STATE_COLORS = {"ok": theme.OK, "warning": "#d97706", "exceeded": theme.ERROR}


class KpiCard(QFrame):
    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("card")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(1)
        self.title = QLabel(title)
        self.title.setObjectName("kpiTitle")
        self.value = QLabel("…")
        self.value.setObjectName("kpiValue")
        self.sub = QLabel("")
        self.sub.setObjectName("kpiSub")
        for w in (self.title, self.value, self.sub):
            layout.addWidget(w)

    def set(self, value: str, sub: str, color: str | None = None) -> None:
        self.value.setText(value)
        self.value.setStyleSheet(f"color: {color};" if color else "")
        self.sub.setText(sub)
        self.sub.setToolTip(sub)


class KpiStrip(QWidget):
    """A row of `KpiCard`s; `set_kpis` fills them from one `Kpis` payload."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        self.cards = {key: KpiCard(_TITLES[key]) for key in KPI_KEYS}
        for card in self.cards.values():
            layout.addWidget(card)

    def set_kpis(self, k: Kpis) -> None:
        c = self.cards
        c["today"].set(format_usd(k.today.cost_nanos), plural(k.today.requests, "request"))
        month_sub = f"{plural(k.month.unpriced, 'request')} unpriced" if k.month.unpriced else plural(k.month.requests, "request")
        c["month"].set(format_usd(k.month.cost_nanos), month_sub)
        c["projected"].set(format_usd(k.projected_nanos), "at the recent pace")
        self._set_budget(k.budgets)
        cpr = k.in_range.cost_per_request_nanos
        c["cost_per_request"].set(theme.format_unit_cost(cpr) if cpr is not None else "—", k.range_label)
        c["requests"].set(theme.format_count(k.in_range.requests), k.range_label)
        if k.cache_savings_nanos is None:
            c["cache_savings"].set("—", "no cached tokens")
        else:
            c["cache_savings"].set(format_usd(k.cache_savings_nanos), f"prompt caching, {k.range_label.lower()}",
                                   theme.OK if k.cache_savings_nanos > 0 else None)

    def set_unavailable(self, reason: str) -> None:
        """No numbers could be read (e.g. a read-only database that needs an upgrade): say so in
        every card that never got one, instead of "…" forever."""
        for card in self.cards.values():
            if card.value.text() == "…":
                card.set("—", "not available")
                card.sub.setToolTip(reason)

    def _set_budget(self, budgets: list[dict[str, Any]] | None) -> None:
        card = self.cards["budget"]
        if not budgets:
            card.set("no budget", "add one: llmtray budgets add" if budgets is not None else "budgets not available")
            return
        top = max(budgets, key=lambda b: b["percent"])
        spent, limit = format_usd(usd_to_nanos(top["spent_usd"])), format_usd(usd_to_nanos(top["limit_usd"]))
        card.set(f"{top['percent']:.0f}%", f"{top['name']}: {spent} of {limit}",
                 _STATE_COLORS.get(top["state"]))

    def values(self) -> dict[str, str]:
        """The shown value of each card (for tests and the screenshot check)."""
        return {key: card.value.text() for key, card in self.cards.items()}
