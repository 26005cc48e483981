"""Words next to numbers, shared by the window, the tray and the CLI ("1 request", not "1 requests")."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 request`, `2 requests`, `1,204 requests` (thousands separated); `many` for irregular nouns."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"
