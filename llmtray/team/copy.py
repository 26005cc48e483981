"""`llmtray db copy --to URL`: a local history into the team database, through the store.

Every event goes through the same write path as any other (`Store.add_many`), so the target's
rollups, latency sketches and dictionary are exact, and its idempotency key makes a second copy
(or a copy cut short and run again) add nothing. Costs are kept as they were stored (cost,
provenance, price-data version), not re-priced: the copy must show the same money.

An event stored without an id (a hook that sent none) gets one derived from the source
database's identity and its row there (`copy:<32 hex>`): the same on every run, so it too is
copied exactly once. The events keep their own `machine` tag if they have one, else they get
the copying machine's.

Not copied: import datasets (the events arrive as plain events: `import --remove` of the
original import stays a local operation), the observed events an `--overlap replace` import set
aside, budgets, blocks and guards (the team sets its own).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from llmtray.core import db as dbmod
from llmtray.core.dburl import Database
from llmtray.core.events import parse_event
from llmtray.core.pricing import Priced
from llmtray.core.store import Batch, Store, count_events, event_json, iter_event_rows

BATCH = 5000
_FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)  # stored events were validated already


@dataclass
class CopyResult:
    read: int = 0
    copied: int = 0
    already: int = 0  # in the target before (an earlier copy, or the same event recorded there)


def copy_events(source: Database, target: Database, *, progress: Callable[[CopyResult, int], None] | None = None,
                batch: int = BATCH) -> CopyResult:
    """Copy every event of `source` into `target`; `progress(result, total)` after each batch."""
    src = dbmod.open_db(source)
    try:
        conn = src.connection()
        identity = database_identity(conn)
        total = count_events(conn)
        store = Store.open(target)
        try:
            result = CopyResult()
            pending: list[dict] = []
            for row in iter_event_rows(conn, batch):
                pending.append(row)
                if len(pending) >= batch:
                    _store(store, pending, identity, result)
                    pending = []
                    if progress is not None:
                        progress(result, total)
            if pending:
                _store(store, pending, identity, result)
            if progress is not None:
                progress(result, total)
            return result
        finally:
            store.close()
    finally:
        src.close()


def _store(store: Store, rows: list[dict], identity: str, result: CopyResult) -> None:
    events, priced, sources = [], [], []
    for row in rows:
        data = event_json(row, include_meta=False)
        data.pop("cost_usd", None)  # the stored cost comes as `priced`, exactly
        if row["event_id"] is None:
            data["id"] = row_id(identity, row["id"])
        events.append(parse_event(data, now=_FAR_FUTURE))
        priced.append(Priced(row["cost_nanos"], row["cost_source"], row["pricing_version"], row["priced_model"]))
        sources.append(row["source"])
    (added,) = store.add_many([Batch(events, sources[0], priced=priced, sources=sources)])
    if isinstance(added, Exception):
        raise added
    result.read += len(rows)
    result.copied += added.accepted
    result.already += added.duplicates


def row_id(identity: str, row: int) -> str:
    """The id an id-less event of that database's row `row` is copied under."""
    return "copy:" + hashlib.blake2b(f"{identity}/{row}".encode(), digest_size=16).hexdigest()


def database_identity(conn) -> str:  # noqa: ANN001 - a sqlite3-protocol connection
    """This database's random identity (made on first use, kept in `alert_state`)."""
    found = conn.execute("SELECT value FROM alert_state WHERE key = 'database_id'").fetchone()
    if found:
        return found[0]
    conn.execute("INSERT INTO alert_state (key, value) VALUES ('database_id', ?) ON CONFLICT(key) DO NOTHING",
                 (secrets.token_hex(16),))
    if conn.in_transaction:
        conn.commit()
    return conn.execute("SELECT value FROM alert_state WHERE key = 'database_id'").fetchone()[0]
