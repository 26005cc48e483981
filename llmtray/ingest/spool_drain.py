"""The data dir's owner delivers the hooks' spool itself (issue #17, item 2).

Hook processes spool events while no llmtray listens. Before this, only a later *long-lived*
hooked process delivered those files, so a few short scripts run while the tray was down stayed
out of every total and budget. The process that owns the data dir (the tray app, `llmtray
serve`) now drains `spool/` at start and whenever a file appears there.

It does so with the hooks' own `Sender`, posting to its own ingest API: the same per-file locks
the hooks take (a file is delivered by exactly one claimer; ids dedupe a claimer killed between
the 200 and the deletion), the same validation and the same dead-letter format for a refused
line. A directory listing once a second is the watch: portable, and a spool folder holds a
handful of files. A file still locked by a live process is left to that process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from llmtray.hooks.endpoint import Endpoint
from llmtray.hooks.sender import Sender
from llmtray.hooks.spool import DEAD_LETTER, SUFFIX

log = logging.getLogger(__name__)

POLL_S = 1.0


def spooled_names(folder: Path) -> frozenset[str]:
    """The spool files in `folder` a claimer could deliver (not the dead-letter file)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return frozenset()
    return frozenset(n for n in names if n.endswith(SUFFIX) and n != DEAD_LETTER)


class SpoolDrain:
    """Watches `folder` and has a private `Sender` claim and deliver what ended processes left."""

    def __init__(self, folder: Path, endpoint: Callable[[], Endpoint], poll: float = POLL_S):
        self.folder, self._poll = folder, poll
        self._endpoint = endpoint
        self._sender: Sender | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtray-spool-drain", daemon=True)

    def start(self) -> None:
        self._sender = Sender(self.folder, discover=self._endpoint)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; a half-delivered file is released for the next claimer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._sender is not None:
            self._sender.close()

    @property
    def sent(self) -> int:
        return self._sender.sent if self._sender is not None else 0

    def _run(self) -> None:
        assert self._sender is not None
        while True:
            # any file, not only a new one: a live owner may have ended since the last look (its
            # file is unlocked now without the folder changing); a claim try on a locked file is cheap
            if spooled_names(self.folder):
                self._sender.scan_orphans_now()
            if self._stop.wait(self._poll):
                return
