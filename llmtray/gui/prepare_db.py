"""The database, made ready before the app opens it: repaired if damaged, upgraded if old.

Both can take minutes on a big database (a salvage copies every readable row; the schema-5
upgrade built its rollups in 222 s at 10M events). Done later, behind a running window, they
showed as minutes of "database is locked" refresh errors and an ingest port that accepted calls
it could not store. Done here, first, on a thread while the GUI thread keeps handling events,
with a dialog that says what is happening once it takes more than half a second, the window and
the tray only ever open a database that is ready.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication, QLabel, QProgressDialog

from llmtray.core.db import migrate, pending_migrations
from llmtray.core.dburl import Database, is_team
from llmtray.core.recovery import Recovered, ensure_usable

log = logging.getLogger(__name__)

BUSY_AFTER_S = 0.5
CHECKING = "Checking the llmtray database…"
REPAIRING = ("The llmtray database is damaged: setting it aside and salvaging every event that can still "
             "be read…")
UPGRADING = ("Upgrading the llmtray database to this version's format. This happens once, and takes about "
             "about forty seconds per million recorded calls…")


def prepare_database(app: QApplication, db: Database) -> Recovered | None:
    """Repair (`ensure_usable`) then upgrade (`migrate`) the database at `db` (a team database:
    only the latter, over the network); returns what the repair did, if anything. An error
    other than damage (a database from a newer llmtray, a full disk, an unreachable server) is
    logged and left for the ingest service to report in the window."""
    phase = [CHECKING]
    outcome: list[Recovered | None | BaseException] = []

    def work() -> None:
        try:
            if is_team(db):  # no file to salvage: the server's schema is created or checked (`core.pg`)
                migrate(db)
                outcome.append(None)
                return
            recovered = ensure_usable(db, announce=lambda: phase.__setitem__(0, REPAIRING))
            if db.exists() and pending_migrations(db):
                phase[0] = UPGRADING
                migrate(db)
            outcome.append(recovered)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=work, name="llmtray-db-prepare", daemon=True)
    thread.start()
    thread.join(BUSY_AFTER_S)
    if thread.is_alive():
        _wait_with_dialog(app, thread, phase)
    result = outcome[0] if outcome else None
    if isinstance(result, BaseException):
        log.error("preparing the database %s failed: %s", db, result)
        return None
    return result


def _wait_with_dialog(app: QApplication, thread: threading.Thread, phase: list[str]) -> None:
    busy = QProgressDialog("", "", 0, 0)
    label = QLabel(phase[0])
    label.setWordWrap(True)
    busy.setLabel(label)  # wraps: the dialog stays a readable width
    busy.setWindowTitle("llmtray")
    busy.setCancelButton(None)
    busy.setMinimumDuration(0)
    busy.setFixedWidth(480)
    busy.show()
    while thread.is_alive():
        if busy.labelText() != phase[0]:
            busy.setLabelText(phase[0])
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        thread.join(0.05)
    busy.close()
