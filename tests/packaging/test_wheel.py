"""The wheel a user installs (pip, pipx, uv tool): it carries the icons and the console script,
and `resource()` finds the icons inside it, not in the checkout it was built from."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llmtray import __version__

from .packaging_kit import ICON_SIZES, ICONS, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-build-isolation")  # offline and faster; otherwise pip fetches hatchling
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (built,) = out.glob("llmtray-*.whl")
    return built


def test_wheel_carries_the_icons_and_only_the_package(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "llmtray/resources/icons/llmtray.svg" in names
    for size in ICON_SIZES:
        assert f"llmtray/resources/icons/llmtray-{size}.png" in names
    for icon in ICONS.iterdir():  # every icon of the checkout, byte for byte
        assert zipfile.ZipFile(wheel).read(f"llmtray/resources/icons/{icon.name}") == icon.read_bytes()
    assert not [n for n in names if n.split("/")[0] in ("tests", "packaging", "bench", "resources")]
    assert wheel.name.startswith(f"llmtray-{__version__}-")


def test_wheel_declares_the_console_script(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    section = text.split("[console_scripts]", 1)[1].split("[", 1)[0]
    scripts = dict(line.replace(" ", "").split("=", 1) for line in section.splitlines() if "=" in line)
    assert scripts["llmtray"] == "llmtray.cli:main"


def test_resource_finds_the_icon_inside_the_installed_wheel(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import llmtray, llmtray.paths as p; "
            "print(llmtray.__file__); print(p.resource('icons/llmtray.svg')); print(p.resource('icons/llmtray-48.png'))")
    # The unzipped wheel first on the path; cwd elsewhere so the checkout is not importable as ''.
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    package, svg, png = (Path(line) for line in proc.stdout.splitlines())
    assert package.is_relative_to(site)
    assert svg == site / "llmtray" / "resources" / "icons" / "llmtray.svg"
    assert png.is_file() and png.is_relative_to(site)
    assert svg.read_bytes() == (ICONS / "llmtray.svg").read_bytes()
