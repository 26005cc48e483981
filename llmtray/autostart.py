"""Start llmtray at login: one per-user entry whose program is an absolute path that exists.

Linux: an XDG autostart entry, `$XDG_CONFIG_HOME/autostart/llmtray.desktop`. macOS: a LaunchAgent,
`~/Library/LaunchAgents/<APP_ID>.plist`. Windows: the value `llmtray` under the per-user `Run` key.
The state is always read back from the system, so a settings toggle shows what will really
happen at login — including an entry the user switched off in Task Manager or masked with
`Hidden=true`. `repair()` runs at every start: an entry whose program is gone (a moved AppImage,
a deleted venv, an uninstalled pipx app) is rewritten to this installation, because such an entry
fails silently at every login. An entry pointing at another installation that still exists is left
alone. Each backend writes one fixed name, so enabling twice never makes two entries.

No Qt: the CLI and tests use this without a display.
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from llmtray.platform_setup import APP_ID

NAME = "llmtray"


class Backend(Protocol):
    """Where one OS keeps login items: read the enabled command back, write it, remove it."""

    def read(self) -> list[str] | None:
        """The command that runs at login; None when llmtray does not start at login.
        An entry that exists but names no program reads as `[]` (so `repair` rewrites it)."""

    def write(self, command: Sequence[str]) -> None: ...

    def remove(self) -> None: ...


def launch_command(args: Sequence[str] = ()) -> list[str]:
    """The absolute command that starts this installation of llmtray, then `args`.

    An AppImage is named by `$APPIMAGE` (`sys.executable` is inside its temporary mount); a
    PyInstaller bundle by its own executable; a venv, pipx or uv install by the `llmtray` script
    this process was started as, else the one beside its interpreter (on Windows `pythonw -m
    llmtray`: the console script would open a console window at every login). Paths are not
    resolved: a venv's python is a symlink, and resolving it would lose the venv.
    """
    appimage = os.environ.get("APPIMAGE")
    if appimage and Path(appimage).is_file():
        return [str(Path(appimage).absolute()), *args]
    exe = Path(sys.executable).absolute()
    if getattr(sys, "frozen", False):
        return [str(exe), *args]
    if sys.platform == "win32":
        pythonw = exe.with_name("pythonw.exe")
        return [str(pythonw if pythonw.is_file() else exe), "-m", NAME, *args]
    for script in (Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None, exe.with_name(NAME)):
        if script is not None and script.name == NAME and _runnable(script):
            return [str(script), *args]
    return [str(exe), "-m", NAME, *args]


def llmtray_args(command: Sequence[str]) -> list[str]:
    """The arguments llmtray itself gets from `command` (after the program, or `python -m llmtray`)."""
    rest = list(command[1:])
    return rest[2:] if rest[:2] == ["-m", NAME] else rest


def backend() -> Backend:
    """This OS's login items."""
    if sys.platform == "win32":
        return RunKey()
    if sys.platform == "darwin":
        return LaunchAgent()
    return XdgAutostart()


def is_enabled(where: Backend | None = None) -> bool:
    return (where or backend()).read() is not None


def enable(args: Sequence[str] = (), where: Backend | None = None) -> list[str]:
    """Start this installation at login with `args` (e.g. `--data-dir DIR`); returns the command."""
    command = launch_command(args)
    (where or backend()).write(command)
    return command


def disable(where: Backend | None = None) -> None:
    (where or backend()).remove()


def repair(where: Backend | None = None) -> list[str] | None:
    """Point an enabled entry whose program no longer exists at this installation, keeping its
    llmtray arguments; returns the new command, or None when nothing needed repair."""
    where = where or backend()
    current = where.read()
    if current is None or (current and _runnable(Path(current[0]))):
        return None
    command = launch_command(llmtray_args(current))
    where.write(command)
    return command


def _runnable(program: Path) -> bool:
    return program.is_absolute() and program.is_file() and os.access(program, os.X_OK)


