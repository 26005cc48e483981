"""Files only this user may write: what llmtray creates, and what it agrees to load.

On a shared machine another user must not read what llmtray stores (feature names, spend) nor
steer it: a `config.toml` planted in a folder they can write could point `[proxy.upstreams]
openai` at their own server and collect API keys. So every file llmtray creates in its folders
is 0600 (`private_file`, and `umask 077` for the whole process in `cli.main`), and the files
that carry settings or a secret — `config.toml`, `pricing.toml`, `token` — are refused
(`require_trusted`) when they or their folder are owned by someone else or writable by others.
POSIX only: Windows folders under the user's profile have per-user ACLs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llmtray.core.errors import ConfigError

PRIVATE_UMASK = 0o077
_CHECKED = os.name == "posix"


class UntrustedFile(ConfigError):
    """A settings or secret file (or its folder) that another user could have written."""


def problem(path: Path) -> str | None:
    """Why another user could have written `path` (file or folder), or None when only we can."""
    if not _CHECKED:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_uid != os.geteuid():
        return f"{path} is owned by another user (uid {st.st_uid})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = "everyone" if mode & 0o002 else "its group"
        return f"{path} is writable by {who} (mode {mode:04o}; fix: chmod go-w {path})"
    return None


def require_trusted(path: Path) -> None:
    """Raise `UntrustedFile` unless `path` (if it exists) and its folder are ours alone to write."""
    if not _CHECKED or not path.exists():
        return
    reason = problem(path.parent) or problem(path)
    if reason is not None:
        raise UntrustedFile(f"not loading {path.name}: {reason} — another user could have put "
                            "settings (or a token) there for llmtray to follow")


def exposure(folder: Path) -> str | None:
    """A warning when another user could write `folder` (one of llmtray's), else None."""
    reason = problem(folder)
    return None if reason is None else f"{reason}: another user could replace llmtray's database and settings"


def private_file(path: Path) -> None:
    """Make sure `path` exists and is 0600 before a library (SQLite) creates it with the umask's
    mode; a file of ours that is looser (made by an older llmtray) is tightened."""
    if not _CHECKED:
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        tighten(path)
    except OSError:
        return  # a read-only folder: SQLite will say what is wrong in its own words


def tighten(path: Path) -> None:
    """0600 on a file of ours that others can read or write (someone else's, or one on a
    read-only file system, is left as it is)."""
    try:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            path.chmod(0o600)
    except OSError:
        return

