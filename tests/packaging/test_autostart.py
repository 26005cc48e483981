"""Start at login. Linux: the real XDG entry on a temporary XDG_CONFIG_HOME, checked with
desktop-file-validate. macOS: the LaunchAgent plist file (launchd itself is not exercised here).
Windows (Run key): only in test_windows_run_key, which runs on Windows."""

from __future__ import annotations

import os
import plistlib
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtray import autostart
from llmtray.autostart import (LaunchAgent, XdgAutostart, join_exec, launch_command, llmtray_args,
                               parse_desktop_entry, render_desktop_entry, split_exec)
from llmtray.platform_setup import APP_ID

from .test_linux_files import validate_desktop

linux_only = pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG autostart is for Linux/BSD desktops")


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> XdgAutostart:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    monkeypatch.delenv("APPIMAGE", raising=False)
    return XdgAutostart()


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def entries(where: XdgAutostart) -> list[Path]:
    return sorted(where.path.parent.iterdir()) if where.path.parent.exists() else []


def written_exec(where: XdgAutostart) -> list[str]:
    return split_exec(parse_desktop_entry(where.path.read_text())["Exec"])


@linux_only
def test_enable_writes_one_valid_entry_with_an_absolute_program_that_exists(xdg: XdgAutostart, tmp_path: Path):
    assert not autostart.is_enabled()
    command = autostart.enable(["--data-dir", str(tmp_path / "my data")])
    assert xdg.path == tmp_path / "config" / "autostart" / "llmtray.desktop"
    validate_desktop(xdg.path)
    program = Path(command[0])
    assert program.is_absolute() and program.is_file() and os.access(program, os.X_OK)
    assert written_exec(xdg) == command
    assert llmtray_args(command) == ["--data-dir", str(tmp_path / "my data")]
    assert autostart.is_enabled()
    icon = Path(parse_desktop_entry(xdg.path.read_text())["Icon"])
    assert icon.is_absolute() and icon.is_file()

    autostart.enable()
    assert entries(xdg) == [xdg.path]  # enabling again rewrites the one entry
    assert autostart.repair() is None  # nothing stale

    autostart.disable()
    assert not autostart.is_enabled() and entries(xdg) == []
    autostart.disable()  # already off: no error


@linux_only
def test_repair_points_a_stale_entry_at_this_installation_keeping_its_arguments(xdg: XdgAutostart, tmp_path: Path):
    xdg.path.parent.mkdir(parents=True)
    gone = tmp_path / "old venv" / "bin" / "llmtray"
    xdg.path.write_text(render_desktop_entry([str(gone), "--data-dir", "/srv/llm data"], icon="llmtray"))
    repaired = autostart.repair()
    assert repaired == launch_command(["--data-dir", "/srv/llm data"])
    assert written_exec(xdg) == repaired
    validate_desktop(xdg.path)
    assert autostart.repair() is None


@linux_only
def test_repair_rewrites_an_entry_without_a_usable_program(xdg: XdgAutostart):
    xdg.path.parent.mkdir(parents=True)
    for exec_line in ("Exec=llmtray --demo\n", ""):  # relative (PATH differs at login), or none at all
        xdg.path.write_text("[Desktop Entry]\nType=Application\nName=llmtray\n" + exec_line)
        assert autostart.repair() == launch_command(["--demo"] if exec_line else [])
        assert Path(written_exec(xdg)[0]).is_absolute()


@linux_only
def test_repair_leaves_another_installation_that_still_exists(xdg: XdgAutostart, tmp_path: Path):
    other = executable(tmp_path / "pipx" / "bin" / "llmtray")
    xdg.path.parent.mkdir(parents=True)
    text = render_desktop_entry([str(other)], icon="llmtray")
    xdg.path.write_text(text)
    assert autostart.repair() is None
    assert xdg.path.read_text() == text


@linux_only
def test_a_masked_entry_is_off_and_not_repaired(xdg: XdgAutostart, tmp_path: Path):
    xdg.path.parent.mkdir(parents=True)
    text = render_desktop_entry([str(tmp_path / "gone")], icon="llmtray", hidden=True)
    xdg.path.write_text(text)
    assert not autostart.is_enabled()
    assert autostart.repair() is None and xdg.path.read_text() == text
    xdg.path.write_text(text.replace("Hidden=true\n", "").replace("Autostart-enabled=true", "Autostart-enabled=false"))
    assert not autostart.is_enabled()


@linux_only
def test_a_system_wide_entry_is_masked_by_disable_and_overridden_by_enable(xdg: XdgAutostart, tmp_path: Path):
    system = tmp_path / "etc-xdg" / "autostart" / "llmtray.desktop"
    system.parent.mkdir(parents=True)
    system.write_text(render_desktop_entry([str(executable(tmp_path / "usr" / "bin" / "llmtray"))], icon="llmtray"))
    assert autostart.is_enabled()  # from the system entry alone

    autostart.disable()
    assert not autostart.is_enabled()
    assert parse_desktop_entry(xdg.path.read_text())["Hidden"] == "true"
    validate_desktop(xdg.path)
    assert system.is_file()  # not ours to delete

    command = autostart.enable()
    assert autostart.is_enabled() and written_exec(xdg) == command


