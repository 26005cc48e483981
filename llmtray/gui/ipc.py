"""Single instance: a second `llmtray` start asks the first to show its window, then exits 0.

A PID-aware `QLockFile` decides who is first (a stale lock after `kill -9` is taken over, since
Qt checks whether the owning process still runs), and a `QLocalServer` with a short name carries
the "show" request (macOS limits socket paths to 104 bytes, so the name is a hash of the data dir,
which also keeps instances with different `--data-dir`s apart). On "address in use" we connect
first and remove the old server only when nobody answers (owncloud/client#2666).

On POSIX the socket lives in a folder only this user can enter (`$XDG_RUNTIME_DIR`, else a 0700
`llmtray-<uid>` folder in the temp dir that must be ours): a bare name would put it in `/tmp`,
where another user could plant a socket at the predictable path and make every start "hand over"
to it and exit. Each side also checks the other end's uid (SO_PEERCRED, Linux). A folder that
is not ours is an `InstanceError` the app shows in a dialog and on stderr.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from llmtray.core.errors import LLMTrayError

log = logging.getLogger(__name__)

SHOW = b"show\n"


class InstanceError(LLMTrayError):
    """The single-instance socket can't be set up safely; the message says why and what to do."""


def server_name(data_dir: Path, socket_dir: Path | None = None) -> str:
    """The socket's name (Windows: a pipe name) or, on POSIX, its path in a private folder."""
    name = "llmtray-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if sys.platform == "win32":
        return name
    return str((socket_dir or private_socket_dir()) / name)


def private_socket_dir() -> Path:
    """A folder only this user can enter: `$XDG_RUNTIME_DIR` when it is ours and 0700, else a
    0700 `llmtray-<uid>` in the temp dir, created now or checked (not ours: `InstanceError`)."""
    uid = os.geteuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _private(Path(runtime), uid) is None:
        return Path(runtime)
    folder = Path(tempfile.gettempdir()) / f"llmtray-{uid}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InstanceError(f"cannot create {folder} for llmtray's single-instance socket: {exc}") from None
    problem = _private(folder, uid)
    if problem is not None:
        raise InstanceError(
            f"llmtray cannot start safely: {problem}. Another user may have created it to stop llmtray "
            f"from starting (or to answer in its place). Remove it (as that user or root), or set "
            "XDG_RUNTIME_DIR to a folder of yours with mode 0700.")
    return folder


def _private(folder: Path, uid: int) -> str | None:
    try:
        st = folder.lstat()
    except OSError as exc:
        return f"{folder} is not usable ({exc.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    if st.st_uid != uid:
        return f"{folder} belongs to another user (uid {st.st_uid})"
    if stat.S_IMODE(st.st_mode) & 0o077:
        return f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def peer_uid(sock: QLocalSocket) -> int | None:
    """The uid of the process at the other end of a connected local socket (Linux), else None."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    fd = int(sock.socketDescriptor())
    if so_peercred is None or fd < 0:
        return None
    with socket.socket(fileno=os.dup(fd)) as dup:
        _pid, uid, _gid = struct.unpack("3i", dup.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i")))
    return uid


def _foreign(sock: QLocalSocket) -> int | None:
    """The other end's uid when it is not this user (None: ours, or not knowable here)."""
    uid = peer_uid(sock)
    return uid if uid is not None and uid != os.geteuid() else None


def ask_running_instance(name: str, timeout_ms: int = 1000) -> bool:
    """True if an instance of this user answered on `name` and got our request to show itself."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    if (uid := _foreign(sock)) is not None:
        sock.abort()
        raise InstanceError(f"the single-instance socket {name} is held by another user (uid {uid}), not by "
                            "llmtray of yours; remove it (as that user or root) and start again")
    sock.write(SHOW)
    sock.waitForBytesWritten(timeout_ms)
    sock.disconnectFromServer()
    if sock.state() != QLocalSocket.LocalSocketState.UnconnectedState:
        sock.waitForDisconnected(timeout_ms)
    sock.close()
    return True


class SingleInstance(QObject):
    """Signals: show_requested() — another start asked this instance to raise its window."""

    show_requested = Signal()

    def __init__(self, runtime_dir: Path, data_dir: Path, parent: QObject | None = None,
                 socket_dir: Path | None = None):
        super().__init__(parent)
        runtime_dir.mkdir(parents=True, exist_ok=True)
        self.name = server_name(data_dir, socket_dir)
        self._lock = QLockFile(str(runtime_dir / "llmtray.lock"))
        self._lock.setStaleLockTime(0)  # only a dead owner makes a lock stale, never its age
        self._server: QLocalServer | None = None
        self._clients: set[QLocalSocket] = set()

    def claim(self) -> bool:
        """Become the instance (True), or hand over to the running one (False); `InstanceError`
        when another user holds the socket or its folder."""
        if ask_running_instance(self.name):
            return False
        if not self._lock.tryLock(500):
            # held by a live process that did not answer yet (starting up): give it a moment
            if ask_running_instance(self.name, 3000):
                return False
            if not self._lock.tryLock(2000):
                log.warning("another llmtray holds %s but does not answer; starting anyway",
                            self._lock.fileName())
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not self._server.listen(self.name):
            QLocalServer.removeServer(self.name)  # nobody answered above: a leftover socket file
            if not self._server.listen(self.name):
                log.warning("single-instance server failed: %s", self._server.errorString())
        self._server.newConnection.connect(self._on_connection)
        return True

    @Slot()
    def _on_connection(self) -> None:
        assert self._server is not None
        while (sock := self._server.nextPendingConnection()) is not None:
            if (uid := _foreign(sock)) is not None:
                log.warning("ignored a connection from another user (uid %d) to %s", uid, self.name)
                sock.abort()
                sock.deleteLater()
                continue
            self._clients.add(sock)
            sock.readyRead.connect(self._read)
            sock.disconnected.connect(self._gone)
            if sock.bytesAvailable():
                self._handle(sock)

    @Slot()
    def _read(self) -> None:
        sock = self.sender()
        if isinstance(sock, QLocalSocket):
            self._handle(sock)

    def _handle(self, sock: QLocalSocket) -> None:
        if bytes(sock.readAll().data()).startswith(SHOW.strip()):
            self.show_requested.emit()

    @Slot()
    def _gone(self) -> None:
        sock = self.sender()
        if isinstance(sock, QLocalSocket) and sock in self._clients:
            self._clients.discard(sock)
            sock.deleteLater()

    def release(self) -> None:
        for sock in list(self._clients):
            sock.abort()
        self._clients.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()
