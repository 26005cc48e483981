"""Single instance: a second `llmtray` start asks the first to show its window, then exits 0.

A PID-aware `QLockFile` decides who is first (a stale lock after `kill -9` is taken over, since
Qt checks whether the owning process still runs), and a `QLocalServer` with a short name carries
the "show" request (macOS limits socket paths to 104 bytes, so the name is a hash of the data dir,
which also keeps instances with different `--data-dir`s apart). On "address in use" we connect
first and remove the old server only when nobody answers (owncloud/client#2666).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

SHOW = b"show\n"


def server_name(data_dir: Path) -> str:
    return "llmtray-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def ask_running_instance(name: str, timeout_ms: int = 1000) -> bool:
    """True if an instance answered on `name` and got our request to show itself."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
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

    def __init__(self, runtime_dir: Path, data_dir: Path, parent: QObject | None = None):
        super().__init__(parent)
        runtime_dir.mkdir(parents=True, exist_ok=True)
        self.name = server_name(data_dir)
        self._lock = QLockFile(str(runtime_dir / "llmtray.lock"))
        self._lock.setStaleLockTime(0)  # only a dead owner makes a lock stale, never its age
        self._server: QLocalServer | None = None
        self._clients: set[QLocalSocket] = set()

    def claim(self) -> bool:
        """Become the instance (True), or hand over to the running one (False)."""
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
