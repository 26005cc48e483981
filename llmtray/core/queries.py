"""Every aggregation the views, budgets and CLI need, on a read connection of their own.

Reads come from the exact rollups (`db.LEVELS`): a range is covered by whole UTC days, then
whole hours, then quarter-hours, and only what is left (a range's ragged edges, or a filter no
rollup keys, such as two tags at once) from the event table — never a unit that a day of the
chart splits (`_cover`). Every source is a subquery with the same columns, so the aggregations
are one SQL text whatever they read, and the brute-force tests check every path.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from llmtray.core import latency, periods, sketch
from llmtray.core.db import (BUCKET_US, DAY_US, HOUR_US, PLAIN_LEVELS, ROLLUP_DIMENSIONS, ROLLUP_TAG_DAY,
                             ROLLUP_USER_TOTAL_DAY, TAG_LEVELS, TAG_USER_LEVELS, USER_LEVELS, USER_TOTAL_LEVELS, TAG_ROLLUP,
                             Level)
from llmtray.core.model_names import alias_of, model_clause
from llmtray.core.usage import NO_USAGE, USAGE_TAG

SUMS = ("events", "requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cache_write_1h_tokens", "reasoning_tokens", "cost_nanos", "unpriced")
GROUPABLE = ("provider", "model", "feature", "user", "project", "env", "source", "status")
# Columns the events table can be sorted by (unpriced cost and missing latencies sort lowest).
PAGE_ORDERS = ("ts", "provider", "model", "feature", "user", "input_tokens", "output_tokens", "cost_nanos",
               "latency_ms", "ttft_ms", "status", "source")
DIMENSIONS = GROUPABLE
# Where tag pairs were seen: by day, and by bucket (tag_rollup leads with the bucket) at the edges.
_TAG_PAIR_LEVELS = (ROLLUP_TAG_DAY, TAG_ROLLUP)
# The units of the latency sketches, coarsest first (only their `unit_us` matters to `_cover`).
_LATENCY_UNITS = (Level("latency_sketch", "time", DAY_US), Level("latency_sketch", "time", HOUR_US))
_OPEN = (2**62 // DAY_US) * DAY_US  # stands in for an open end of a range: a whole number of every unit
# SQLite's sum() raises "integer overflow" past 2^63 (ten $999,999,999 events once stopped every
# anomaly check). Sums are taken plainly first; only then is each taken again as its high and
# low 32 bits (two sums that can't overflow below 2^31 rows), joined in Python's unbounded ints
# — twice the work per raw row (bench/sums.py), so never on the common path.
_PLAIN_SUMS = ", ".join(f"sum({s})" for s in SUMS)
_WIDE_SUMS = ", ".join(f"sum({s} >> 32), sum({s} & 4294967295)" for s in SUMS)


def _unsplit(row: tuple[Any, ...], keys: int) -> tuple[Any, ...]:
    """A row of `keys` group columns then (high, low) sum pairs, as group columns then exact sums."""
    halves = row[keys:]
    return (*row[:keys], *(((hi or 0) << 32) + (lo or 0) for hi, lo in zip(halves[::2], halves[1::2])))


_RAW_SUMS = (
    "1 AS events, e.requests AS requests, e.input_tokens AS input_tokens, e.output_tokens AS output_tokens,"
    " e.cache_read_tokens AS cache_read_tokens, e.cache_write_tokens AS cache_write_tokens,"
    " e.cache_write_1h_tokens AS cache_write_1h_tokens, e.reasoning_tokens AS reasoning_tokens,"
    " coalesce(e.cost_nanos, 0) AS cost_nanos, (e.cost_nanos IS NULL) * e.requests AS unpriced"
)


@dataclass(frozen=True)
class Filters:
    """What every view can be narrowed by. Empty tuples mean "any"; times are UTC µs, end exclusive."""

    start_us: int | None = None
    end_us: int | None = None
    provider: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    feature: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def between(self, start_us: int | None, end_us: int | None) -> Filters:
        return replace(self, start_us=start_us, end_us=end_us)

    def _dims(self) -> dict[str, tuple[str, ...]]:
        return {d: getattr(self, d) for d in DIMENSIONS if getattr(self, d)}


@dataclass
class Totals:
    """Sums over a selection; `cost_nanos` covers priced requests only, `unpriced` counts the rest."""

    events: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanos: int = 0
    unpriced: int = 0

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Totals:
        return cls(*(int(v or 0) for v in row))

    def add(self, other: Totals) -> None:
        for name in SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def cost_per_request_nanos(self) -> int | None:
        priced = self.requests - self.unpriced
        return self.cost_nanos // priced if priced > 0 else None

    def token_breakdown(self) -> dict[str, int]:
        """The five disjoint kinds of token (DESIGN §3 subsets taken out of their totals)."""
        return {
            "uncached input": self.input_tokens - self.cache_read_tokens - self.cache_write_tokens,
            "cache read": self.cache_read_tokens,
            "cache write": self.cache_write_tokens,
            "output": self.output_tokens - self.reasoning_tokens,
            "reasoning": self.reasoning_tokens,
        }


@dataclass
class DailySeries:
    """Spend per local day, split by one dimension (stacked chart)."""

    days: list[date]
    series: dict[str, list[int]] = field(default_factory=dict)  # key -> cost nanos per day
    requests: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    unpriced: list[int] = field(default_factory=list)  # requests without a price, per day

    def cost_per_request(self, i: int) -> int | None:
        """Nanos per priced request on day `i` (unpriced requests have no cost to share)."""
        priced = self.requests[i] - self.unpriced[i]
        return self.totals[i] // priced if priced > 0 else None


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles in ms; `ttft`: time to first token's (p50, p95, p99), None where no call said."""

    model: str
    count: int
    p50: float
    p95: float
    p99: float
    ttft: tuple[float, float, float] | None = None


