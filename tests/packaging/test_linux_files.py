"""The Linux desktop files: launcher, autostart template and AppStream metainfo pass the
freedesktop validators, agree with the code, and install into the hicolor layout."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from llmtray import __version__
from llmtray.autostart import parse_desktop_entry, render_desktop_entry, split_exec
from llmtray.platform_setup import APP_ID

from .packaging_kit import ICON_SIZES, ICONS, PACKAGING, tool

LINUX = PACKAGING / "linux"
DESKTOP = LINUX / "llmtray.desktop"
AUTOSTART_TEMPLATE = LINUX / "autostart" / "llmtray.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
INSTALL = LINUX / "install-desktop-files.sh"


def validate_desktop(path: Path) -> None:
    proc = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "error" not in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [DESKTOP, AUTOSTART_TEMPLATE], ids=["launcher", "autostart"])
def test_desktop_entries_validate(path: Path):
    validate_desktop(path)


def test_launcher_starts_llmtray_with_the_themed_icon():
    entry = parse_desktop_entry(DESKTOP.read_text())
    assert split_exec(entry["Exec"]) == ["llmtray"]
    assert entry["Icon"] == "llmtray" and entry["Type"] == "Application" and entry["Terminal"] == "false"


def test_autostart_template_is_what_the_code_writes():
    """One source for the entry: the template's keys are render_desktop_entry()'s."""
    committed = parse_desktop_entry(AUTOSTART_TEMPLATE.read_text())
    assert committed == parse_desktop_entry(render_desktop_entry(["/usr/bin/llmtray"], icon="llmtray"))


def test_metainfo_validates():
    proc = subprocess.run([tool("appstreamcli", "appstream"), "validate", "--no-net", str(METAINFO)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metainfo_agrees_with_the_app():
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == APP_ID
    assert (LINUX / root.findtext("launchable")).is_file()
    assert root.find("provides/binary").text == "llmtray"
    newest = root.find("releases/release")
    assert newest.get("version") == __version__, "add a <release> for the new version"


def run_install(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(["sh", str(INSTALL), *args], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_install_script_fills_the_hicolor_theme_and_uninstalls(tmp_path: Path):
    prefix = tmp_path / "prefix"
    program = "/opt/llm tray/$dist/llmtray"  # a path that needs the Exec quoting
    run_install("--prefix", str(prefix), "--exec", program)
    share = prefix / "share"
    hicolor = share / "icons" / "hicolor"
    for size in ICON_SIZES:
        installed = hicolor / f"{size}x{size}" / "apps" / "llmtray.png"
        assert installed.read_bytes() == (ICONS / f"llmtray-{size}.png").read_bytes()
    assert (hicolor / "scalable" / "apps" / "llmtray.svg").read_bytes() == (ICONS / "llmtray.svg").read_bytes()
    launcher = share / "applications" / "llmtray.desktop"
    validate_desktop(launcher)
    assert split_exec(parse_desktop_entry(launcher.read_text())["Exec"]) == [program]
    assert (share / "metainfo" / METAINFO.name).read_bytes() == METAINFO.read_bytes()

    run_install("--prefix", str(prefix), "--uninstall")
    left = [p for p in share.rglob("*") if p.is_file() and "llmtray" in p.name]
    assert left == []


def test_install_script_takes_the_program_from_path_for_a_user_prefix(tmp_path: Path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    program = bindir / "llmtray"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    run_install("--prefix", str(tmp_path / "prefix"), env_extra={"PATH": f"{bindir}:{os.environ['PATH']}"})
    entry = parse_desktop_entry((tmp_path / "prefix/share/applications/llmtray.desktop").read_text())
    assert split_exec(entry["Exec"]) == [str(program)]


def test_install_script_stages_into_destdir_for_a_distribution_package(tmp_path: Path):
    run_install("--prefix", "/usr", env_extra={"DESTDIR": str(tmp_path)})
    entry = parse_desktop_entry((tmp_path / "usr/share/applications/llmtray.desktop").read_text())
    assert entry["Exec"] == "llmtray"
    assert (tmp_path / "usr/share/icons/hicolor/48x48/apps/llmtray.png").is_file()
