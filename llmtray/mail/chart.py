"""The digest's daily-spend chart as a PNG, drawn with integers and zlib (no Qt, no Pillow).

A mail client shows an inline image where it won't run scripts or load remote pictures, and the
digest is built on a worker thread or in a headless `llmtray serve` — so the picture is a plain
bar chart written byte by byte. Labels live in the HTML beside it (text in pixels needs a font).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 560, 140, 6
BACKGROUND = (255, 255, 255)
GRID = (228, 231, 235)
BAR = (74, 144, 217)
LAST = (230, 126, 34)  # the digest's own day stands out


def bar_chart_png(values: Sequence[int], *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """One bar per value (nano-dollars, ≥ 0), the last one highlighted, scaled to the largest."""
    if not values:
        raise ValueError("a chart needs at least one value")
    rows = [bytearray(BACKGROUND * width) for _ in range(height)]
    for quarter in range(1, 4):  # light grid at 25/50/75 %
        y = PAD + (height - 2 * PAD) * quarter // 4
        rows[y][PAD * 3:(width - PAD) * 3] = bytes(GRID * (width - 2 * PAD))
    top = max(max(values), 1)
    slot = (width - 2 * PAD) / len(values)
    gap = max(1, int(slot) // 5)
    usable = height - 2 * PAD
    for i, value in enumerate(values):
        bar_h = 0 if value <= 0 else max(1, value * usable // top)  # integer scale: no float money
        x0, x1 = PAD + int(i * slot) + gap // 2, PAD + int((i + 1) * slot) - (gap - gap // 2)
        colour = bytes((LAST if i == len(values) - 1 else BAR) * max(1, x1 - x0))
        for y in range(height - PAD - bar_h, height - PAD):
            rows[y][x0 * 3:x0 * 3 + len(colour)] = colour
    rows[height - PAD][PAD * 3:(width - PAD) * 3] = bytes((120, 120, 120) * (width - 2 * PAD))  # baseline
    return encode_png(width, height, rows)


def encode_png(width: int, height: int, rows: Sequence[bytes | bytearray]) -> bytes:
    """An 8-bit RGB PNG from `height` rows of `width * 3` bytes (filter 0 on every row)."""
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
