"""Shared by the packaging tests: where the checkout and its packaging files are, and the validators."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
# The sizes the hicolor theme, Windows and macOS ask for (packaging/render_icons.py renders them).
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def tool(name: str, package: str) -> str:
    """The path of a command-line validator, or skip: it comes from a Debian package CI installs."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; .ci/run installs it)")
    return path