def test_an_appimage_starts_itself_by_its_own_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = executable(tmp_path / "Apps" / "llmtray-0.1.0-x86_64.AppImage")
    monkeypatch.setenv("APPIMAGE", str(image))
    assert launch_command(["--demo"]) == [str(image), "--demo"]
    monkeypatch.setenv("APPIMAGE", str(tmp_path / "deleted.AppImage"))
    assert launch_command()[0] != str(tmp_path / "deleted.AppImage")


def test_a_frozen_bundle_starts_its_own_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bundle = executable(tmp_path / "dist" / "llmtray" / "llmtray")
    monkeypatch.delenv("APPIMAGE", raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle))
    assert launch_command(["--demo"]) == [str(bundle), "--demo"]


@linux_only
def test_the_console_script_this_process_runs_as_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    script = executable(tmp_path / "local" / "bin" / "llmtray")
    monkeypatch.delenv("APPIMAGE", raising=False)
    monkeypatch.setattr(sys, "argv", [str(script), "--demo"])
    assert launch_command(["--demo"]) == [str(script), "--demo"]


def test_an_installed_script_beside_the_interpreter_is_preferred(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("APPIMAGE", raising=False)
    monkeypatch.setattr(sys, "argv", ["-c"])
    command = launch_command()
    beside = Path(sys.executable).with_name("llmtray")
    if sys.platform != "win32" and beside.is_file():
        assert command == [str(Path(sys.executable).absolute().with_name("llmtray"))]
    else:
        assert command[1:] == ["-m", "llmtray"]


def test_llmtray_args_skip_the_interpreter_and_module():
    assert llmtray_args(["/venv/bin/python", "-m", "llmtray", "--demo"]) == ["--demo"]
    assert llmtray_args(["/usr/bin/llmtray", "--data-dir", "/d"]) == ["--data-dir", "/d"]


ARG = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@given(st.lists(ARG, min_size=1, max_size=5))
def test_exec_quoting_round_trips(argv: list[str]):
    assert split_exec(join_exec(argv)) == argv


def test_exec_field_codes_are_dropped_and_escapes_read():
    assert split_exec('llmtray %U --x "a\\\\\\\\b" 100%%') == ["llmtray", "--x", "a\\b", "100%"]


def test_a_hostile_path_still_makes_a_valid_entry(tmp_path: Path):
    command = ['/home/j "q"/$HOME/`x`/a\\b/100%/l;l&m|t<r>a~y*?#()', "--data-dir", "it's"]
    path = tmp_path / "llmtray.desktop"
    path.write_text(render_desktop_entry(command, icon="llmtray"))
    validate_desktop(path)
    assert split_exec(parse_desktop_entry(path.read_text())["Exec"]) == command


def test_launch_agent_plist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The macOS file as launchd reads it (written and parsed with plistlib; launchd not run)."""
    monkeypatch.delenv("APPIMAGE", raising=False)
    agent = LaunchAgent(home=tmp_path)
    assert not autostart.is_enabled(agent)
    command = autostart.enable(["--demo"], agent)
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
    written = plistlib.loads(agent.path.read_bytes())
    assert written == {"Label": APP_ID, "ProgramArguments": command, "RunAtLoad": True,
                       "ProcessType": "Interactive", "LimitLoadToSessionType": "Aqua"}
    assert autostart.is_enabled(agent) and autostart.repair(agent) is None

    written["ProgramArguments"] = ["/Applications/old llmtray.app/Contents/MacOS/llmtray", "--demo"]
    agent.path.write_bytes(plistlib.dumps(written))
    assert autostart.repair(agent) == launch_command(["--demo"])
    assert plistlib.loads(agent.path.read_bytes())["ProgramArguments"] == launch_command(["--demo"])

    agent.path.write_bytes(b"not a plist")
    assert autostart.repair(agent) == launch_command()  # unreadable: rewritten

    autostart.disable(agent)
    assert not agent.path.exists() and not autostart.is_enabled(agent)


@pytest.mark.skipif(sys.platform != "win32", reason="the Run key exists on Windows only (not verified on this Linux CI)")
def test_windows_run_key():
    from llmtray.autostart import RunKey

    key = RunKey()
    before = key.read()
    try:
        command = autostart.enable(["--data-dir", "C:\\llm data"], key)
        assert key.read() == command and autostart.is_enabled(key)
        autostart.disable(key)
        assert not autostart.is_enabled(key)
    finally:
        if before is not None:
            key.write(before)
