"""A private D-Bus session with a fake `org.freedesktop.Notifications` that records calls.

Checks the wire signature of every `Notify` call (the trap in TESTING.md: a uint32 replaces-id
and a string array of actions, not `i` and `av`), and can emit `ActionInvoked` like a daemon does
when the user clicks a notification.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


@dataclass
class FakeNotificationService:
    address: str
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    _conn: Any = None
    _thread: threading.Thread | None = None
    _next_id: int = 1

    def start(self) -> None:
        self._conn = open_dbus_connection(bus=self.address)
        reply = self._conn.send_and_get_reply(message_bus.RequestName(NAME, 4), timeout=5)
        assert reply.body[0] == 1, "could not own the notifications name"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while True:
                msg = self._conn.receive()
                if msg.header.message_type != MessageType.method_call:
                    continue
                member = msg.header.fields.get(HeaderFields.member)
                signature = msg.header.fields.get(HeaderFields.signature, "")
                self.calls.append((signature, msg.body) if member == "Notify" else (member, msg.body))
                if member == "Notify":
                    self._conn.send(new_method_return(msg, "u", (self._next_id,)))
                    self._next_id += 1
                elif member == "GetServerInformation":
                    self._conn.send(new_method_return(msg, "ssss", ("fake", "llmtray-tests", "1", "1.2")))
                else:
                    self._conn.send(new_method_return(msg))
        except Exception:
            return

    def click(self, notification_id: int, action: str = "default") -> None:
        addr = DBusAddress(PATH, interface=NAME)
        self._conn.send(new_signal(addr, "ActionInvoked", "us", (notification_id, action)))

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._thread is not None:
            self._thread.join(timeout=2)


class PrivateSessionBus:
    """`dbus-daemon --session` of our own, so tests never touch the developer's desktop."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    @staticmethod
    def available() -> bool:
        return shutil.which("dbus-daemon") is not None

    def start(self) -> str:
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        return self.address

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            if self.proc.stdout:
                self.proc.stdout.close()


def environ_with(address: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    return env
