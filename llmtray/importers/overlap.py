"""Imported aggregates vs events llmtray observed itself: never count the same spend twice.

A provider's export covers whole UTC days; if hooks or the proxy already recorded calls to that
provider on one of those days, importing the export as well would double the day. The user
chooses: `refuse` (the default: nothing is stored, the days are listed), `keep` (store both,
knowingly), `skip` (drop imported rows on those days) or `replace` (the imported rows win: the
observed events of each such provider-day are deleted in the same transaction that stores the
day's first imported row, and kept in `replaced_event` under the import's dataset, so that
removing the import — cancelled, cut short by a crash, or removed by the user months later —
puts them back).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from llmtray.core.db import BUCKET_US
from llmtray.core.store import COLUMNS
from llmtray.importers.values import US_PER_DAY

POLICIES = ("refuse", "keep", "skip", "replace")
OBSERVED_SOURCES = ("hook", "proxy", "api", "otel")
_BUCKETS_PER_DAY = US_PER_DAY // BUCKET_US
_SOURCES_SQL = ", ".join(f"'{s}'" for s in OBSERVED_SOURCES)
_COLUMNS_SQL = ", ".join(COLUMNS)
_EPOCH_DAY = date(1970, 1, 1)

ProviderDays = dict[str, set[int]]


def observed_days(conn: sqlite3.Connection) -> ProviderDays:
    """UTC days (since the epoch) with observed events, per provider — read from the 15-minute
    rollups, so it costs a few thousand rows, not a scan of every event."""
    out: ProviderDays = {}
    rows = conn.execute(
        f"SELECT provider, bucket / {_BUCKETS_PER_DAY} FROM rollup "
        f"WHERE source IN ({_SOURCES_SQL}) AND events > 0 GROUP BY 1, 2"
    )
    for provider, day in rows:
        out.setdefault(provider, set()).add(day)
    return out


# Formats whose rows share ids: importing both adds each row once, so they never double-count.
_FAMILY = {"openai-usage-api": "openai-usage"}
_RESTORES = ("llmtray-jsonl", "llmtray-csv")  # keep each event's original source, imports included


def other_imports(conn: sqlite3.Connection, fmt: str, days: set[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """(format, provider, day) of rows from *other* import formats on the provider-days just
    imported. Not refused like observed events (two exports may well be complementary), but
    said: a provider's usage export and its cost export describe the same spend."""
    if not days or fmt in _RESTORES:
        return []
    family = _FAMILY.get(fmt, fmt)
    rows = conn.execute(
        f"SELECT DISTINCT source, provider, bucket / {_BUCKETS_PER_DAY} FROM rollup "
        "WHERE source LIKE 'import:%' AND events > 0"
    )
    out = []
    for source, provider, day in rows:
        other = source.removeprefix("import:")
        if _FAMILY.get(other, other) != family and (provider, day) in days:
            out.append((other, provider, day))
    return sorted(out)


def day_date(day: int) -> date:
    return _EPOCH_DAY + timedelta(days=day)


def describe_imports(found: Iterable[tuple[str, str, int]]) -> str:
    """`anthropic-cost (anthropic: 2026-05-01, 2026-05-02)`, one group per other format."""
    by_format: dict[str, list[tuple[str, int]]] = {}
    for fmt, provider, day in found:
        by_format.setdefault(fmt, []).append((provider, day))
    return "; ".join(f"{fmt} ({describe(days)})" for fmt, days in sorted(by_format.items()))


def describe(days: Iterable[tuple[str, int]], limit: int = 10) -> str:
    """`openai: 2026-05-12, 2026-05-13; anthropic: 2026-05-12` (at most `limit` days shown)."""
    by_provider: dict[str, list[int]] = {}
    for provider, day in sorted(days):
        by_provider.setdefault(provider, []).append(day)
    parts, shown = [], 0
    total = sum(len(v) for v in by_provider.values())
    for provider, provider_days in by_provider.items():
        take = provider_days[: max(0, limit - shown)]
        shown += len(take)
        if take:
            parts.append(f"{provider}: {', '.join(day_date(d).isoformat() for d in take)}")
    more = f" and {total - shown} more" if total > shown else ""
    return "; ".join(parts) + more


