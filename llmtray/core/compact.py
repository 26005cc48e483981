"""The compact event row (schema 10): repeated strings as ids, the idempotency key as a hash.

An event's text columns repeat endlessly — a provider, a model, `import:openrouter-generations`
on every row — and its tags as rows of text with an index over them. So `event_row` keeps ids
into `name` (one dictionary for every such column) and `event_tag_link` pairs of (event, tag id)
into `tag`; the view `event` (and `event_tag`) shows the columns as they always were, so every
reader's SQL is unchanged. The idempotency key is indexed by a 64-bit hash instead of its text,
and an importer's `<format>:<32 hex digits>` id is kept as its 16 bytes beside the format's id.

Writers go through `encode` (the store, and recovery salvaging rows); deletes and cost updates
through the view, whose INSTEAD OF triggers keep the rollups exact (`db._m10_compact_store`).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

# `event`'s columns (the view's, in this order) and `event_row`'s.
EVENT_COLUMNS = (
    "id", "event_id", "ts", "received", "provider", "model", "operation",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "requests", "cost_nanos", "cost_source", "pricing_version", "priced_model",
    "service_tier", "latency_ms", "ttft_ms", "status", "error", "stream",
    "feature", "user", "project", "env", "tags", "request_id", "source", "dataset_id", "lat_bin", "ttft_bin",
)
NAMED = ("provider", "model", "operation", "cost_source", "pricing_version", "priced_model", "service_tier",
         "status", "feature", "user", "project", "env", "source")
# The key, then the columns copied as they are, then the names' ids: a row is built from an
# `event` row with two C-level getters and one dictionary lookup of its names (most rows of a
# batch share them all).
_PLAIN = tuple(c for c in EVENT_COLUMNS if c not in ("id", "event_id", "tags", *NAMED))
ROW_COLUMNS = ("id", "key_hash", "id_prefix", "event_id", *_PLAIN, *NAMED)
_ID_AT = EVENT_COLUMNS.index("event_id")
_plain_of = itemgetter(*(EVENT_COLUMNS.index(c) for c in _PLAIN))
_names_of = itemgetter(*(EVENT_COLUMNS.index(c) for c in NAMED))
_HASHED_ID = re.compile(r"(.+):([0-9a-f]{32})")


def key_hash(event_id: str | None) -> int | None:
    """A stable signed 64-bit hash of an idempotency key (the unique index holds this, not the
    text). Two keys sharing one in a hundred million years of ids are handled (`Encoded.collided`)."""
    if event_id is None:
        return None
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little", signed=True)


def split_id(event_id: str | None) -> tuple[str | None, str | bytes | None]:
    """(prefix, stored form): `<prefix>:<32 lowercase hex>` is stored as 16 bytes and the prefix's
    name id — 55 characters become 17 bytes — anything else as it is."""
    if event_id is not None:
        m = _HASHED_ID.fullmatch(event_id)
        if m:
            return m.group(1), bytes.fromhex(m.group(2))
    return None, event_id


def as_bytes(stored: str | bytes | None) -> bytes | None:
    """A stored id as PostgreSQL keeps it: SQLite's column holds text or 16 bytes as they come,
    PostgreSQL's one BYTEA column holds the text as UTF-8 (the `event` view decodes it)."""
    return stored.encode("utf-8", "surrogatepass") if isinstance(stored, str) else stored


