"""Keeping the rollup tables exact as event batches are stored.

Rows arrive in the store's column layout (`llmtray.core.store.COLUMNS`); the positions below
name the rollup key and sums in that layout, and a test checks they still match it. The store
writes the bottom level of each family (`rollup`, `rollup_tag`, `rollup_user_hour`,
`rollup_tag_user_hour`, and the older `tag_rollup`) and `event_tag_latency`; triggers sum the
coarser levels from these (DB migration 5).
"""

from __future__ import annotations

import sqlite3
from operator import add, itemgetter
from typing import Any

from llmtray.core import db as dbmod

# Row positions (see store.COLUMNS) of the rollup key; add_to_rollups reads the same positions.
KEY_POSITIONS = (4, 5, 24, 26, 27, 30, 21)  # provider model feature project env source status = ROLLUP_DIMENSIONS
USER_POSITION = 25
_key_of = itemgetter(*KEY_POSITIONS)
_SUMS = ("events", "requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
         "cache_write_1h_tokens", "reasoning_tokens", "cost_nanos", "unpriced")


def _upsert(level: dbmod.Level) -> str:
    cols = (level.time, *level.key_columns, *_SUMS)
    return (f"INSERT INTO {level.table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            f" ON CONFLICT DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in _SUMS)}")


_ROLLUP_UPSERT = _upsert(dbmod.ROLLUP)
_TAG_LEVEL_UPSERT = _upsert(dbmod.ROLLUP_TAG)
_USER_LEVEL_UPSERT = _upsert(dbmod.ROLLUP_USER_HOUR)
_TAG_USER_LEVEL_UPSERT = _upsert(dbmod.ROLLUP_TAG_USER_HOUR)
_TAG_LATENCY_INSERT = "INSERT INTO event_tag_latency (key, value, ts, event, model, latency_ms) VALUES (?, ?, ?, ?, ?, ?)"
_TAG_ROLLUP_UPSERT = (
    "INSERT INTO tag_rollup (bucket, key, value, source, events, requests, cost_nanos, unpriced)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET events = events + excluded.events,"
    " requests = requests + excluded.requests, cost_nanos = cost_nanos + excluded.cost_nanos,"
    " unpriced = unpriced + excluded.unpriced"
)


def _sums(r: list[Any]) -> list[int]:
    """One event row's contribution to each of `_SUMS`."""
    cost, requests = r[14], r[13]
    return [1, requests, r[7], r[8], r[9], r[10], r[11], r[12], cost or 0, requests if cost is None else 0]


def _accumulate(into: dict[tuple[Any, ...], list[int]], key: tuple[Any, ...], sums: list[int]) -> None:
    acc = into.get(key)
    into[key] = list(sums) if acc is None else list(map(add, acc, sums))  # runs per event and level: no Python loop


def add_to_rollups(conn: sqlite3.Connection, rows: list[list[Any]], tag_rows: list[tuple[int, str, str]]) -> None:
    """Add a batch's rows to the bottom rollup levels with one upsert per touched rollup row.

    Summed here rather than by a trigger per event (DB migration 4): a batch of 500 live events
    touches a handful of (bucket, model, feature, …) rows, so this does ~1/50 of the writes."""
    plain: dict[tuple[Any, ...], list[int]] = {}
    per_user: dict[tuple[Any, ...], list[int]] = {}
    by_id: dict[int, tuple[list[Any], int, tuple[Any, ...], list[int]]] = {}
    for r in rows:
        bucket, dims, sums = r[2] // dbmod.BUCKET_US, _key_of(r), _sums(r)
        _accumulate(plain, (bucket, *dims), sums)
        _accumulate(per_user, (r[2] // dbmod.HOUR_US, r[USER_POSITION], *dims), sums)
        if tag_rows:
            by_id[r[0]] = (r, bucket, dims, sums)
    conn.executemany(_ROLLUP_UPSERT, [(*k, *v) for k, v in plain.items()])
    conn.executemany(_USER_LEVEL_UPSERT, [(*k, *v) for k, v in per_user.items()])
    if tag_rows:
        per_tag: dict[tuple[Any, ...], list[int]] = {}
        per_tag_user: dict[tuple[Any, ...], list[int]] = {}
        old_tag: dict[tuple[Any, ...], list[int]] = {}
        latencies: list[tuple[str, str, int, int, str, float]] = []
        for event_id, key, value in tag_rows:
            r, bucket, dims, sums = by_id[event_id]
            _accumulate(per_tag, (bucket, key, value, *dims), sums)
            _accumulate(per_tag_user, (r[2] // dbmod.HOUR_US, key, value, r[USER_POSITION]), sums)
            _accumulate(old_tag, (bucket, key, value, dims[5]), [sums[0], sums[1], sums[8], sums[9]])
            if r[21] == "ok" and r[19] is not None:  # status, latency_ms: a call the latency view samples
                latencies.append((key, value, r[2], event_id, r[5], r[19]))
        conn.executemany(_TAG_LATENCY_INSERT, latencies)
        conn.executemany(_TAG_LEVEL_UPSERT, [(*k, *v) for k, v in per_tag.items()])
        conn.executemany(_TAG_USER_LEVEL_UPSERT, [(*k, *v) for k, v in per_tag_user.items()])
        conn.executemany(_TAG_ROLLUP_UPSERT, [(*k, *v) for k, v in old_tag.items()])
