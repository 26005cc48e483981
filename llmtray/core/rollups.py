"""Keeping the rollup tables exact as event batches are stored.

After the store inserts a batch (ids `first_id` up to `next_id`), `add_to_rollups` sums those
events into the bottom level of each family (`rollup`, `rollup_tag`, `rollup_user_hour`,
`rollup_tag_user_hour`, and the older `tag_rollup`), with one
INSERT … SELECT … GROUP BY … ON CONFLICT per table: SQLite sums in C what summing per event and
level in Python cost (half of storing a tagged import row), and with the very SELECTs
`db.rebuild_rollups` uses, so the two always count an event the same way. Triggers sum the
coarser levels from these (DB migration 5). The latency sketches (`core.latency`) are added
per batch too, in Python: SQL can't add their blobs.
"""

from __future__ import annotations

import sqlite3

from llmtray.core import db as dbmod, latency

_BY_EVENT, _BY_TAGGED_EVENT = "e.id >= ? AND e.id < ?", "t.event >= ? AND t.event < ?"


def _level_upsert(level: dbmod.Level, where: str, sign: str = "+") -> str:
    """Add (or with `sign` "-" take out) the events of `where` to `level`'s rows."""
    return (f"INSERT INTO {level.table} ({', '.join((level.time, *level.key_columns, *level.sums))})"
            f" {dbmod.level_selects(level, where, compact=True)}"
            f" ON CONFLICT DO UPDATE SET {', '.join(f'{s} = {s} {sign} excluded.{s}' for s in level.sums)}")


_BOTTOM = [level for level in (*dbmod.LEVELS, dbmod.TAG_ROLLUP) if level.parent is None]
_PLAIN = tuple(_level_upsert(level, _BY_EVENT) for level in _BOTTOM if not level.tagged)
_TAGGED = tuple(_level_upsert(level, _BY_TAGGED_EVENT) for level in _BOTTOM if level.tagged)


def add_to_rollups(conn: sqlite3.Connection, first_id: int, next_id: int, tagged: bool) -> None:
    """Add the events with ids in [first_id, next_id) (one stored batch; ids it skipped as
    duplicates are simply not there) to the bottom rollup levels and the latency sketches;
    `tagged`: some carry tags."""
    for sql in (*_PLAIN, *_TAGGED) if tagged else _PLAIN:
        conn.execute(sql, (first_id, next_id))
    latency.add(conn, first_id, next_id)


def remove_dataset_events(conn: sqlite3.Connection, dataset_id: int) -> int:
    """Delete an import's events with one statement per rollup level instead of the view's
    trigger per event (a 1M-row import took a minute to remove): each bottom level loses the
    sums of the import's events grouped as they were added (coarser levels follow through
    their triggers), rows left without events go, the days' latency sketches are recomputed.
    Returns the events deleted."""
    (count,) = conn.execute("SELECT count(*) FROM event_row WHERE dataset_id = ?", (dataset_id,)).fetchone()
    if not count:
        return 0
    for level in _BOTTOM:
        conn.execute(_level_upsert(level, "e.dataset_id = ?", "-"), (dataset_id,))
        conn.execute(f"DELETE FROM {level.table} WHERE events = 0")
    conn.execute(f"INSERT OR IGNORE INTO latency_stale (day) SELECT DISTINCT ts / {dbmod.DAY_US} FROM event_row"
                 " WHERE dataset_id = ?", (dataset_id,))
    conn.execute("DELETE FROM event_tag_link WHERE event IN (SELECT id FROM event_row WHERE dataset_id = ?)",
                 (dataset_id,))
    conn.execute("DELETE FROM event_row WHERE dataset_id = ?", (dataset_id,))
    return count