@contextmanager
def replacing(conn: sqlite3.Connection, dataset_id: int, observed: ProviderDays) -> Iterator[ReplaceLog]:
    """While active, the first row of `dataset_id` stored on an observed provider-day deletes
    that day's observed events, inside the store's own insert transaction (a temporary trigger
    on this connection only), so no reader ever sees the day twice or not at all. The deleted
    rows are moved, in that same transaction, to `replaced_event` under `dataset_id`
    (`replaced_rows`): whenever the dataset is removed, they come back."""
    conn.execute(
        "CREATE TEMP TABLE import_replace (provider TEXT NOT NULL, day INTEGER NOT NULL, removed INTEGER, "
        "PRIMARY KEY (provider, day)) WITHOUT ROWID"
    )
    postgres = getattr(conn, "dialect", "sqlite") == "postgresql"
    row = "r" if postgres else "NEW"  # the inserted row, as the trigger (or PostgreSQL's hook) names it
    try:
        conn.executemany("INSERT INTO import_replace (provider, day) VALUES (?, ?)",
                         [(p, d) for p, days in observed.items() for d in days])
        day = f"({row}.ts / {US_PER_DAY})"
        provider = f"(SELECT text FROM name WHERE id = {row}.provider)"  # the compact row holds its id
        in_day = (f"provider = {provider} AND ts >= {day} * {US_PER_DAY} AND ts < ({day} + 1) * {US_PER_DAY} "
                  f"AND source IN ({_SOURCES_SQL}) AND dataset_id IS NOT {int(dataset_id)}")
        when = (f"{row}.dataset_id = {int(dataset_id)} AND EXISTS ("
                f"SELECT 1 FROM import_replace WHERE provider = {provider} AND day = {day} AND removed IS NULL)")
        body = [f"UPDATE import_replace SET removed = (SELECT count(*) FROM event WHERE {in_day})"
                f" WHERE provider = {provider} AND day = {day}",
                f"INSERT INTO replaced_event (replaced_by, {_COLUMNS_SQL})"
                f" SELECT {int(dataset_id)}, {_COLUMNS_SQL} FROM event WHERE {in_day}",
                f"DELETE FROM event WHERE {in_day}"]
        if postgres:
            conn.execute(_session_hook(conn, when, body))
        else:
            conn.execute(f"CREATE TEMP TRIGGER import_replace_observed AFTER INSERT ON main.event_row WHEN {when}"
                         f" BEGIN {'; '.join(body)}; END")
        yield ReplaceLog(conn)
    finally:
        if postgres:
            conn.execute(f"DROP FUNCTION IF EXISTS {SESSION_HOOK}(event_row)")
            conn.execute("DROP TABLE IF EXISTS pg_temp.import_replace")
        else:
            conn.execute("DROP TRIGGER IF EXISTS temp.import_replace_observed")
            conn.execute("DROP TABLE IF EXISTS temp.import_replace")


SESSION_HOOK = "pg_temp.llmtray_after_insert"  # what PostgreSQL's event_row trigger calls (`core.pg`)


def _session_hook(conn: sqlite3.Connection, when: str, body: list[str]) -> str:
    """PostgreSQL has no temporary triggers: its schema's trigger on imported rows calls this
    session's own function of that name, if it has one (`core.pg`)."""
    from llmtray.core.pg import translate

    statements = "".join(f"    {translate(b).replace('%%', '%')};\n" for b in body)
    return (f"CREATE FUNCTION {SESSION_HOOK}(r event_row) RETURNS void LANGUAGE plpgsql AS $hook$ BEGIN\n"
            f"  IF {translate(when).replace('%%', '%')} THEN\n{statements}  END IF;\nEND $hook$")


class ReplaceLog:
    """What `replacing` has done so far: each provider-day replaced, with its events deleted."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def replaced(self) -> list[tuple[str, int, int]]:
        return list(self._conn.execute(
            "SELECT provider, day, removed FROM import_replace WHERE removed IS NOT NULL ORDER BY 1, 2"
        ))


def replaced_rows(conn: sqlite3.Connection, dataset_id: int) -> Iterator[dict[str, Any]]:
    """The observed event rows that importing `dataset_id` replaced, as they were stored
    (`event`'s columns), oldest first."""
    cur = conn.execute(f"SELECT {_COLUMNS_SQL} FROM replaced_event WHERE replaced_by = ? ORDER BY ts, id",
                       (dataset_id,))
    for row in cur.fetchall():
        yield dict(zip(COLUMNS, row))
