"""Blocks: stop the calls of a feature, model, provider, project, user or tag (DESIGN §15).

A block is a scope (`budgets.Scope`, so a model alias covers its snapshots as budgets do), a
reason, who made it (`user`, `guard`, `alert`) and an end (or none). Blocks live in the database,
so the tray app, `llmtray serve` and a `llmtray block` run beside them share one set: the proxy
re-reads the active ones at most every `REFRESH_S` (`BlockWatch`), which is how a block made by
any process applies within a second without any signalling between processes. Lifted and expired
blocks stay as history; the calls a block refused are events tagged `BLOCKED_TAG` = its id
(status `error`, cost 0), so the dashboard counts them like any other call.

Guards (`core.guards`) create blocks when a call, or the average of the last calls, costs too much.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from llmtray.core import db as dbmod
from llmtray.core.budgets import Scope
from llmtray.core.errors import LLMTrayError
from llmtray.core.events import BLOCKED_TAG, MAX_TAGS, format_ts
from llmtray.core.store import from_us, to_us

CREATORS = ("user", "guard", "alert")
REFRESH_S = 0.25  # how stale the proxy's view of the blocks may be (the contract says within 1 s)
ALERT_BLOCK_S = 3600  # "Block <feature> for 1 h" from a notification
MAX_REASON = 500
MAX_DURATION_S = 366 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")


class BlockError(LLMTrayError, ValueError):
    """A block that can't be made or found; the message names the field or the block."""


def parse_duration(text: str) -> int:
    """`30m`, `2h`, `1d` (or `90s`) as seconds; the error quotes the text."""
    found = _DURATION.match(text)
    if not found:
        raise BlockError(f"duration: expected a number and a unit (s, m, h, d), e.g. 30m or 2h; got {text!r}")
    seconds = int(found.group(1)) * _UNITS[found.group(2)]
    if not 0 < seconds <= MAX_DURATION_S:
        raise BlockError(f"duration: must be more than 0 and at most 366 days, got {text!r}")
    return seconds


def describe_duration(seconds: int) -> str:
    """The largest whole unit: `1 h`, `30 min`, `2 d` (what a notification button can say)."""
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds % size == 0:
            return f"{seconds // size} {name}"
    return f"{seconds} s"


def scope_json(scope: Scope) -> str:
    return json.dumps(scope.as_dict(), ensure_ascii=False, sort_keys=True)


def scope_from_json(text: str) -> Scope:
    return scope_from_dict(json.loads(text))


def scope_from_dict(data: Mapping[str, Any]) -> Scope:
    """A scope from `Scope.as_dict()` (the database, a block's JSON entry)."""
    return Scope(**{k: v for k, v in data.items() if k != "tags"}, tags=tuple((data.get("tags") or {}).items()))


def describe_scope(scope: Scope) -> str:
    """What a block stops: `feature summarize, tag team=a`, or `all calls`."""
    return "all calls" if scope.is_everything else scope.describe()


def _iso(us: int) -> str:
    return format_ts(from_us(us))


@dataclass(frozen=True)
class Block:
    id: int
    scope: Scope
    reason: str
    created_by: str
    created_us: int
    until_us: int | None = None
    lifted_us: int | None = None

    def active_at(self, now_us: int) -> bool:
        return self.lifted_us is None and (self.until_us is None or now_us < self.until_us)

    @property
    def what(self) -> str:
        return describe_scope(self.scope)

    @property
    def until_text(self) -> str:
        return f"until {_iso(self.until_us)}" if self.until_us is not None else "until lifted"

    @cached_property
    def message(self) -> str:
        """What a refused caller reads (the proxy's 429, the hooks' exception): blocked, why, till when."""
        return (f"blocked by llmtray block #{self.id} ({self.what}): {self.reason}. Blocked {self.until_text}; "
                f"the call was not sent. Lift it with `llmtray unblock {self.id}` or from the tray menu.")

    def entry(self) -> dict[str, Any]:
        """DESIGN §15's `{"id", "scope", "reason", "until"}` (RFC 3339 or null), plus who and when."""
        return {"id": self.id, "scope": self.scope.as_dict(), "reason": self.reason,
                "until": _iso(self.until_us) if self.until_us is not None else None,
                "created_by": self.created_by, "created": _iso(self.created_us),
                "lifted": _iso(self.lifted_us) if self.lifted_us is not None else None}

    def refused_event(self, provider: str, model: str | None, fields: Mapping[str, str | None],
                      tags: Mapping[str, str], ts: float | None = None) -> dict[str, Any]:
        """The usage event (DESIGN §3) that counts one refused call: an error at zero cost, tagged
        with this block's id. A call already carrying the most tags keeps them and loses the
        last one (by key) rather than its count."""
        marked = dict(sorted(tags.items())[: MAX_TAGS - 1]) if len(tags) >= MAX_TAGS else dict(tags)
        marked[BLOCKED_TAG] = str(self.id)
        return {"ts": time.time() if ts is None else ts, "provider": provider, "model": model or "unknown",
                "status": "error", "error": self.message[:500], "cost_usd": "0",
                **{k: v for k, v in fields.items() if v is not None}, "tags": marked}


def _from_row(row: tuple[Any, ...]) -> Block:
    id_, scope, reason, created_by, created, until, lifted = row
    return Block(int(id_), scope_from_json(scope), reason, created_by, int(created), until, lifted)


