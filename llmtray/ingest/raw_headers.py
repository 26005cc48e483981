"""Header values whose bytes are not UTF-8, written back byte for byte by aiohttp.

The proxy promises to pass headers through unchanged (an `Authorization` value is whatever the
client's SDK sent). aiohttp holds header values as `str` and writes them as UTF-8; its C writer
silently *drops* a lone surrogate, so a value decoded with `surrogateescape` (the only lossless
way to hold arbitrary bytes in a str) would lose those bytes. `install()` wraps aiohttp's header
serializer: values that are all ASCII (nearly every request) take aiohttp's own fast path; the
others are encoded with `surrogateescape`, which gives back exactly the bytes that arrived.
CR and LF are refused as aiohttp refuses them (header injection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import http_writer

_installed: list[Callable[..., bytes]] = []


def text(raw: bytes) -> str:
    """Header bytes as a str that `install()`ed aiohttp writes back unchanged."""
    return raw.decode("utf-8", "surrogateescape")


def _serialize(status_line: str, headers: Any) -> bytes:
    items = list(headers.items())
    if all(k.isascii() and v.isascii() for k, v in items):
        return _installed[0](status_line, headers)
    lines = [status_line]
    for key, value in items:
        if "\r" in key or "\n" in key or "\r" in value or "\n" in value:
            raise ValueError("newline or carriage return in a header name or value")
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def install() -> None:
    """Make aiohttp's header writer lossless for surrogate-escaped bytes (idempotent)."""
    if not _installed:
        _installed.append(http_writer._serialize_headers)
        http_writer._serialize_headers = _serialize  # type: ignore[assignment]
