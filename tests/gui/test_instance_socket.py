"""Issue #26 item 5: another user can't stop the tray app from starting. The socket lives in a
folder only this user can enter, the other end's uid is checked, and a folder or socket another
user holds is said loudly (stderr and a dialog), never a quiet exit 0."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from llmtray.gui.app import cannot_start
from llmtray.gui.ipc import InstanceError, SingleInstance, private_socket_dir, server_name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sockets and owners")
ROOT = os.geteuid() == 0


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch) -> Path:
    """The temp dir (where the fallback folder goes) redirected, and no XDG_RUNTIME_DIR."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR
    return temp


def test_a_socket_planted_at_the_old_predictable_path_no_longer_captures_the_start(qtbot, tmp_path, tmpdir_env):
    data = tmp_path / "data"
    old_path = tmpdir_env / ("llmtray-" + hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16])
    planted = socket.socket(socket.AF_UNIX)
    planted.bind(str(old_path))  # what another user did: listen where the bare name resolved to
    planted.listen()
    try:
        inst = SingleInstance(tmp_path / "run", data)
        assert Path(inst.name).parent == tmpdir_env / f"llmtray-{os.geteuid()}"
        assert inst.claim() is True
        assert oct((Path(inst.name).parent.stat().st_mode) & 0o777) == "0o700"
        inst.release()
    finally:
        planted.close()


def test_xdg_runtime_dir_is_used_when_it_is_private(tmp_path, monkeypatch):
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert private_socket_dir() == runtime
    runtime.chmod(0o755)  # not private: not used
    assert private_socket_dir() != runtime


def test_a_fallback_folder_open_to_others_is_refused_by_name(tmpdir_env, tmp_path):
    folder = tmpdir_env / f"llmtray-{os.geteuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(InstanceError, match=rf"{folder} is open to other users \(mode 0777\)"):
        SingleInstance(tmp_path / "run", tmp_path / "data")


@pytest.mark.skipif(not ROOT, reason="another user's folder and process need root to set up")
def test_a_fallback_folder_of_another_user_is_refused_by_name(tmpdir_env, tmp_path):
    folder = tmpdir_env / f"llmtray-{os.geteuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(InstanceError, match=rf"{folder} belongs to another user \(uid 65534\)"):
        SingleInstance(tmp_path / "run", tmp_path / "data")


@pytest.mark.skipif(not ROOT, reason="another user's folder and process need root to set up")
def test_an_answer_from_another_uid_is_not_taken_for_a_running_instance(qtbot, tmp_path):
    """Defence in depth: even in our folder (root could put it there), a listener of another uid
    is not "the running llmtray"; the start says so instead of exiting 0."""
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    name = server_name(tmp_path / "data", sockets)
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(name)  # bound by us, listened on by uid 65534 (SO_PEERCRED records the listener)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, socket, time
        s = socket.socket(fileno={bound.fileno()})
        os.setgid(65534); os.setuid(65534)
        s.listen()
        print("ready", flush=True)
        while True:
            c, _ = s.accept()
            c.recv(16)
    """)], pass_fds=(bound.fileno(),), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        inst = SingleInstance(tmp_path / "run", tmp_path / "data", socket_dir=sockets)
        with pytest.raises(InstanceError, match=r"held by another user \(uid 65534\)"):
            inst.claim()
    finally:
        child.kill()
        child.communicate()
        bound.close()


def test_cannot_start_says_it_on_stderr_and_in_a_dialog(qtbot, capsys):
    message = "llmtray cannot start safely: /tmp/llmtray-1000 belongs to another user (uid 1001). Remove it."
    seen: list[str] = []

    def look() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        box.grab().save("/tmp/llmtray-cannot-start.png")
        seen.append(box.text())
        box.accept()

    QTimer.singleShot(300, look)
    cannot_start(message)
    assert seen == [message]
    assert capsys.readouterr().err == f"llmtray: error: {message}\n"