_COLUMNS = "id, scope, reason, created_by, created, until, lifted"


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One `BEGIN IMMEDIATE` transaction, or the caller's when one is open (the monitor writes a
    block in the same transaction as its alert)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class BlockBook:
    """Makes, lifts and lists blocks on one connection (use it on the thread that opened it)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def add(self, scope: Scope, reason: str, created_by: str = "user", for_s: int | None = None,
            now: datetime | None = None) -> Block:
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON:
            raise BlockError(f"reason: must be 1–{MAX_REASON} characters, got {len(reason)}")
        if created_by not in CREATORS:
            raise BlockError(f"created_by: must be one of {', '.join(CREATORS)}, got {created_by!r}")
        if for_s is not None and not 0 < for_s <= MAX_DURATION_S:
            raise BlockError(f"duration: must be more than 0 and at most 366 days, got {for_s} s")
        now_us = to_us(now or datetime.now(UTC))
        until = -(-(now_us + for_s * 1_000_000) // 1_000_000) * 1_000_000 if for_s is not None else None
        now_us -= now_us % 1_000_000  # whole seconds (the end rounded up): people read these times
        with write(self.conn):
            (block_id,) = self.conn.execute(
                "INSERT INTO block (scope, reason, created_by, created, until) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (scope_json(scope), reason, created_by, now_us, until)).fetchone()
        return Block(int(block_id), scope, reason, created_by, now_us, until)

    def refusal(self, values: Mapping[str, Any], now: datetime | None = None) -> Block | None:
        """The active block (the oldest) whose scope covers a call with these attribution values —
        `provider`, `model`, `feature`, `user`, `project`, `env`, `tags` (dict) — or None."""
        return first_refusal(self.active(now), values, now)

    def get(self, block_id: int, now: datetime | None = None) -> Block:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM block WHERE id = ?", (block_id,)).fetchone()
        if row is None:
            raise BlockError(f"no block #{block_id}{self._active_hint(now)}")
        return _from_row(row)

    def lift(self, block_id: int, now: datetime | None = None) -> Block:
        """End a block now; an unknown, lifted or expired one is an error naming the active ones."""
        now = now or datetime.now(UTC)
        now_us = to_us(now)
        with write(self.conn):
            block = self.get(block_id, now)
            if not block.active_at(now_us):
                ended = "was lifted" if block.lifted_us is not None else "has expired"
                raise BlockError(f"block #{block_id} {ended} already{self._active_hint(now)}")
            self.conn.execute("UPDATE block SET lifted = ? WHERE id = ?", (now_us, block_id))
        return Block(block.id, block.scope, block.reason, block.created_by, block.created_us, block.until_us, now_us)

    def lift_all(self, now: datetime | None = None) -> list[Block]:
        now = now or datetime.now(UTC)
        with write(self.conn):
            lifted = [self.lift(b.id, now) for b in self.active(now)]
        return lifted

    def active(self, now: datetime | None = None) -> list[Block]:
        """Blocks in force at `now`, oldest first."""
        now_us = to_us(now or datetime.now(UTC))
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM block WHERE lifted IS NULL AND (until IS NULL OR until > ?)"
                                 " ORDER BY id", (now_us,))
        return [_from_row(r) for r in rows]

    def history(self, limit: int = 100) -> list[Block]:
        """The newest blocks, active or not."""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM block ORDER BY id DESC LIMIT ?", (limit,))
        return [_from_row(r) for r in rows]

    def refused(self) -> dict[int, int]:
        """Calls refused per block id (the events tagged `BLOCKED_TAG`)."""
        rows = self.conn.execute("SELECT value, count(*) FROM event_tag WHERE key = ? GROUP BY value", (BLOCKED_TAG,))
        return {int(v): n for v, n in rows if v.isdigit()}

    def _active_hint(self, now: datetime | None) -> str:
        ids = [f"#{b.id}" for b in self.active(now)]
        return f"; active blocks: {', '.join(ids)}" if ids else "; no block is active"


def first_refusal(blocks: list[Block], values: Mapping[str, Any], now: datetime | None = None) -> Block | None:
    now_us = to_us(now or datetime.now(UTC))
    return next((b for b in blocks if b.active_at(now_us) and b.scope.matches(values)), None)


def active_entries(conn: sqlite3.Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """The active blocks as `/v1/summary` and `status --json` list them."""
    return [b.entry() for b in BlockBook(conn).active(now)]


class BlockWatch:
    """The active blocks as seen by one thread (the proxy's loop), re-read at most every
    `refresh_s`: asking costs a scan of a short list, and a block made or lifted by any process
    is seen within `refresh_s`. Expiry is checked on every ask. A database that can't be read
    keeps the last list (logged by the caller's `on_error`) rather than dropping every block."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic, on_error: Callable[[Exception], None] | None = None):
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self.refresh_s = refresh_s
        self.clock = clock
        self.on_error = on_error
        self._blocks: list[Block] = []
        self._next = 0.0

    def refusal(self, values: Mapping[str, Any], now: datetime | None = None) -> Block | None:
        """As `BlockBook.refusal`, from the list read at most `refresh_s` ago."""
        if self.clock() >= self._next:
            self._reload(now or datetime.now(UTC))
        if not self._blocks:  # the usual case: nothing blocked, nothing to compare
            return None
        return first_refusal(self._blocks, values, now)

    def _reload(self, now: datetime) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._blocks = BlockBook(self._conn).active(now)
        except sqlite3.Error as exc:
            if self.on_error is not None:
                self.on_error(exc)
        self._next = self.clock() + self.refresh_s

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read_only(path: Any) -> Callable[[], sqlite3.Connection]:
    """A connection factory for `BlockWatch`: read-only, waiting out a writer's lock briefly."""
    def connect() -> sqlite3.Connection:
        conn = dbmod.connect(path, timeout=5.0)
        conn.execute("PRAGMA query_only = ON")
        return conn
    return connect
