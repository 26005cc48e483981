"""The empty state: what to do when nothing has been recorded yet, with every snippet one click
from the clipboard. Shown instead of empty charts (a blank dashboard tells a new user nothing)."""

from __future__ import annotations

import shlex
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

HOOK_SNIPPET = """import openai
import llmtray.hooks as lt

client = lt.instrument(openai.OpenAI())
with lt.tags(feature="summarize", user="u42"):
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])"""


def hook_snippet(data_dir: Path | None) -> str:
    """The hook finds llmtray through `ingest.json` in the default data dir. An llmtray on a data
    dir of its own (`--data-dir`, LLMTRAY_DATA_DIR, the demo) is reached only with the same
    LLMTRAY_DATA_DIR: without it the calls went to another llmtray's database (issue #17)."""
    if data_dir is None:
        return HOOK_SNIPPET
    return (f"# this llmtray keeps its data in its own folder: run your program with\n"
            f"#   LLMTRAY_DATA_DIR={shlex.quote(str(data_dir))}\n{HOOK_SNIPPET}")


# Shown instead of a proxy URL when another user's program holds llmtray's port.
UNSAFE_PORT = ("another user's program holds llmtray's port, and your proxy clients would send it their "
               "API keys. Set another port (LLMTRAY_PORT or ingest.port) and restart llmtray.")


def proxy_snippet(base_url: str | None) -> str:
    if base_url is None:
        return f"Not available: {UNSAFE_PORT}"
    return (f'openai.OpenAI(base_url="{base_url}/proxy/openai/v1")\n'
            f'anthropic.Anthropic(base_url="{base_url}/proxy/anthropic")')


class CopyBlock(QFrame):
    """A selectable code block, sized to its text, with a Copy button."""

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.text = QLabel(text)
        self.text.setObjectName("code")
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        self.copy = QPushButton("Copy")
        self.copy.clicked.connect(self._copy)
        layout.addWidget(self.copy, 0, Qt.AlignmentFlag.AlignTop)

    def set_text(self, text: str) -> None:
        self.text.setText(text)

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.text())
        self.copy.setText("Copied")


class Onboarding(QFrame):
    """Signals: import_requested(), demo_requested()."""

    import_requested = Signal()
    demo_requested = Signal()

    def __init__(self, base_url: str | None, can_import: bool, data_dir: Path | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("card")
        self.setMaximumWidth(1000)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(28, 24, 28, 24)
        outer.setSpacing(10)
        title = QLabel("No LLM calls recorded yet")
        title.setObjectName("appTitle")
        outer.addWidget(title)
        intro = QLabel("llmtray adds up what your apps' LLM API calls cost, live. Send it calls one of these ways:")
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        outer.addWidget(intro)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(6)
        grid.addWidget(_step("1. Python SDK hook", "wrap your OpenAI or Anthropic client"), 0, 0)
        self.hook = CopyBlock(hook_snippet(data_dir))
        grid.addWidget(self.hook, 0, 1)
        grid.addWidget(_step("2. Metering proxy", "any language: point the base URL here"), 1, 0)
        self.proxy = CopyBlock("")
        self.set_base_url(base_url)
        grid.addWidget(self.proxy, 1, 1)
        grid.addWidget(_step("3. Provider usage file", "OpenAI, Anthropic, OpenRouter exports"), 2, 0)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import usage file…")
        self.import_button.setEnabled(can_import)
        if not can_import:
            self.import_button.setToolTip("the import dialog is not part of this build; use `llmtray import FILE`")
        self.import_button.clicked.connect(self.import_requested)
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        grid.addLayout(buttons, 2, 1)
        grid.setColumnStretch(1, 1)
        outer.addLayout(grid)
        demo_row = QHBoxLayout()
        hint = QLabel("Just looking? Open a demo with 90 days of realistic traffic (kept apart from your data).")
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        demo_row.addWidget(hint, 1)
        self.demo_button = QPushButton("Load demo data")
        self.demo_button.setObjectName("primary")
        self.demo_button.clicked.connect(self.demo_requested)
        demo_row.addWidget(self.demo_button)
        outer.addLayout(demo_row)

    def set_base_url(self, base_url: str | None) -> None:
        """The proxy snippet for `base_url`; None (our port is another user's): a warning, no copy."""
        self.proxy.set_text(proxy_snippet(base_url))
        self.proxy.text.setWordWrap(base_url is None)
        self.proxy.copy.setEnabled(base_url is not None)


def _step(title: str, sub: str) -> QWidget:
    w = QWidget()
    layout = QVBoxLayout(w)
    layout.setContentsMargins(0, 4, 0, 0)
    layout.setSpacing(0)
    t = QLabel(title)
    t.setObjectName("cardTitle")
    s = QLabel(sub)
    s.setObjectName("muted")
    layout.addWidget(t)
    layout.addWidget(s)
    layout.addStretch(1)
    return w
