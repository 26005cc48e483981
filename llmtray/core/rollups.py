"""Keeping the rollup tables exact as event batches are stored.

After the store inserts a batch (ids `first_id` up to `next_id`), `add_to_rollups` sums those
events into the bottom level of each family (`rollup`, `rollup_tag`, `rollup_user_hour`,
`rollup_tag_user_hour`, the older `tag_rollup`, and the latency bins), with one
INSERT … SELECT … GROUP BY … ON CONFLICT per table: SQLite sums in C what summing per event and
level in Python cost (half of storing a tagged import row), and with the very SELECTs
`db.rebuild_rollups` uses, so the two always count an event the same way. Triggers sum the
coarser levels from these (DB migration 5).
"""

from __future__ import annotations

import sqlite3

from llmtray.core import db as dbmod

_BY_EVENT, _BY_TAGGED_EVENT = "e.id >= ? AND e.id < ?", "t.event >= ? AND t.event < ?"


def _upsert(table: str, columns: tuple[str, ...], sums: tuple[str, ...], select: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) {select}"
            f" ON CONFLICT DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in sums)}")


def _level_upserts(level: dbmod.Level) -> list[str]:
    where = _BY_TAGGED_EVENT if level.tagged else _BY_EVENT
    return [_upsert(level.table, (level.time, *level.key_columns, *level.sums), level.sums, select)
            for select in dbmod.level_selects(level, where)]


_BOTTOM = [level for level in (*dbmod.LEVELS, *dbmod.ALL_LATENCY_LEVELS) if level.parent is None]
_PLAIN = tuple(sql for level in _BOTTOM if not level.tagged for sql in _level_upserts(level))
_TAGGED = (
    *(sql for level in _BOTTOM if level.tagged for sql in _level_upserts(level)),
    _upsert("tag_rollup", ("bucket", "key", "value", "source", *dbmod.TAG_SUMS), dbmod.TAG_SUMS,
            dbmod.tag_rollup_select(_BY_TAGGED_EVENT)),
)


def add_to_rollups(conn: sqlite3.Connection, first_id: int, next_id: int, tagged: bool) -> None:
    """Add the events with ids in [first_id, next_id) (one stored batch; ids it skipped as
    duplicates are simply not there) to the bottom rollup levels; `tagged`: some carry tags."""
    for sql in (*_PLAIN, *_TAGGED) if tagged else _PLAIN:
        conn.execute(sql, (first_id, next_id))
