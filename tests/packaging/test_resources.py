"""`llmtray.paths.resource()` in a checkout / editable install and in a PyInstaller bundle (the
wheel case is in test_wheel.py, the real bundle is built by packaging/pyinstaller/build.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmtray import paths

from .packaging_kit import ICONS, ROOT


def test_checkout_or_editable_install_finds_the_checkout_icons():
    if not Path(paths.__file__).resolve().is_relative_to(ROOT):
        pytest.skip("llmtray is imported from an installed wheel, not this checkout")
    assert paths.resource("icons/llmtray.svg") == ICONS / "llmtray.svg"


def test_a_bundle_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bundled = tmp_path / "resources" / "icons" / "llmtray.svg"
    bundled.parent.mkdir(parents=True)
    bundled.write_text("<svg/>")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.resource("icons/llmtray.svg") == bundled
    # what the bundle lacks still comes from the package
    assert paths.resource("icons/llmtray-16.png").is_file()


def test_a_missing_resource_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match=r"'icons/nope\.png' not found \(looked in .*resources"):
        paths.resource("icons/nope.png")
