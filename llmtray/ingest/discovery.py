"""`ingest.json`: how clients find a running llmtray (DESIGN §5), written by the server, read by hooks.

Standard library only, on purpose: the SDK hooks import this inside users' applications, where
pulling in peewee or Qt would be rude and slow. The file holds `url`, `token` and `pid`, is
created 0600 (it holds a secret) and replaced atomically so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from llmtray.private_file import write_private

ENV_URL = "LLMTRAY_URL"
ENV_TOKEN = "LLMTRAY_TOKEN"


@dataclass(frozen=True)
class Discovery:
    """What a server announced: its base URL (no path), bearer token and process id."""

    url: str
    token: str | None
    pid: int | None = None


def read(path: Path) -> Discovery | None:
    """The announcement at `path`, or None when it is missing or unreadable (never raises)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not data["url"].strip():
        return None
    token, pid = data.get("token"), data.get("pid")
    return Discovery(
        data["url"].strip().rstrip("/"),
        token if isinstance(token, str) and token else None,
        pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
    )


def live_owner(path: Path) -> Discovery | None:
    """The announcement at `path` if the process that wrote it is still alive; a stale file (its
    process gone) or none at all gives None."""
    found = read(path)
    if found is None or found.pid is None or not pid_alive(found.pid):
        return None
    return found


def discover(path: Path) -> Discovery | None:
    """`LLMTRAY_URL` / `LLMTRAY_TOKEN` first (each wins over the file), then the file at `path`."""
    env_url, env_token = os.environ.get(ENV_URL, "").strip(), os.environ.get(ENV_TOKEN, "").strip()
    found = None if env_url and env_token else read(path)
    url = env_url or (found.url if found else "")
    if not url:
        return None
    return Discovery(url.rstrip("/"), env_token or (found.token if found else None),
                     found.pid if found and not env_url else None)


def write(path: Path, url: str, token: str, pid: int | None = None) -> None:
    """Announce a server: an atomic replace of a file created with mode 0600 from the start
    (never world-readable, not even for an instant)."""
    write_private(path, json.dumps({"url": url, "token": token, "pid": pid or os.getpid()}, indent=2) + "\n")


def remove(path: Path, pid: int | None = None) -> bool:
    """Delete the announcement if it is ours (`pid`, default this process); True if removed.
    Another instance's file is left alone, so a late-exiting process can't orphan a live one."""
    found = read(path)
    if found is not None and found.pid not in (None, pid or os.getpid()):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to anyone)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _win_pid_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _win_pid_alive(pid: int) -> bool:
    # os.kill on Windows terminates the process for any signal but CTRL_*_EVENT, so ask the kernel.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
