"""Latency sketches: the bins (`core.sketch`) of every successful call, per hour and per day.

A sketch is one row per (tag, unit, time, model, provider, feature, source) holding the calls per
bin as a blob — not a row per bin: a model's calls of one hour spread over dozens of bins, and a
row each cost more than the events they counted (measured: 411 MiB of bin rows per million calls
with tags). Tag 0 is every call; a call with tags is counted again under each of its tags, so
the dashboard's tag filter reads sketches too.

SQL can't add blobs, so the store adds each batch's calls here (`add`), and a deleted event only
marks its UTC day stale (`latency_stale`, by the view's delete trigger): the store recomputes
stale days from the events at the end of its transaction (`refresh`), and a reader that finds a
day still stale reads that day's bins from the events instead (`Reader`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from llmtray.core.sketch import FLOOR_BIN

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
HOUR, DAY = 0, 1  # `unit`
LATENCY, TTFT = 0, 1  # the two kinds of time a call reports
EVERY_CALL = 0  # the `tag` of sketches over all calls
_DIMS = ("model", "provider", "feature", "source")
_KEY = ("tag", "unit", "time", *_DIMS)
_BIN = np.dtype("<i2")
_COUNT = np.dtype("<u4")


# --- the blob: bins (int16) then their counts (uint32), bins ascending -------------------------

def encode(bins: Counter[int]) -> bytes | None:
    if not bins:
        return None
    keys = sorted(b for b, n in bins.items() if n)
    return (np.array(keys, _BIN).tobytes() + np.array([bins[b] for b in keys], _COUNT).tobytes()) or None


def decode(blob: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    if not blob:
        return np.empty(0, _BIN), np.empty(0, _COUNT)
    n = len(blob) // 6
    return np.frombuffer(blob, _BIN, n), np.frombuffer(blob, _COUNT, n, offset=2 * n)


def _counter(blob: bytes | None) -> Counter[int]:
    bins, counts = decode(blob)
    return Counter(dict(zip(bins.tolist(), counts.tolist())))


# --- writing -----------------------------------------------------------------------------------

def _ok_id(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT id FROM name WHERE text = 'ok'").fetchone()
    return row[0] if row else None


def _binned(conn: sqlite3.Connection, where: str, params: Iterable[Any]) -> Iterator[tuple[int, ...]]:
    """(tag, hour, model, provider, feature, source, kind, bin, calls) of the successful calls of
    `event_row e` under `where`, counted once over all calls and once per tag."""
    ok = _ok_id(conn)
    if ok is None:
        return
    params = list(params)
    dims = ", ".join(f"e.{d}" for d in _DIMS)
    for kind, column in ((LATENCY, "e.lat_bin"), (TTFT, "e.ttft_bin")):
        for tag, join in (("0", ""), ("t.tag", " JOIN event_tag_link t ON t.event = e.id")):
            yield from conn.execute(
                f"SELECT {tag}, e.ts / {HOUR_US}, {dims}, {kind}, {column}, count(*) FROM event_row e{join}"
                f" WHERE ({where}) AND e.status = ? AND {column} IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 8",
                [*params, ok])


def _merge(conn: sqlite3.Connection, rows: Iterable[tuple[int, ...]]) -> None:
    """Add binned calls to their hour and day sketches (read, add, write back)."""
    cells: dict[tuple[int, ...], tuple[Counter[int], Counter[int]]] = defaultdict(lambda: (Counter(), Counter()))
    for tag, hour, model, provider, feature, source, kind, bin_, calls in rows:
        for unit, time in ((HOUR, hour), (DAY, hour * HOUR_US // DAY_US)):
            cells[(tag, unit, time, model, provider, feature, source)][kind][bin_] += calls
    if not cells:
        return
    by_time: dict[tuple[int, int, int], list[tuple[int, ...]]] = defaultdict(list)
    for key in cells:
        by_time[key[:3]].append(key)
    stored: dict[tuple[int, ...], tuple[bytes | None, bytes | None]] = {}
    for (tag, unit, time) in by_time:
        for *key, lat, ttft in conn.execute(
                f"SELECT {', '.join(_KEY)}, lat, ttft FROM latency_sketch WHERE tag = ? AND unit = ? AND time = ?",
                (tag, unit, time)):
            stored[tuple(key)] = (lat, ttft)
    out = []
    for key, (lat, ttft) in cells.items():
        old = stored.get(key)
        if old is not None:
            lat.update(_counter(old[0]))
            ttft.update(_counter(old[1]))
        out.append((*key, encode(lat), encode(ttft)))
    conn.executemany(f"INSERT OR REPLACE INTO latency_sketch ({', '.join(_KEY)}, lat, ttft)"
                     f" VALUES ({', '.join('?' * (len(_KEY) + 2))})", out)


def add(conn: sqlite3.Connection, first_id: int, next_id: int) -> None:
    """Count a stored batch (row ids in [first_id, next_id)) into the sketches."""
    _merge(conn, _binned(conn, "e.id >= ? AND e.id < ?", (first_id, next_id)))


def refresh(conn: sqlite3.Connection) -> None:
    """Recompute the sketches of the days a delete made stale (inside the caller's transaction)."""
    days = [d for (d,) in conn.execute("SELECT day FROM latency_stale")]
    if days:
        rebuild(conn, days)


def rebuild(conn: sqlite3.Connection, days: list[int] | None = None) -> None:
    """Recompute the sketches of `days` (UTC day numbers; None: all) from the events."""
    if days is None:
        conn.execute("DELETE FROM latency_sketch")
        conn.execute("DELETE FROM latency_stale")
        _merge(conn, _binned(conn, "1", ()))
        return
    for day in days:
        conn.execute("DELETE FROM latency_sketch WHERE unit = ? AND time = ?", (DAY, day))
        conn.execute("DELETE FROM latency_sketch WHERE unit = ? AND time >= ? AND time < ?",
                     (HOUR, day * 24, day * 24 + 24))
        _merge(conn, _binned(conn, "e.ts >= ? AND e.ts < ?", (day * DAY_US, (day + 1) * DAY_US)))
        conn.execute("DELETE FROM latency_stale WHERE day = ?", (day,))


# --- reading -----------------------------------------------------------------------------------

def stale_days(conn: sqlite3.Connection) -> set[int]:
    return {d for (d,) in conn.execute("SELECT day FROM latency_stale")}


def summed(conn: sqlite3.Connection, tag: int, unit: int, runs: list[tuple[int, int]],
           clauses: list[str], params: list[Any]) -> dict[tuple[int, int], Counter[int]]:
    """Calls per bin per (model id, kind) from the sketches of `unit` in the half-open `runs` of
    its time, under `clauses` on the sketch's id columns."""
    by_model: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    ranges = " OR ".join(f"(time >= {lo} AND time < {hi})" for lo, hi in runs)  # integers we computed
    for model, lat, ttft in conn.execute(
            f"SELECT model, lat, ttft FROM latency_sketch WHERE tag = ? AND unit = ? AND ({ranges})"
            f"{''.join(' AND ' + c for c in clauses)}", [tag, unit, *params]):
        by_model[model].append((lat, ttft))
    out: dict[tuple[int, int], Counter[int]] = {}
    for model, blobs in by_model.items():
        for kind in (LATENCY, TTFT):
            parts = [decode(b[kind]) for b in blobs if b[kind]]
            if not parts:
                continue
            bins = np.concatenate([p[0] for p in parts]).astype(np.int64) - FLOOR_BIN
            dense = np.bincount(bins, weights=np.concatenate([p[1] for p in parts]).astype(np.float64))
            (nonzero,) = np.nonzero(dense)
            out[(model, kind)] = Counter(dict(zip((nonzero + FLOOR_BIN).tolist(), dense[nonzero].astype(np.int64).tolist())))
    return out
