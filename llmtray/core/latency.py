"""Latency sketches: the bins (`core.sketch`) of every successful call, per hour and per day.

A sketch is one row per (tag, unit, time, model, provider, feature, source) holding the calls per
bin as a blob — not a row per bin: a model's calls of one hour spread over dozens of bins, and a
row each cost more than the events they counted (measured: 411 MiB of bin rows per million calls
with tags). Tag 0 is every call; a call with tags is counted again under each of its tags, so
the dashboard's tag filter reads sketches too.

SQL can't add blobs, so the store adds each batch's calls here (`add`), and a deleted event only
marks its UTC day stale (`latency_stale`, by the view's delete trigger): the store recomputes
stale days from the events at the end of its transaction (`refresh`), and a reader that finds a
day still stale reads that day's bins from the events instead (`queries.Queries.latency`).
"""

from __future__ import annotations

import sqlite3
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

from llmtray.core.sketch import FLOOR_BIN

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
HOUR, DAY = 0, 1  # `unit`
LATENCY, TTFT = 0, 1  # the two kinds of time a call reports
EVERY_CALL = 0  # the `tag` of sketches over all calls
_DIMS = ("model", "provider", "feature", "source")
_KEY = ("tag", "unit", "time", *_DIMS)


# --- the blob ------------------------------------------------------------------------------------
# One byte of layout, then the bins ascending — as int16, or the first as int16 and the gaps to
# the next as uint8 when every gap fits — then their counts as the narrowest unsigned integer that
# holds them all: usually 2 or 3 bytes a bin. Little-endian. (Plain `array`, not numpy: the tray
# writes sketches while idle, and numpy would add 15 MB to it; the dashboard's sum uses numpy.)

_COUNT_CODES = ("B", "H", "I", "Q")
_SWAP = sys.byteorder == "big"


def _raw(values: array) -> bytes:
    if _SWAP:
        values.byteswap()
    return values.tobytes()


def _read(code: str, blob: bytes, start: int, n: int) -> array:
    values = array(code)
    values.frombytes(blob[start:start + n * values.itemsize])
    if _SWAP:
        values.byteswap()
    return values


def encode(bins: Counter[int]) -> bytes | None:
    keys = sorted(b for b, n in bins.items() if n > 0)
    if not keys:
        return None
    counts = [bins[b] for b in keys]
    gaps = [b - a for a, b in zip(keys, keys[1:])]
    gapped = all(g < 256 for g in gaps)
    top = max(counts)
    width = next(i for i, code in enumerate(_COUNT_CODES) if top < 1 << (8 * array(code).itemsize))
    body = _raw(array("h", keys[:1])) + bytes(gaps) if gapped else _raw(array("h", keys))
    return bytes([int(gapped) | width << 1]) + body + _raw(array(_COUNT_CODES[width], counts))


def decode(blob: bytes | None) -> tuple[list[int], array]:
    """(bins, counts) of a blob."""
    if not blob:
        return [], array("Q")
    gapped, code = blob[0] & 1, _COUNT_CODES[blob[0] >> 1]
    size = array(code).itemsize
    if gapped:
        n = (len(blob) - 2) // (1 + size)
        bins = list(accumulate(blob[3:3 + n - 1], initial=_read("h", blob, 1, 1)[0]))
        start = 2 + n
    else:
        n = (len(blob) - 1) // (2 + size)
        bins = _read("h", blob, 1, n).tolist()
        start = 1 + 2 * n
    return bins, _read(code, blob, start, n)


