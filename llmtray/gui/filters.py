"""The filter bar: range, provider, model, feature, tag, source and machine — applied to every view.

The machine picker is the team database's (DESIGN §16): each machine tags what it records with
`machine`. It shows whenever events carry that tag — the data decides, not the backend: a solo
user never sees an empty picker, and a database holding team events (a copy of one included)
always offers it. Its pairs then leave the tag picker, which would list them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QWidget

from llmtray.core.dburl import MACHINE_TAG
from llmtray.core.queries import Filters
from llmtray.gui.views import RANGES, FilterOptions

_PICKERS = (("provider", "All providers"), ("model", "All models"), ("feature", "All features"),
            ("tag", "All tags"), ("source", "All sources"), ("machine", "All machines"))


class FilterBar(QWidget):
    """Signals: changed() — the user picked another range or filter."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.range = QComboBox()
        for key, label in RANGES.items():
            self.range.addItem(label, key)
        self.range.setCurrentIndex(self.range.findData("30d"))
        self.range.currentIndexChanged.connect(self._emit)
        layout.addWidget(self.range)
        self.pickers: dict[str, QComboBox] = {}
        for name, everything in _PICKERS:
            combo = QComboBox()
            combo.addItem(everything, None)
            combo.setMinimumContentsLength(10)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.currentIndexChanged.connect(self._emit)
            layout.addWidget(combo)
            self.pickers[name] = combo
        self.pickers["machine"].hide()  # until events carry a machine tag
        self.clear = QPushButton("Clear")
        self.clear.setToolTip("Show everything again")
        self.clear.clicked.connect(self.reset)
        self.clear.hide()
        layout.addWidget(self.clear)

    def set_options(self, options: FilterOptions) -> None:
        """Fill the pickers with the values seen, keeping what the user picked."""
        machines = [value for key, value in options.tags if key == MACHINE_TAG]
        values: dict[str, Sequence[object]] = {
            "provider": options.providers, "model": options.models, "feature": options.features,
            "source": options.sources, "tag": [t for t in options.tags if t[0] != MACHINE_TAG],
            "machine": machines,
        }
        for name, combo in self.pickers.items():
            current = combo.currentData()
            wanted = list(values[name])
            if current is not None and current not in wanted:
                wanted.append(current)
            if name == "machine":
                combo.setVisible(bool(wanted))
            if [combo.itemData(i) for i in range(1, combo.count())] == wanted:
                continue
            combo.blockSignals(True)
            while combo.count() > 1:
                combo.removeItem(1)
            for value in wanted:
                combo.addItem(f"{value[0]} = {value[1]}" if name == "tag" else str(value), value)
            combo.setCurrentIndex(max(combo.findData(current), 0) if current is not None else 0)
            combo.blockSignals(False)

    def filters(self) -> Filters:
        """The picked filters, without time bounds (the range key carries those)."""
        pick = {name: combo.currentData() for name, combo in self.pickers.items()}
        tag, machine = pick.pop("tag"), pick.pop("machine")
        return Filters(
            provider=(pick["provider"],) if pick["provider"] else (),
            model=(pick["model"],) if pick["model"] else (),
            feature=(pick["feature"],) if pick["feature"] else (),
            source=(pick["source"],) if pick["source"] else (),
            tags=((tuple(tag),) if tag else ()) + (((MACHINE_TAG, machine),) if machine else ()),
        )

    def range_key(self) -> str:
        return self.range.currentData()

    def select(self, name: str, value: object) -> None:
        """Pick `value` in one picker (or the range), as a user would — for tests and deep links."""
        combo = self.range if name == "range" else self.pickers[name]
        index = combo.findData(value)
        if index < 0:
            combo.addItem(f"{value[0]} = {value[1]}" if name == "tag" else str(value), value)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    @Slot()
    def reset(self) -> None:
        for combo in self.pickers.values():
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        self._emit()

    @Slot()
    def _emit(self) -> None:
        self.clear.setVisible(any(c.currentIndex() > 0 for c in self.pickers.values()))
        self.changed.emit()
