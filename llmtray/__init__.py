"""llmtray: see what your LLM API calls cost, live, from the system tray."""

__version__ = "0.1.0"