def _raw_clauses(f: Filters, *, dims: bool = True) -> tuple[list[str], list[Any]]:
    """WHERE clauses over the event table (alias `e`) for a filter set.

    A model filter (the model and its dated snapshots: 3 patterns) picks the matching names
    from the `name` dictionary first, where the event view's `model` comes from: PostgreSQL
    looked each event's name up once per pattern, and the events of a rare model took 254 ms at
    10M events (bench/team.py; 95 → 37 ms at 1M)."""
    clauses, args = ["1"], []
    if f.start_us is not None:
        clauses.append("e.ts >= ?")
        args.append(f.start_us)
    if f.end_us is not None:
        clauses.append("e.ts < ?")
        args.append(f.end_us)
    if dims:
        for dim, values in f._dims().items():
            if dim == "model":  # the names matched once, not each event's name per alias pattern
                named, dim_args = _dim_clause("text", dim, values)
                clause = f"e.model IN (SELECT text FROM name WHERE {named})"
            else:
                clause, dim_args = _dim_clause(f"e.{dim}", dim, values)
            clauses.append(clause)
            args.extend(dim_args)
    for key, value in f.tags:
        clauses.append("EXISTS (SELECT 1 FROM event_tag t WHERE t.event = e.id AND t.key = ? AND t.value = ?)")
        args.extend((key, value))
    return clauses, args


def _dim_clause(column: str, dim: str, values: tuple[str, ...]) -> tuple[str, list[Any]]:
    """`column` is one of `values`; a model alias also selects its dated snapshots."""
    if dim == "model":
        return model_clause(column, values)
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