# --- Linux and other XDG desktops ------------------------------------------------------------------

# Characters that make the desktop-entry spec require a quoted Exec argument.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


class XdgAutostart:
    """`$XDG_CONFIG_HOME/autostart/llmtray.desktop` (XDG Autostart spec). A user entry overrides a
    system one of the same name in `$XDG_CONFIG_DIRS/autostart`; disabling over a system entry
    writes `Hidden=true`, the spec's way to mask it. Paths are read from the environment at each
    call, so tests (and a changed session) see the current ones."""

    @property
    def path(self) -> Path:
        return _config_home() / "autostart" / f"{NAME}.desktop"

    def read(self) -> list[str] | None:
        for path in (self.path, *self._system_entries()):
            if path.is_file():
                entry = parse_desktop_entry(path.read_text(encoding="utf-8", errors="replace"))
                hidden = entry.get("Hidden") == "true" or entry.get("X-GNOME-Autostart-enabled") == "false"
                return None if hidden else split_exec(entry.get("Exec", ""))
        return None

    def write(self, command: Sequence[str]) -> None:
        self._save(render_desktop_entry(command, icon=_icon_path()))

    def remove(self) -> None:
        if any(p.is_file() for p in self._system_entries()):
            self._save(render_desktop_entry(launch_command(), icon=NAME, hidden=True))
        else:
            self.path.unlink(missing_ok=True)

    def _system_entries(self) -> list[Path]:
        dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        return [Path(d) / "autostart" / f"{NAME}.desktop" for d in dirs.split(":") if d]

    def _save(self, text: str) -> None:
        """Write through a temporary file, so a crash never leaves half an entry."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".desktop.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.path)


def render_desktop_entry(command: Sequence[str], icon: str, hidden: bool = False) -> str:
    """The autostart entry for `command` (also renders packaging/linux/autostart/llmtray.desktop)."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Name=llmtray",
        "GenericName=LLM Cost Tracker",
        "Comment=See what your LLM API calls cost, live, from the system tray",
        f"Exec={join_exec(command)}",
        f"Icon={icon}",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
    ]
    if hidden:
        lines.append("Hidden=true")
    return "\n".join(lines) + "\n"


def join_exec(command: Sequence[str]) -> str:
    """An Exec value for `command`: arguments with reserved characters double-quoted with `"`, `` ` ``,
    `$` and `\\` backslash-escaped, `%` doubled (field codes), then the string escaping every value
    gets (`\\` → `\\\\`) — the spec's two levels of escaping."""
    parts = []
    for arg in command:
        if not arg or any(c in _EXEC_RESERVED for c in arg):
            escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            arg = f'"{escaped}"'
        parts.append(arg.replace("%", "%%"))
    return " ".join(parts).replace("\\", "\\\\")


def split_exec(value: str) -> list[str]:
    """The argv of an Exec value (the inverse of `join_exec`); field codes such as `%U` dropped."""
    value = _unescape_string(value)
    args: list[str] = []
    current: list[str] = []
    started = quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and value[i + 1:i + 2] == "%":
            current.append("%")
            started = True
            i += 1
        elif quoted:
            if c == "\\" and i + 1 < len(value):
                i += 1
                current.append(value[i])
            elif c == '"':
                quoted = False
            else:
                current.append(c)
        elif c == '"':
            quoted = started = True
        elif c in " \t":
            if started:
                args.append("".join(current))
            current, started = [], False
        elif c == "%" and i + 1 < len(value):
            i += 1  # a field code (%f, %U, ...): dropped
        else:
            current.append(c)
            started = True
        i += 1
    if started:
        args.append("".join(current))
    return args


