"""Guards: a per-call cost limit that blocks a scope when traffic breaks it (DESIGN §15).

A guard trips on a single call above `max_request_nanos`, or on the average of the scope's last
`window` calls above `max_avg_nanos`; it then creates a block (`core.blocks`, created by `guard`)
whose reason names the guard and the figure, for `block_s` seconds (or until lifted). The budget
monitor runs `GuardWatch.check` after commits on its own thread, so guards hold wherever events
are committed (the app, `llmtray serve`) and the trip is an alert like any other (notification,
webhook, mail). Only live traffic trips a guard: events stamped within `LIVE_US` of now and
committed since the previous check; a scope already blocked is not checked again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmtray.core.blocks import Block, BlockBook, BlockError, scope_from_json, scope_json, write
from llmtray.core.budgets import Scope, clean_name
from llmtray.core.events import BLOCKED_TAG
from llmtray.core.money import format_usd, nanos_to_str
from llmtray.core.queries import _raw_clauses
from llmtray.core.store import to_us

DEFAULT_WINDOW = 20
MAX_WINDOW = 10_000
DEFAULT_BLOCK_S = 3600
LIVE_US = 15 * 60 * 1_000_000  # as the anomaly detectors: older events are history, not a loop
AVERAGE_LOOKBACK_US = 24 * 3600 * 1_000_000  # "the last N calls" means of the last day


@dataclass(frozen=True)
class Guard:
    name: str
    scope: Scope = field(default_factory=Scope)
    max_request_nanos: int | None = None
    max_avg_nanos: int | None = None
    window: int = DEFAULT_WINDOW
    block_s: int | None = DEFAULT_BLOCK_S
    id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", clean_name(self.name, BlockError))
        if (self.max_request_nanos is None) == (self.max_avg_nanos is None):
            raise BlockError("give exactly one of --max-request-usd and --max-avg-request-usd")
        limit = self.max_request_nanos if self.max_request_nanos is not None else self.max_avg_nanos
        if limit is None or limit <= 0:
            raise BlockError(f"limit: must be more than $0, got ${nanos_to_str(limit or 0) or '0'}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise BlockError(f"window: must be 1–{MAX_WINDOW} calls, got {self.window}")

    def describe(self) -> str:
        if self.max_request_nanos is not None:
            return f"a call above {format_usd(self.max_request_nanos)}"
        assert self.max_avg_nanos is not None
        return f"an average above {format_usd(self.max_avg_nanos)} over the last {self.window} calls"

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope.as_dict(),
                "max_request_usd": nanos_to_str(self.max_request_nanos) if self.max_request_nanos else None,
                "max_avg_request_usd": nanos_to_str(self.max_avg_nanos) if self.max_avg_nanos else None,
                "window": self.window, "block_seconds": self.block_s}


_COLUMNS = "id, name, scope, max_request_nanos, max_avg_nanos, window, block_seconds"


def _from_row(row: tuple[Any, ...]) -> Guard:
    id_, name, scope, per_call, avg, window, block_s = row
    return Guard(name, scope_from_json(scope), per_call, avg, int(window), block_s, int(id_))


class GuardBook:
    """Adds, lists and removes guards on one connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def add(self, guard: Guard) -> Guard:
        try:
            with write(self.conn):
                (guard_id,) = self.conn.execute(
                    "INSERT INTO guard (name, scope, max_request_nanos, max_avg_nanos, window, block_seconds, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (guard.name, scope_json(guard.scope), guard.max_request_nanos, guard.max_avg_nanos, guard.window,
                     guard.block_s, int(time.time()))).fetchone()
        except sqlite3.IntegrityError:
            raise BlockError(f"a guard named {guard.name!r} already exists (remove it first: "
                             "llmtray guards remove NAME)") from None
        return _from_row(self.conn.execute(f"SELECT {_COLUMNS} FROM guard WHERE id = ?", (guard_id,)).fetchone())

    def list(self) -> list[Guard]:
        return [_from_row(r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM guard ORDER BY name COLLATE NOCASE")]

    def remove(self, name: str) -> Guard:
        with write(self.conn):
            row = self.conn.execute(f"SELECT {_COLUMNS} FROM guard WHERE name = ?", (name.strip(),)).fetchone()
            if row is None:
                names = [g.name for g in self.list()]
                known = f"; guards: {', '.join(names)}" if names else "; there are no guards yet"
                raise BlockError(f"no guard named {name!r}{known}")
            self.conn.execute("DELETE FROM guard WHERE id = ?", (row[0],))
        return _from_row(row)


@dataclass(frozen=True)
class Trip:
    """A guard that tripped and the block it made."""

    guard: Guard
    block: Block


class GuardWatch:
    """Checks every guard against the events committed since the last check (one per thread)."""

    def __init__(self) -> None:
        self._seen_id: int | None = None  # the highest event id already checked

    def check(self, conn: sqlite3.Connection, now: datetime | None = None) -> list[Trip]:
        """Trip the guards that new events break: each makes its block (in the caller's
        transaction when one is open). Returns the trips."""
        now = now or datetime.now(UTC)
        now_us = to_us(now)
        top = conn.execute("SELECT coalesce(max(id), 0) FROM event").fetchone()[0]
        since, self._seen_id = self._seen_id if self._seen_id is not None else 0, top
        if since >= top:
            return []
        guards = GuardBook(conn).list()
        if not guards:
            return []
        book = BlockBook(conn)
        blocked = {scope_json(b.scope) for b in book.active(now)}
        trips = []
        for guard in guards:
            if scope_json(guard.scope) in blocked:
                continue
            # calls from before a block on this scope ended were judged already: a lifted block
            # (or a restart) must not trip again on them, nor on an average that still holds them
            ended = conn.execute("SELECT max(coalesce(lifted, until)) FROM block WHERE scope = ? AND "
                                 "coalesce(lifted, until) <= ?", (scope_json(guard.scope), now_us)).fetchone()[0]
            reason = self._broken(conn, guard, since, ended or 0, now_us)
            if reason is not None:
                block = book.add(guard.scope, reason, "guard", guard.block_s, now)
                blocked.add(scope_json(guard.scope))
                trips.append(Trip(guard, block))
        return trips

    @staticmethod
    def _broken(conn: sqlite3.Connection, guard: Guard, since: int, after_us: int, now_us: int) -> str | None:
        """Why `guard` trips on events after id `since` (and stamped after `after_us`), or None.
        Calls a block refused cost nothing and are left out (they would dilute an average)."""
        clauses, args = _raw_clauses(guard.scope.filters())
        clauses.append("NOT EXISTS (SELECT 1 FROM event_tag b WHERE b.event = e.id AND b.key = ?)")
        args.append(BLOCKED_TAG)
        scope = " AND ".join(clauses)
        fresh, fresh_args = f"e.id > ? AND e.ts >= ? AND {scope}", [since, max(now_us - LIVE_US, after_us), *args]
        if guard.max_request_nanos is not None:
            row = conn.execute(f"SELECT e.cost_nanos, e.model FROM event e WHERE {fresh} AND e.cost_nanos > ?"
                               " ORDER BY e.cost_nanos DESC LIMIT 1", [*fresh_args, guard.max_request_nanos]).fetchone()
            if row is None:
                return None
            return (f"guard {guard.name!r}: a {row[1]} call cost {format_usd(row[0], precise=True)}, above its "
                    f"{format_usd(guard.max_request_nanos)} per-call limit")
        assert guard.max_avg_nanos is not None
        if conn.execute(f"SELECT 1 FROM event e WHERE {fresh} LIMIT 1", fresh_args).fetchone() is None:
            return None  # nothing new in scope: the average has not moved
        oldest = max(now_us - AVERAGE_LOOKBACK_US, after_us)
        costs = [c for (c,) in conn.execute(
            f"SELECT coalesce(e.cost_nanos, 0) FROM event e WHERE e.ts >= ? AND {scope}"
            " ORDER BY e.ts DESC, e.id DESC LIMIT ?", [oldest, *args, guard.window])]
        if len(costs) < guard.window or sum(costs) <= guard.max_avg_nanos * guard.window:
            return None
        average = format_usd(sum(costs) // guard.window, precise=True)
        return (f"guard {guard.name!r}: the last {guard.window} calls averaged {average}, "
                f"above its {format_usd(guard.max_avg_nanos)} limit")