class Dictionary:
    """The ids of names and tags for one connection's writes. Only ids of committed rows are
    kept across transactions: one inserted by a transaction that then rolls back is gone, and
    its id may be handed to another name."""

    def __init__(self) -> None:
        self._names: dict[str, int] = {}
        self._tags: dict[tuple[str, str], int] = {}
        self._new_names: dict[str, int] = {}
        self._new_tags: dict[tuple[str, str], int] = {}

    def committed(self) -> None:
        self._names.update(self._new_names)
        self._tags.update(self._new_tags)
        self.rolled_back()

    def rolled_back(self) -> None:
        self._new_names.clear()
        self._new_tags.clear()

    def name_ids(self, conn: sqlite3.Connection, texts: Iterable[str]) -> dict[str, int]:
        """Ids of `texts`, inserting the new ones (inside the caller's write transaction)."""
        known, new = self._names, self._new_names
        missing = [t for t in set(texts) if t not in known and t not in new]
        for text in missing:
            conn.execute("INSERT OR IGNORE INTO name (text) VALUES (?)", (text,))
            new[text] = conn.execute("SELECT id FROM name WHERE text = ?", (text,)).fetchone()[0]
        return known | new if missing or new else known

    def tag_ids(self, conn: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        known, new = self._tags, self._new_tags
        missing = [p for p in set(pairs) if p not in known and p not in new]
        for key, value in missing:
            conn.execute("INSERT OR IGNORE INTO tag (key, value) VALUES (?, ?)", (key, value))
            new[(key, value)] = conn.execute("SELECT id FROM tag WHERE key = ? AND value = ?", (key, value)).fetchone()[0]
        return known | new if missing or new else known


def encode(conn: sqlite3.Connection, dictionary: Dictionary, rows: Sequence[Sequence[Any]],
           tags: Sequence[Mapping[str, str] | None]) -> tuple[list[tuple[Any, ...]], list[tuple[int, int]]]:
    """`event` rows (EVENT_COLUMNS order, ids assigned) and their tags as `event_row` rows and
    (event, tag id) links."""
    named = {_names_of(row) for row in rows}
    prefixes = [split_id(row[_ID_AT]) for row in rows]
    texts = {t for group in named for t in group if t is not None}
    texts.update(p for p, _ in prefixes if p is not None)
    ids = dictionary.name_ids(conn, texts)
    name_ids = {group: tuple(None if t is None else ids[t] for t in group) for group in named}
    pairs = {(k, v) for t in tags if t for k, v in t.items()}
    tag_ids = dictionary.tag_ids(conn, pairs) if pairs else {}
    if getattr(conn, "dialect", "sqlite") == "postgresql":  # one BYTEA column holds both forms there
        prefixes = [(p, as_bytes(s)) for p, s in prefixes]
    out = []
    links = []
    for row, (prefix, stored), row_tags in zip(rows, prefixes, tags):
        row_id = row[0]
        out.append((row_id, key_hash(row[_ID_AT]), None if prefix is None else ids[prefix], stored,
                    *_plain_of(row), *name_ids[_names_of(row)]))
        if row_tags:
            links.extend((row_id, tag_ids[(k, v)]) for k, v in row_tags.items())
    return out, links


def find(conn: sqlite3.Connection, event_ids: Sequence[str]) -> dict[str, int]:
    """Row ids of the stored events with these idempotency keys (key -> row id), by the hash
    index; a key that collided with another's hash is found by its own partial index."""
    wanted: dict[int | None, set[str]] = {}
    for i in event_ids:  # two keys sharing a hash may both be asked for
        wanted.setdefault(key_hash(i), set()).add(i)
    out: dict[str, int] = {}
    hashes = list(wanted)
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        for row_id, key, stored_id in conn.execute(
                f"SELECT r.id, r.key_hash, e.event_id FROM event_row r JOIN event e ON e.id = r.id"
                f" WHERE r.key_hash IN ({', '.join('?' * len(chunk))})", chunk):
            if stored_id in wanted[key]:
                out[stored_id] = row_id
    rest = [i for i in event_ids if i not in out]
    if rest and conn.execute("SELECT 1 FROM event_row WHERE key_hash IS NULL AND event_id IS NOT NULL LIMIT 1").fetchone():
        for event_id in rest:
            prefix, stored = split_id(event_id)
            if getattr(conn, "dialect", "sqlite") == "postgresql":
                stored = as_bytes(stored)
            row = conn.execute("SELECT r.id FROM event_row r JOIN event e ON e.id = r.id"
                               " WHERE r.key_hash IS NULL AND r.event_id = ? AND e.event_id = ?",
                               (stored, event_id)).fetchone()
            if row:
                out[event_id] = row[0]
    return out