def _unescape_string(value: str) -> str:
    """The desktop-entry string escapes: `\\s \\n \\t \\r \\\\`."""
    table = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_desktop_entry(text: str) -> dict[str, str]:
    """The keys of the `[Desktop Entry]` group (other groups, comments and blank lines skipped)."""
    keys: dict[str, str] = {}
    group = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == "Desktop Entry" and "=" in line:
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), value.strip())
    return keys


def _config_home() -> Path:
    configured = os.environ.get("XDG_CONFIG_HOME")
    return Path(configured) if configured and os.path.isabs(configured) else Path.home() / ".config"


def _icon_path() -> str:
    """The app icon by absolute path (shown by session settings even when no icon theme has it);
    the theme name when the resource is missing. `repair` rewrites it with the program."""
    from llmtray.paths import resource

    try:
        return str(resource("icons/llmtray-256.png"))
    except FileNotFoundError:
        return NAME


# --- macOS -----------------------------------------------------------------------------------------


class LaunchAgent:
    """`~/Library/LaunchAgents/<APP_ID>.plist`, run by launchd at the next login. Enabling does not
    `launchctl load` it: that would start a second llmtray now."""

    def __init__(self, home: Path | None = None):
        self._home = home

    @property
    def path(self) -> Path:
        return (self._home or Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"

    def read(self) -> list[str] | None:
        try:
            agent = plistlib.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (plistlib.InvalidFileException, ValueError):
            return []  # unreadable: repair writes a good one
        if not isinstance(agent, dict) or agent.get("Disabled") is True:
            return None
        program = agent.get("ProgramArguments")
        return [str(a) for a in program] if isinstance(program, list) else []

    def write(self, command: Sequence[str]) -> None:
        agent = {
            "Label": APP_ID,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",  # the GUI login, not ssh sessions
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".plist.tmp")
        tmp.write_bytes(plistlib.dumps(agent))
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --- Windows (winreg and ctypes.windll only exist there: imported inside the methods) ---------------

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
# Task Manager's Startup tab switches Run entries off here without removing them.
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"


class RunKey:
    """The value `llmtray` under `HKCU\\...\\Run`. Not verified on Windows by the test suite."""

    def read(self) -> list[str] | None:
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _ = winreg.QueryValueEx(key, NAME)
        except FileNotFoundError:
            return None
        if not self._approved():
            return None
        return _split_windows(str(value)) if value else []

    def write(self, command: Sequence[str]) -> None:
        import subprocess
        import winreg

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            winreg.SetValueEx(key, NAME, 0, winreg.REG_SZ, subprocess.list2cmdline(command))
        self._forget_approval()  # a Task Manager "disabled" mark would otherwise still win

    def remove(self) -> None:
        _delete_value(RUN_KEY)
        self._forget_approval()

    def _approved(self) -> bool:
        """Task Manager stores 12 bytes; an even first byte (02, 06) is enabled, odd is disabled."""
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, APPROVED_KEY) as key:
                data, _ = winreg.QueryValueEx(key, NAME)
        except FileNotFoundError:
            return True
        return not (isinstance(data, bytes) and data and data[0] & 1)

    def _forget_approval(self) -> None:
        _delete_value(APPROVED_KEY)


def _delete_value(key_path: str) -> None:
    """Remove our value under HKCU\\`key_path`; a missing key or value is already the goal."""
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, NAME)
    except FileNotFoundError:
        pass


def _split_windows(command_line: str) -> list[str]:
    """Split a command line the way Windows programs do (CommandLineToArgvW)."""
    import ctypes
    from ctypes import wintypes

    split = ctypes.windll.shell32.CommandLineToArgvW
    split.argtypes = [wintypes.LPCWSTR, ctypes.POINTER(ctypes.c_int)]
    split.restype = ctypes.POINTER(wintypes.LPWSTR)
    count = ctypes.c_int()
    argv = split(command_line, ctypes.byref(count))
    if not argv:
        return []
    try:
        return [argv[i] for i in range(count.value)]
    finally:
        ctypes.windll.kernel32.LocalFree(argv)
