"""What a GUI worker thread does when the team database (PostgreSQL) goes away.

A SQLite file never "goes away" between two queries; a server does (stopped, restarted, the
network cut). Its connection is then dead for good: psycopg will not reconnect it, and Peewee
would hand the same broken connection to every later query of that thread. So a worker that
sees `unreachable(exc)` closes its database (`forget`) and opens a new one on its next request,
and says so in one log line — not a traceback per refresh while the server is down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from llmtray.core.dburl import unreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

UNREACHABLE = "team database unreachable — retrying"  # what the window corner and the tray say


def forget(db: Any) -> None:
    """Close a Peewee database (or a raw connection) whose connection died, so the thread's next
    use reconnects.
    Closing a dead socket may itself fail; the connection is dropped either way."""
    if db is None:
        return
    with contextlib.suppress(Exception):
        db.close()


def reason(exc: BaseException) -> str:
    """The first line of what the driver said (e.g. "connection refused"), for the tooltip."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def on_live_connection(fn: Callable[[], T], *, reused: bool, drop: Callable[[], None]) -> T:
    """`fn()`; if it ran on a connection kept from before (`reused`) that turns out dead — the
    server restarted or the network dropped while the worker was idle — once more on a new one
    (`drop` forgets the dead one). Without this, the first request after an outage failed on the
    old connection and the window said "unreachable" again though the server answered."""
    try:
        return fn()
    except Exception as exc:
        if not (reused and unreachable(exc)):
            raise
        drop()
        return fn()
