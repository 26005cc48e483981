"""The ingest token: created once, kept in the keyring, with a 0600 file where no keyring works.

Keyring backends misbehave on real desktops (DESKTOP.md "Secrets"): headless Linux has none, a
locked store can block on an unlock prompt or answer `None` as if the key were missing. So the
keyring is touched lazily, on a worker thread, with a timeout, and every outcome is told apart:

- a token in the keyring → use it;
- no token yet and a working keyring → create one, store it, read it back to be sure;
- no usable backend (none installed, or one that silently stores nothing) → a 0600 file, with a
  warning, because a headless `llmtray serve` must still start;
- keyring locked, failing or timed out → a token for this run only (clients still find it in
  `ingest.json`); nothing is written in plain text behind the user's back.

A token file, once it exists, wins: the token stays stable across restarts.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from llmtray.core.trust import require_trusted

log = logging.getLogger(__name__)

KEYRING_SERVICE = "llmtray"
KEYRING_USER = "ingest-token"
KEYRING_TIMEOUT = 5.0  # seconds; an unlock prompt left unanswered must not hold up the server

T = TypeVar("T")


@dataclass(frozen=True)
class Token:
    """The bearer token, where it is kept (for humans) and any warning worth showing."""

    value: str
    where: str
    warning: str | None = None


class _TimedOut(Exception):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_or_create(token_file: Path, *, timeout: float = KEYRING_TIMEOUT) -> Token:
    """The ingest token (see the module docstring for the order of attempts). Blocking: call it
    from a worker thread, never from a GUI thread."""
    existing = _read_file(token_file)
    if existing:
        return Token(existing, f"file {token_file} (0600)")
    try:
        import keyring
        import keyring.errors
    except ImportError:  # a stripped-down install: same as having no backend
        return _file_fallback(token_file, "the keyring package is not installed")
    try:
        stored = _with_timeout(lambda: keyring.get_password(KEYRING_SERVICE, KEYRING_USER), timeout)
        if stored:
            return Token(stored, f"keyring (service {KEYRING_SERVICE!r}, user {KEYRING_USER!r})")
        token = new_token()
        _with_timeout(lambda: keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token), timeout)
        if _with_timeout(lambda: keyring.get_password(KEYRING_SERVICE, KEYRING_USER), timeout) == token:
            return Token(token, f"keyring (service {KEYRING_SERVICE!r}, user {KEYRING_USER!r})")
        return _file_fallback(token_file, "the keyring backend does not keep passwords")
    except keyring.errors.NoKeyringError:
        return _file_fallback(token_file, "no keyring backend is available")
    except keyring.errors.KeyringLocked:
        return _session_token("the keyring is locked")
    except _TimedOut:
        return _session_token(f"the keyring did not answer within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - third-party backends raise anything (D-Bus, ctypes, …)
        return _session_token(f"the keyring failed ({type(exc).__name__}: {exc})")


def _with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """Run `fn` on a daemon thread; a backend stuck on an unlock prompt is left behind, not waited for."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="llmtray-keyring", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _TimedOut
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")  # type: ignore[return-value]


def _read_file(path: Path) -> str | None:
    require_trusted(path)  # a token another user planted would let them read what we record
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text and os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s was readable by others; restricting it to mode 0600", path)
        path.chmod(0o600)
    return text or None


def _file_fallback(path: Path, why: str) -> Token:
    """Create the token file atomically: written and fsync'd under a temporary name, then linked
    into place only if no other process got there first — so a crash never leaves an empty file
    that every later start would have to work around. An empty file left by an older version
    (or a power cut) is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".token-", dir=path.parent)
    try:
        os.chmod(tmp, 0o600)
        token = new_token()
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read_file(path)
            if existing:  # another process got there first: share its token
                return Token(existing, f"file {path} (0600)")
            os.replace(tmp, path)  # an empty or unreadable leftover: ours replaces it
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    warning = f"{why}: the ingest token is stored in plain text in {path} (mode 0600)"
    log.warning("%s", warning)
    return Token(token, f"file {path} (0600)", warning)


def _session_token(why: str) -> Token:
    warning = f"{why}: using a token for this run only (clients read it from ingest.json)"
    log.warning("%s", warning)
    return Token(new_token(), "this run only (see ingest.json)", warning)