def _counter(blob: bytes | None) -> Counter[int]:
    bins, counts = decode(blob)
    return Counter(dict(zip(bins, counts)))


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
    # The tagged pass names its rows on the links too (`t.event` for `e.id`): PostgreSQL infers
    # no range across the join, and once its statistics said the table was big it hashed the
    # batch's rows and swept every link, each batch (4x slower past 500k events, bench/team.py).
    linked = where.replace("e.id", "t.event")
    for kind, column in ((LATENCY, "e.lat_bin"), (TTFT, "e.ttft_bin")):
        for tag, join, also in (("0", "", ""), ("t.tag", " JOIN event_tag_link t ON t.event = e.id", linked)):
            yield from conn.execute(
                f"SELECT {tag}, e.ts / {HOUR_US}, {dims}, {kind}, {column}, count(*) FROM event_row e{join}"
                f" WHERE ({where}){f' AND ({also})' if also else ''} AND e.status = ? AND {column} IS NOT NULL"
                f" GROUP BY 1, 2, 3, 4, 5, 6, 8", [*params, *(params if also else ()), ok])


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
        by_time[key[:3]].append(key[3:])
    stored: dict[tuple[int, ...], tuple[bytes | None, bytes | None]] = {}
    for (tag, unit, time), dims in by_time.items():  # the touched cells only, by primary key
        for start in range(0, len(dims), 200):
            part = dims[start:start + 200]
            for *key, lat, ttft in conn.execute(
                    f"SELECT {', '.join('s.' + k for k in _KEY)}, s.lat, s.ttft"
                    f" FROM (VALUES {', '.join(['(?, ?, ?, ?)'] * len(part))}) v CROSS JOIN latency_sketch s"
                    f" WHERE s.tag = ? AND s.unit = ? AND s.time = ?"
                    f" AND {' AND '.join(f's.{d} = v.column{i}' for i, d in enumerate(_DIMS, start=1))}",
                    (*(d for dim in part for d in dim), tag, unit, time)):
                stored[tuple(key)] = (lat, ttft)
    out = []
    for key, (lat, ttft) in cells.items():
        old = stored.get(key)
        if old is not None:
            lat.update(_counter(old[0]))
            ttft.update(_counter(old[1]))
        out.append((*key, encode(lat), encode(ttft)))
    conn.executemany(f"INSERT INTO latency_sketch ({', '.join(_KEY)}, lat, ttft) VALUES ({', '.join('?' * (len(_KEY) + 2))})"
                     f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET lat = excluded.lat, ttft = excluded.ttft",
                     [row for row in out if row[-2] or row[-1]])
    emptied = [row[:len(_KEY)] for row in out if not (row[-2] or row[-1])]  # every call of the cell deleted
    conn.executemany(f"DELETE FROM latency_sketch WHERE {' AND '.join(f'{k} = ?' for k in _KEY)}", emptied)


def add(conn: sqlite3.Connection, first_id: int, next_id: int) -> None:
    """Count a stored batch (row ids in [first_id, next_id)) into the sketches."""
    _merge(conn, _binned(conn, "e.id >= ? AND e.id < ?", (first_id, next_id)))


def subtract(conn: sqlite3.Connection, row_ids: list[int]) -> None:
    """Take events about to be deleted out of the sketches (the caller then unmarks their days)."""
    binned = _binned(conn, f"e.id IN ({', '.join('?' * len(row_ids))})", row_ids)
    _merge(conn, ((*row[:-1], -row[-1]) for row in binned))


def refresh(conn: sqlite3.Connection) -> None:
    """Recompute the sketches of the days a delete made stale (inside the caller's transaction)."""
    days = [d for (d,) in conn.execute("SELECT day FROM latency_stale")]
    if days:
        rebuild(conn, days)


def rebuild(conn: sqlite3.Connection, days: list[int] | None = None) -> None:
    """Recompute the sketches of `days` (UTC day numbers; None: all) from the events."""
    if days is None:  # day by day: memory bounded by a day's cells, not the history's
        conn.execute("DELETE FROM latency_sketch")
        conn.execute("DELETE FROM latency_stale")
        first, last = conn.execute("SELECT min(ts), max(ts) FROM event_row").fetchone()
        if first is None:
            return
        for day in range(first // DAY_US, last // DAY_US + 1):
            _merge(conn, _binned(conn, "e.ts >= ? AND e.ts < ?", (day * DAY_US, (day + 1) * DAY_US)))
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
    import numpy as np  # here, not at the top: see the blob's note

    out: dict[tuple[int, int], Counter[int]] = {}
    for model, blobs in by_model.items():
        for kind in (LATENCY, TTFT):
            parts = [decode(b[kind]) for b in blobs if b[kind]]
            if not parts:
                continue
            bins = np.concatenate([np.asarray(p[0], np.int64) for p in parts]) - FLOOR_BIN
            counts = np.concatenate([np.asarray(p[1], np.float64) for p in parts])
            dense = np.bincount(bins, weights=counts)  # exact: float64 holds integers to 2^53
            (nonzero,) = np.nonzero(dense)
            out[(model, kind)] = Counter(dict(zip((nonzero + FLOOR_BIN).tolist(), dense[nonzero].astype(np.int64).tolist())))
    return out
