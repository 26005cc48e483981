"""The ingest token with real keyring backends: working, absent, failing, locked and hanging."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import fail, null
from keyrings.alt.file import PlaintextKeyring

from llmtray.ingest import credentials


@pytest.fixture
def use_keyring() -> Iterator:
    """Install a backend instance for one test, then put the previous one back."""
    previous = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(previous)


class _Locked(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.KeyringLocked("collection is locked")


class _Hanging(_Locked):
    """Sits on an unlock prompt until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(30)
        return None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_working_keyring_keeps_one_token(tmp_path, use_keyring):
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    use_keyring(backend)
    first = credentials.load_or_create(tmp_path / "token")
    assert first.where.startswith("keyring") and first.warning is None
    assert backend.get_password(credentials.KEYRING_SERVICE, credentials.KEYRING_USER) == first.value
    assert credentials.load_or_create(tmp_path / "token").value == first.value
    assert not (tmp_path / "token").exists()


@pytest.mark.parametrize("backend", [null.Keyring(), fail.Keyring()], ids=["stores-nothing", "no-backend"])
def test_no_usable_keyring_falls_back_to_a_0600_file_with_a_warning(tmp_path, use_keyring, backend, caplog):
    use_keyring(backend)
    token_file = tmp_path / "cfg" / "token"
    first = credentials.load_or_create(token_file)
    assert first.warning and "plain text" in first.warning and str(token_file) in first.warning
    assert "plain text" in caplog.text
    assert token_file.read_text().strip() == first.value
    if os.name == "posix":
        assert _mode(token_file) == 0o600
    again = credentials.load_or_create(token_file)
    assert again.value == first.value and again.warning is None  # stable across restarts


def test_a_widened_token_file_is_restricted_again(tmp_path, use_keyring, caplog):
    use_keyring(null.Keyring())
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    token_file.chmod(0o644)
    assert credentials.load_or_create(token_file).value == "abc"
    assert _mode(token_file) == 0o600 and "readable by others" in caplog.text


def test_locked_keyring_gives_a_session_token_and_writes_nothing(tmp_path, use_keyring):
    use_keyring(_Locked())
    token = credentials.load_or_create(tmp_path / "token")
    assert "locked" in (token.warning or "") and token.where.startswith("this run only")
    assert not (tmp_path / "token").exists()


def test_hanging_keyring_times_out(tmp_path, use_keyring):
    backend = _Hanging()
    use_keyring(backend)
    try:
        token = credentials.load_or_create(tmp_path / "token", timeout=0.2)
        assert "did not answer within 0.2 s" in (token.warning or "")
        assert not (tmp_path / "token").exists()
    finally:
        backend.release.set()
    for t in threading.enumerate():
        if t.name == "llmtray-keyring":
            t.join(5)