class Queries:
    """Aggregations over one database connection (use one instance per thread)."""

    def __init__(self, conn: sqlite3.Connection, tz: tzinfo | None = None):
        self.conn = conn
        self.tz = tz

    # --- the shared SQL builder ------------------------------------------------------------

    def _source(self, f: Filters, group: tuple[str, ...] = (), cuts: list[int] | None = None,
                grain: int | None = None, tag_key: str | None = None) -> tuple[str, list[Any]]:
        """A subquery of rows (`bucket`, *group, *SUMS) whose sums are exactly those of the events
        `f` selects, with `bucket` (15-minute units) as fine as the caller needs: no row spans a
        point of `cuts` (local day edges) or a multiple of `grain` µs. `tag_key`: `group` holds
        `value`, that tag's value (events without the tag are left out)."""
        levels, keyed, key_args = _levels_for(f, group, tag_key)
        levels = tuple(lv for lv in levels if grain is None or grain % lv.unit_us == 0)
        parts, raw = _cover(f.start_us, f.end_us, cuts or [], levels)
        dims_sql, dims_args = [], []
        for dim, values in f._dims().items():
            clause, dim_args = _dim_clause(dim, dim, values)
            dims_sql.append(clause)
            dims_args.extend(dim_args)
        arms: list[str] = []
        params: list[Any] = []
        group = tuple(g for g in group if g != "bucket")  # every arm's first column
        for level, runs in parts:
            ranges, where = _ranges_sql(level.time, runs)
            cols = "".join(f", {g}" for g in group)
            arms.append(f"SELECT {level.time} * {level.unit_us // BUCKET_US} AS bucket{cols}, {', '.join(SUMS)}"
                        f" FROM {ranges}{level.table} WHERE {' AND '.join([where, *keyed, *dims_sql])}")
            params += key_args + dims_args
        if raw:
            ranges, where = _ranges_sql("e.ts", raw)
            clauses, args = _raw_clauses(f.between(None, None))
            join = ""
            if tag_key is not None:
                join = " JOIN event_tag t ON t.event = e.id AND t.key = ?"
                args = [tag_key, *args]
            cols = "".join(f", {'t' if g == 'value' else 'e'}.{g} AS {g}" for g in group)
            arms.append(f"SELECT e.ts / {BUCKET_US} AS bucket{cols}, {_RAW_SUMS}"
                        f" FROM {ranges}event e{join} WHERE {' AND '.join([where, *clauses])}")
            params += args
        if not arms:  # an empty range
            arms.append(f"SELECT 0 AS bucket{''.join(f', NULL AS {g}' for g in group)}, "
                        + ", ".join(f"0 AS {s}" for s in SUMS) + " WHERE 0")
        return "(" + " UNION ALL ".join(arms) + ") AS src", params

    def _grouped(self, f: Filters, group: tuple[str, ...], grain: int | None = None) -> list[tuple[Any, ...]]:
        source, params = self._source(f, group, grain=grain)
        cols = ", ".join(group)
        sql = f"SELECT {cols + ', ' if cols else ''}{{sums}} FROM {source}"
        if group:
            sql += f" GROUP BY {cols}"
        return self._summed(sql, params, len(group))

    def _summed(self, sql: str, params: list[Any], keys: int) -> list[tuple[Any, ...]]:
        """Rows of `sql` (`keys` group columns, then `{sums}`: every SUMS column summed), exact
        past 2^63."""
        try:
            return self.conn.execute(sql.replace("{sums}", _PLAIN_SUMS), params).fetchall()
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
        return [_unsplit(row, keys) for row in self.conn.execute(sql.replace("{sums}", _WIDE_SUMS), params)]

    # --- views ------------------------------------------------------------------------------

    def totals(self, f: Filters = Filters()) -> Totals:
        return Totals.from_row(self._grouped(f, ())[0])

    def by(self, dimension: str, f: Filters = Filters()) -> list[tuple[str, Totals]]:
        """Totals per value of a dimension (or `tag:KEY`), most expensive first."""
        if dimension.startswith("tag:"):
            return self._by_tag(dimension[4:], f)
        if dimension not in GROUPABLE:
            raise ValueError(f"cannot group by {dimension!r}; choose one of {', '.join(GROUPABLE)} or tag:KEY")
        merged: dict[str, Totals] = {}
        for r in self._grouped(f, (dimension,)):  # a snapshot counts under its alias (`model_names`)
            key = alias_of(r[0]) if dimension == "model" and r[0] else r[0]
            merged.setdefault(key, Totals()).add(Totals.from_row(r[1:]))
        rows = list(merged.items())
        rows.sort(key=lambda kv: (-kv[1].cost_nanos, -kv[1].requests, kv[0]))
        return rows

    def _by_tag(self, key: str, f: Filters) -> list[tuple[str, Totals]]:
        """Per tag value; untagged events are grouped under '' (all events less the tagged ones:
        an event has at most one value per key)."""
        source, params = self._source(f, ("value",), tag_key=key)
        rows = self._summed(f"SELECT value, {{sums}} FROM {source} GROUP BY value", params, 1)
        out = [(r[0], Totals.from_row(r[1:])) for r in rows]
        untagged = self.totals(f)
        for _, t in out:
            for name in SUMS:
                setattr(untagged, name, getattr(untagged, name) - getattr(t, name))
        if untagged.events:
            out.append(("", untagged))
        out.sort(key=lambda kv: (-kv[1].cost_nanos, -kv[1].requests, kv[0]))
        return out

    def by_provider_model(self, f: Filters = Filters()) -> list[tuple[str, str, Totals]]:
        """Totals per (provider, model), most expensive first: one query serves the by-model
        chart, the unpriced warning and cache savings (which must price each model)."""
        rows = [(p, m, Totals.from_row(r)) for p, m, *r in self._grouped(f, ("provider", "model"))]
        rows.sort(key=lambda r: (-r[2].cost_nanos, -r[2].requests, r[0], r[1]))
        return rows

    def tag_values(self, f: Filters = Filters()) -> list[tuple[str, str]]:
        """(key, value) tag pairs seen in `f`'s time range, for the tag filter picker: whole UTC
        days from `rollup_tag_day`, whole buckets at the edges (a picker may offer a little
        more, never less)."""
        start = None if f.start_us is None else f.start_us - f.start_us % BUCKET_US
        end = None if f.end_us is None else -(-f.end_us // BUCKET_US) * BUCKET_US
        selects = []
        for level, runs in _cover(start, end, [], _TAG_PAIR_LEVELS)[0]:
            ranges, where = _ranges_sql(level.time, runs)
            selects.append(f"SELECT DISTINCT key, value FROM {ranges}{level.table} WHERE {where}")
        if not selects:
            return []
        return [(k, v) for k, v in self.conn.execute(" UNION ".join(selects) + " ORDER BY 1, 2")]

    def values_seen(self, dims: tuple[str, ...], f: Filters = Filters()) -> dict[str, list[str]]:
        """The values of several dimensions under `f`, from one scan instead of one per
        dimension (the dashboard's filter pickers)."""
        for dim in dims:
            if dim not in GROUPABLE:
                raise ValueError(f"unknown dimension {dim!r}")
        source, params = self._source(f, dims)
        seen: dict[str, set[str]] = {d: set() for d in dims}
        for row in self.conn.execute(f"SELECT DISTINCT {', '.join(dims)} FROM {source}", params):
            for dim, value in zip(dims, row):
                if value:
                    seen[dim].add(alias_of(value) if dim == "model" else value)
        return {d: sorted(v) for d, v in seen.items()}

    def tag_keys(self, f: Filters = Filters()) -> list[str]:
        return [k for (k,) in self.conn.execute("SELECT DISTINCT key FROM rollup_tag_day ORDER BY key")]

    def distinct(self, dimension: str) -> list[str]:
        """Values seen for a dimension, for filter pickers and budget scopes."""
        if dimension not in GROUPABLE:
            raise ValueError(f"unknown dimension {dimension!r}")
        table = "rollup_day" if dimension in ROLLUP_DIMENSIONS else ROLLUP_USER_TOTAL_DAY.table
        values = [v for (v,) in self.conn.execute(f"SELECT DISTINCT {dimension} FROM {table} ORDER BY 1") if v]
        return sorted({alias_of(v) for v in values}) if dimension == "model" else values

    def daily(self, f: Filters, first: date, last: date, split: str = "model", top: int = 8) -> DailySeries:
        """Cost per local day from `first` to `last` (inclusive), stacked by `split`; series
        beyond the `top` most expensive are summed as "other" so the chart stays readable.

        Days are formed in SQL (`_day_index`), so 90 days x a dozen models come back as ~1,000
        rows instead of one row per 15-minute bucket and model."""
        edges = periods.day_edges_us(first, last, self.tz)
        f = f.between(max(edges[0], f.start_us or edges[0]), min(edges[-1], f.end_us or edges[-1]))
        ndays = len(edges) - 1
        out = DailySeries([first + timedelta(days=i) for i in range(ndays)])
        out.requests, out.totals, out.unpriced = [0] * ndays, [0] * ndays, [0] * ndays
        per_key: dict[str, list[int]] = {}
        first_seen: dict[str, int] = {}
        source, params = self._source(f, ("bucket", split), cuts=edges)
        day = _day_index([e // BUCKET_US for e in edges])
        rows = self.conn.execute(
            f"SELECT {day} AS day, {split}, sum(cost_nanos), sum(requests), sum(unpriced)"
            f" FROM {source} GROUP BY 1, 2",
            params,
        )
        for i, key, cost, requests, unpriced in rows:
            if split == "model" and key:
                key = alias_of(key)
            per_key.setdefault(key, [0] * ndays)[i] += cost
            first_seen[key] = min(i, first_seen.get(key, i))
            out.requests[i] += requests
            out.totals[i] += cost
            out.unpriced[i] += unpriced
        # most expensive first; ties by the day each key first appears (not finer: rollups may be whole days)
        ranked = sorted(per_key, key=lambda k: (-sum(per_key[k]), first_seen[k], k))
        for key in ranked[:top]:
            out.series[key or "(none)"] = per_key[key]
        if len(ranked) > top:
            other = [0] * ndays
            for key in ranked[top:]:
                other = [a + b for a, b in zip(other, per_key[key])]
            out.series["other"] = other
        return out

    def token_breakdown(self, f: Filters = Filters()) -> dict[str, int]:
        return self.totals(f).token_breakdown()

    def per_utc_day(self, f: Filters, group: tuple[str, ...]) -> list[tuple[date, tuple[Any, ...], Totals]]:
        """Totals per UTC day (whatever the display zone) and `group`: providers bucket their bills
        by UTC day, so reconciling against a bill must too (`billing.reconcile`)."""
        for dim in group:
            if dim not in GROUPABLE:
                raise ValueError(f"unknown dimension {dim!r}")
        source, params = self._source(f, ("bucket", *group), grain=DAY_US)
        cols = ", ".join(group)
        sql = (f"SELECT bucket / {DAY_US // BUCKET_US} AS day, {cols}, {', '.join(f'sum({s})' for s in SUMS)}"
               f" FROM {source} GROUP BY day, {cols}")
        epoch = date(1970, 1, 1)
        return [(epoch + timedelta(days=row[0]), tuple(row[1:1 + len(group)]), Totals.from_row(row[1 + len(group):]))
                for row in self.conn.execute(sql, params)]

    def per_bucket(self, f: Filters, bucket_us: int) -> list[tuple[int, Totals]]:
        """Totals per fixed-width time bucket (a multiple of 15 min), for time-series charts."""
        if bucket_us % BUCKET_US:
            raise ValueError("bucket width must be a multiple of 15 minutes")
        factor = bucket_us // BUCKET_US
        merged: dict[int, Totals] = {}
        for row in self._grouped(f, ("bucket",), grain=bucket_us):
            start = (row[0] // factor) * bucket_us
            merged.setdefault(start, Totals()).add(Totals.from_row(row[1:]))
        return sorted(merged.items())

    def per_minute(self, start_us: int, end_us: int, f: Filters = Filters()) -> list[tuple[int, int, int]]:
        """(minute start µs, cost nanos, requests) from the event table, for the live view."""
        clauses, args = _raw_clauses(f.between(start_us, end_us))
        rows = self.conn.execute(
            "SELECT e.ts / 60000000 * 60000000, sum(coalesce(e.cost_nanos, 0)), sum(e.requests)"
            f" FROM event e WHERE {' AND '.join(clauses)} GROUP BY 1 ORDER BY 1",
            args,
        ).fetchall()
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    def latency(self, f: Filters = Filters(), limit_models: int = 12) -> list[LatencyStats]:
        """p50/p95/p99 of latency, and of time to first token where calls report it, per model
        (an alias with its snapshots), over every successful call under `f`: nearest-rank, within
        `sketch.ALPHA` of the exact value. Bins come from the latency sketches for whole days and
        hours under the filters they key (provider, model, feature, source, one tag), and from
        the events' own bins for the rest (a range's edges, a day a delete made stale, other
        filters)."""
        bins: dict[int, dict[str, Counter[int]]] = {latency.LATENCY: defaultdict(Counter), latency.TTFT: defaultdict(Counter)}
        for model, kind, counts in self._latency_bins(f):
            bins[kind][alias_of(model)].update(counts)
        out = []
        for model, counts in bins[latency.LATENCY].items():
            ttft = sketch.percentiles(bins[latency.TTFT].get(model, {}), (50, 95, 99))
            out.append(LatencyStats(model, sum(counts.values()), *sketch.percentiles(counts, (50, 95, 99)),
                                    ttft=tuple(ttft) if ttft else None))
        out.sort(key=lambda s: (-s.count, s.model))  # most-called first; ties by name, not by scan order
        return out[:limit_models]

    def _latency_bins(self, f: Filters) -> Iterator[tuple[str, int, Counter[int]]]:
        """(model, kind, calls per bin) pieces whose sum is the successful calls of `f`."""
        if f.status and "ok" not in f.status:
            return
        todo = [(-_OPEN if f.start_us is None else f.start_us, _OPEN if f.end_us is None else f.end_us)]
        raw: list[tuple[int, int]] = todo
        if not (f.user or f.project or f.env or len(f.tags) > 1):
            tag = latency.EVERY_CALL
            if f.tags:
                row = self.conn.execute("SELECT id FROM tag WHERE key = ? AND value = ?", f.tags[0]).fetchone()
                if row is None:
                    return  # a tag no event has
                tag = row[0]
            clauses, params = [], []
            for dim in ("provider", "model", "feature", "source"):
                values = getattr(f, dim)
                if values:
                    named, args = _dim_clause("text", dim, values)
                    clauses.append(f"{dim} IN (SELECT id FROM name WHERE {named})")
                    params += args
            fresh, raw = _split_days(todo, latency.stale_days(self.conn))  # a stale day's bins: from its events
            for lo, hi in fresh:
                parts, rest = _cover(lo, hi, [], _LATENCY_UNITS)
                raw += rest
                for level, runs in parts:
                    unit = latency.DAY if level.unit_us == DAY_US else latency.HOUR
                    summed = latency.summed(self.conn, tag, unit, runs, clauses, params)
                    names = dict(self.conn.execute(
                        f"SELECT id, text FROM name WHERE id IN ({', '.join(str(m) for m, _ in summed)})")) if summed else {}
                    for (model, kind), counts in summed.items():
                        yield names[model], kind, counts
        clauses, args = _raw_clauses(replace(f, status=()).between(None, None))
        for lo, hi in raw:
            for kind, column in ((latency.LATENCY, "e.lat_bin"), (latency.TTFT, "e.ttft_bin")):
                per_model: dict[str, Counter[int]] = defaultdict(Counter)
                for model, bin_, calls in self.conn.execute(
                        f"SELECT e.model, {column}, count(*) FROM event e WHERE e.ts >= ? AND e.ts < ?"
                        f" AND {' AND '.join(clauses)} AND e.status = 'ok' AND {column} IS NOT NULL GROUP BY 1, 2",
                        [lo, hi, *args]):
                    per_model[model][bin_] += calls
                for model, counts in per_model.items():
                    yield model, kind, counts

    def unpriced_models(self, f: Filters = Filters()) -> list[tuple[str, str, int]]:
        """(provider, model, requests) that have no price: shown as a warning, never as $0."""
        rows = self._grouped(f, ("provider", "model"))
        return sorted(((p, m, int(r[-1])) for p, m, *r in rows if r[-1]), key=lambda x: -x[2])

    def usage_missing(self, f: Filters = Filters()) -> list[tuple[str, str, int]]:
        """(provider, model, requests) unpriced because the provider reported no usage (an OpenAI
        stream without `include_usage`): part of `unpriced`, named apart so the warning says why.

        The tags are looked up first: most databases have none, and then no event is read.
        PostgreSQL can't know a tag is absent from the join's estimate, and hashed every link of
        the filter's tag (`plan=pro`: 450 ms at 1M events, bench/team.py) to find none."""
        marks = ",".join("?" * len(NO_USAGE))
        tags = [t for (t,) in self.conn.execute(f"SELECT id FROM tag WHERE key = ? AND value IN ({marks})",
                                                [USAGE_TAG, *NO_USAGE])]
        if not tags:
            return []
        clauses, args = _raw_clauses(f)
        rows = self.conn.execute(
            f"SELECT e.provider, e.model, sum(e.requests) FROM event e WHERE {' AND '.join(clauses)}"
            # from the (few) tagged calls, not through every call of the range
            f" AND e.cost_nanos IS NULL AND e.id IN (SELECT l.event FROM event_tag_link l"
            f" WHERE l.tag IN ({','.join('?' * len(tags))})) GROUP BY e.provider, e.model",
            [*args, *tags]).fetchall()
        return sorted(((p, m, int(n)) for p, m, n in rows), key=lambda x: (-x[2], x[0], x[1]))

    def recent(self, limit: int = 100, offset: int = 0, f: Filters = Filters()) -> list[dict[str, Any]]:
        clauses, args = _raw_clauses(f)
        cur = self.conn.execute(
            f"SELECT * FROM event e WHERE {' AND '.join(clauses)} ORDER BY e.ts DESC, e.id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def events_page(self, f: Filters = Filters(), order: str = "ts", descending: bool = True,
                    after: tuple[Any, int] | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """One page of stored events sorted by `order` (ties by id), continuing after the
        (value, id) key of the previous page's last row. Keyset paging costs the same on page
        10,000 as on page 1, where OFFSET would walk every skipped row."""
        if order not in PAGE_ORDERS:
            raise ValueError(f"cannot sort events by {order!r}; choose one of {', '.join(PAGE_ORDERS)}")
        clauses, args = _raw_clauses(f)
        col = f"coalesce(e.{order}, -1)" if order in ("cost_nanos", "latency_ms", "ttft_ms") else f"e.{order}"
        if after is not None:
            clauses.append(f"({col}, e.id) {'<' if descending else '>'} (?, ?)")
            args.extend(after)
        direction = "DESC" if descending else "ASC"
        cur = self.conn.execute(
            f"SELECT e.*, {col} AS sort_key FROM event e WHERE {' AND '.join(clauses)}"
            f" ORDER BY {col} {direction}, e.id {direction} LIMIT ?",
            [*args, limit],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    # --- periods ----------------------------------------------------------------------------

    def spend_in_period(self, period: str, f: Filters = Filters(), now: datetime | None = None,
                        week_start: int = 0) -> tuple[Totals, int, int]:
        """Totals of the current local `period` (day/week/month) with its UTC bounds."""
        start, end = periods.period_bounds_us(period, periods.today(self.tz, now), self.tz, week_start)
        return self.totals(f.between(start, None)), start, end

    def projection(self, period: str, f: Filters = Filters(), now: datetime | None = None,
                   week_start: int = 0) -> int:
        """Projected spend at the end of the current period, in nanos.

        Pace is the spend rate over the last 7 days (or since the period began, if longer), so a
        quiet first morning of the month doesn't project zero, and one burst doesn't project a
        fortune from a few elapsed hours.
        """
        return self.spend_and_projection(period, f, now, week_start)[1]

    def spend_and_projection(self, period: str, f: Filters = Filters(), now: datetime | None = None,
                             week_start: int = 0) -> tuple[Totals, int]:
        """`spend_in_period` totals and `projection` together: once the period is over a week
        old the pace window *is* the period, so one scan serves both."""
        now = now or datetime.now(UTC)
        spent, start, end = self.spend_in_period(period, f, now, week_start)
        now_us = int(now.timestamp() * 1_000_000)
        window_start = min(start, now_us - 7 * 86_400_000_000)
        window_start -= window_start % BUCKET_US
        rate_spend = spent.cost_nanos if window_start == start else self.totals(f.between(window_start, None)).cost_nanos
        elapsed = max(now_us - window_start, 3_600_000_000)
        remaining = max(end - now_us, 0)
        return spent, spent.cost_nanos + rate_spend * remaining // elapsed


def _levels_for(f: Filters, group: tuple[str, ...],
                tag_key: str | None) -> tuple[tuple[Level, ...], list[str], list[Any]]:
    """The rollup family that keys everything `f` and `group` need (with the clauses that pick
    its rows), or none: the event table then answers alone (two tags at once, or a tag with
    end users and another dimension)."""
    by_user = bool(f.user) or "user" in group
    if len(f.tags) > 1 or (tag_key is not None and f.tags):
        return (), [], []
    if tag_key is not None:
        clauses, args = ["key = ?"], [tag_key]
    elif f.tags:
        clauses, args = ["key = ?", "value = ?"], list(f.tags[0])
    elif not by_user:
        return PLAIN_LEVELS, [], []
    else:
        return (USER_TOTAL_LEVELS if _only_user(f, group) else USER_LEVELS), [], []
    if not by_user:
        return TAG_LEVELS, clauses, args
    return (TAG_USER_LEVELS, clauses, args) if _only_user(f, group) else ((), [], [])


def _only_user(f: Filters, group: tuple[str, ...]) -> bool:
    """Whether `f` and `group` need no dimension but the end user (levels keyed by user alone)."""
    return set(f._dims()) <= {"user"} and set(group) <= {"user", "bucket", "value"}


def _cover(start: int | None, end: int | None, cuts: list[int],
           levels: tuple[Level, ...]) -> tuple[list[tuple[Level, list[tuple[int, int]]]], list[tuple[int, int]]]:
    """Split `[start, end)` into runs of whole units of each level (coarsest first) and the µs
    ranges left over for the event table. A unit that a cut falls strictly inside is left to
    finer levels, so every row read lies within one of the caller's groups (local days)."""
    todo = [(-_OPEN if start is None else start, _OPEN if end is None else end)]
    parts: list[tuple[Level, list[tuple[int, int]]]] = []
    for level in levels:
        unit = level.unit_us
        runs: list[tuple[int, int]] = []
        rest: list[tuple[int, int]] = []
        for a, b in todo:
            lo, hi = -(-a // unit), b // unit
            if lo >= hi:
                rest.append((a, b))
                continue
            if a < lo * unit:
                rest.append((a, lo * unit))
            pos = lo
            for u in sorted({c // unit for c in cuts if lo * unit < c < hi * unit and c % unit}):
                if pos < u:
                    runs.append((pos, u))
                rest.append((u * unit, (u + 1) * unit))
                pos = u + 1
            if pos < hi:
                runs.append((pos, hi))
            if hi * unit < b:
                rest.append((hi * unit, b))
        if runs:
            parts.append((level, runs))
        todo = rest
    raw: list[tuple[int, int]] = []
    for a, b in sorted(todo):
        if a >= b:
            continue
        if raw and raw[-1][1] == a:
            raw[-1] = (raw[-1][0], b)
        else:
            raw.append((a, b))
    return parts, raw


def _split_days(ranges: list[tuple[int, int]], days: set[int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """`ranges` (half-open µs) split into the parts outside the UTC `days` and those inside."""
    outside, inside = [], []
    for lo, hi in ranges:
        for day in sorted(d for d in days if d * DAY_US < hi and (d + 1) * DAY_US > lo):
            if lo < day * DAY_US:
                outside.append((lo, day * DAY_US))
            inside.append((max(lo, day * DAY_US), min(hi, (day + 1) * DAY_US)))
            lo = (day + 1) * DAY_US
        if lo < hi:
            outside.append((lo, hi))
    return outside, inside


def _ranges_sql(col: str, runs: list[tuple[int, int]]) -> tuple[str, str]:
    """(FROM prefix, WHERE clause) selecting `col` in any of `runs` (half-open): one range as a
    plain index range; several through a small table of bounds joined first (CROSS JOIN keeps
    SQLite's loop order), so each is an index range too. The bounds are integers we computed."""
    if len(runs) == 1:
        lo, hi = runs[0]
        return "", f"{col} >= {lo} AND {col} < {hi}"
    bounds = ", ".join(f"({lo}, {hi})" for lo, hi in runs)
    return f"(VALUES {bounds}) AS r CROSS JOIN ", f"{col} >= r.column1 AND {col} < r.column2"


def _day_index(bucket_edges: list[int]) -> str:
    """SQL for the local-day number of a row's `bucket`, given the buckets where days begin.

    Days are 96 buckets long except the days of a DST change (92 or 100), so consecutive
    ordinary days form a run where the day is plain arithmetic, and each DST day is a constant.
    The edges are integers we computed, never user input, so they are inlined."""
    parts: list[tuple[int, str]] = []  # (first bucket after the part, day expression)
    run: tuple[int, int] | None = None  # (first day, its first bucket) of the current run of 96s
    for i, (lo, hi) in enumerate(zip(bucket_edges, bucket_edges[1:])):
        if hi - lo == 96:
            run = run or (i, lo)
            expr = f"{run[0]} + (bucket - {run[1]}) / 96"
            if parts and run[0] < i:
                parts[-1] = (hi, expr)
                continue
            parts.append((hi, expr))
        else:
            run = None
            parts.append((hi, str(i)))
    if len(parts) == 1:
        return f"({parts[0][1]})"
    cases = " ".join(f"WHEN bucket < {end} THEN {expr}" for end, expr in parts[:-1])
    return f"(CASE {cases} ELSE {parts[-1][1]} END)"
