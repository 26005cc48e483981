"""Text for people, shared by the window, the tray and the CLI: "1 request" (not "1 requests"), and
columns that line up in a terminal whatever the script of the names in them."""

from __future__ import annotations

import unicodedata


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 request`, `2 requests`, `1,204 requests` (thousands separated); `many` for irregular nouns."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def display_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and fullwidth characters (CJK, most emoji)
    take two, combining marks, variation selectors and zero-width joiners none. `len()` counted
    each as one and misaligned the CLI's tables on CJK or emoji names."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def pad(text: str, width: int, *, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal columns (`right`: aligned right)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill
