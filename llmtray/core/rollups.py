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


def _upsert(table: str, columns: tuple[str, ...], sums: tuple[str, ...], select: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) {select}"
            f" ON CONFLICT DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in sums)}")


def _level_upsert(level: dbmod.Level) -> str:
    where = _BY_TAGGED_EVENT if level.tagged else _BY_EVENT
    return _upsert(level.table, (level.time, *level.key_columns, *level.sums), level.sums,
                   dbmod.level_selects(level, where, compact=True))


_BOTTOM = [level for level in (*dbmod.LEVELS, dbmod.TAG_ROLLUP) if level.parent is None]
_PLAIN = tuple(_level_upsert(level) for level in _BOTTOM if not level.tagged)
_TAGGED = tuple(_level_upsert(level) for level in _BOTTOM if level.tagged)


def add_to_rollups(conn: sqlite3.Connection, first_id: int, next_id: int, tagged: bool) -> None:
    """Add the events with ids in [first_id, next_id) (one stored batch; ids it skipped as
    duplicates are simply not there) to the bottom rollup levels and the latency sketches;
    `tagged`: some carry tags."""
    for sql in (*_PLAIN, *_TAGGED) if tagged else _PLAIN:
        conn.execute(sql, (first_id, next_id))
    latency.add(conn, first_id, next_id)
