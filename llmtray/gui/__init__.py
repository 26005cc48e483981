"""The Qt side of llmtray: the dashboard window, its charts and the app that wires them together.

Only this package imports Qt; it reads data through `llmtray.core.queries` on worker threads.
Importing it applies the binding workarounds first, so no window, tray or test can run without them.
"""

from llmtray.gui.qt_workarounds import immortal_singletons

immortal_singletons()
