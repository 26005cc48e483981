"""Keeping the rollup tables exact as event batches are stored.

Rows arrive in the store's column layout (`llmtray.core.store.COLUMNS`); the positions below
name the rollup key and sums in that layout, and a test checks they still match it.
"""

from __future__ import annotations

import sqlite3
from operator import itemgetter
from typing import Any

from llmtray.core import db as dbmod

# Row positions (see store.COLUMNS) of the rollup key; add_to_rollups reads the same positions.
KEY_POSITIONS = (4, 5, 24, 26, 27, 30, 21)  # provider model feature project env source status = ROLLUP_DIMENSIONS
_key_of = itemgetter(*KEY_POSITIONS)
_ROLLUP_UPSERT = (
    f"INSERT INTO rollup (bucket, {', '.join(dbmod.ROLLUP_DIMENSIONS)}, events, requests, input_tokens,"
    " output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,"
    f" cost_nanos, unpriced) VALUES ({', '.join('?' * (len(dbmod.ROLLUP_DIMENSIONS) + 11))})"
    " ON CONFLICT DO UPDATE SET events = events + excluded.events, requests = requests + excluded.requests,"
    " input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,"
    " cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,"
    " cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,"
    " cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,"
    " reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,"
    " cost_nanos = cost_nanos + excluded.cost_nanos, unpriced = unpriced + excluded.unpriced"
)
_TAG_ROLLUP_UPSERT = (
    "INSERT INTO tag_rollup (bucket, key, value, source, events, requests, cost_nanos, unpriced)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET events = events + excluded.events,"
    " requests = requests + excluded.requests, cost_nanos = cost_nanos + excluded.cost_nanos,"
    " unpriced = unpriced + excluded.unpriced"
)


def add_to_rollups(conn: sqlite3.Connection, rows: list[list[Any]], tag_rows: list[tuple[int, str, str]]) -> None:
    """Add a batch's rows to the 15-minute rollups with one upsert per touched rollup row.

    Summed here rather than by a trigger per event (DB migration 4): a batch of 500 live events
    touches a handful of (bucket, model, feature, …) rows, so this does ~1/50 of the writes."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    by_id: dict[int, tuple[int, str, int, int, int]] = {}
    for r in rows:
        bucket = r[2] // dbmod.BUCKET_US
        key = (bucket, *_key_of(r))
        cost, requests = r[14], r[13]
        unpriced = requests if cost is None else 0
        acc = sums.get(key)
        if acc is None:
            sums[key] = [1, requests, r[7], r[8], r[9], r[10], r[11], r[12], cost or 0, unpriced]
        else:
            acc[0] += 1
            acc[1] += requests
            acc[2] += r[7]
            acc[3] += r[8]
            acc[4] += r[9]
            acc[5] += r[10]
            acc[6] += r[11]
            acc[7] += r[12]
            acc[8] += cost or 0
            acc[9] += unpriced
        if tag_rows:
            by_id[r[0]] = (bucket, r[30], requests, cost or 0, unpriced)
    conn.executemany(_ROLLUP_UPSERT, [(*k, *v) for k, v in sums.items()])
    if tag_rows:
        tag_sums: dict[tuple[Any, ...], list[int]] = {}
        for event_id, key, value in tag_rows:
            bucket, source, requests, cost, unpriced = by_id[event_id]
            acc = tag_sums.setdefault((bucket, key, value, source), [0, 0, 0, 0])
            acc[0] += 1
            acc[1] += requests
            acc[2] += cost
            acc[3] += unpriced
        conn.executemany(_TAG_ROLLUP_UPSERT, [(*k, *v) for k, v in tag_sums.items()])
