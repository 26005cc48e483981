"""Remembered settled sums (`core.settled`) never change an answer: against plain `Queries`
under random inserts — live, backfilled, from another connection with no notice — and removed
imports, as time moves."""

from __future__ import annotations

import pytest

import tempfile
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtray.core.queries import Filters, Queries
from llmtray.core.settled import SettledQueries, SettledTotals, forget_all, settled_for
from llmtray.core.store import to_us
from tests.core.budget_kit import event, open_store, utc

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

NOW = utc("2026-03-18 15:07")
TZ = ZoneInfo("Asia/Kathmandu")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.sampled_from(["writer", "other", "import"]),
                  st.lists(st.tuples(st.one_of(st.integers(-6, 4),  # this bucket or the one before
                                               st.integers(-10 * 60, -15),  # earlier today: a backfill
                                               st.integers(-40 * 24 * 60, 0)),  # any day of the last 40
                                     st.integers(1, 10**6),
                                     st.booleans()), min_size=1, max_size=4)),
        st.tuples(st.just("tick"), st.integers(0, 20)),  # minutes pass
        st.tuples(st.just("check")),
        st.tuples(st.just("remove import")),
    ),
    max_size=25,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_settled_totals_equal_a_fresh_sum(steps):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmtray.db"
        writer, other = open_store(path), open_store(path)  # another connection: a CLI import
        settled = SettledTotals()
        now, datasets = NOW, []
        try:
            for step in steps:
                if step[0] == "insert":
                    store = writer if step[1] == "writer" else other
                    dataset = other.create_dataset("x.csv", "openai", None) if step[1] == "import" else None
                    store.add([event(now + timedelta(minutes=m), f"0.{n:09d}", tags={"team": "a"} if team else {})
                               for m, n, team in step[2]], "hook", dataset_id=dataset)
                    datasets += [dataset] if dataset else []
                elif step[0] == "remove import":
                    if datasets:
                        other.remove_dataset(datasets.pop(0))
                elif step[0] == "tick":
                    now += timedelta(minutes=step[1])
                else:  # every period and projection window, with and without a tag scope
                    plain = Queries(writer.conn, TZ)
                    cached = SettledQueries(plain, settled, to_us(now))
                    week_back = to_us(now - timedelta(days=7))
                    for f in (Filters(), Filters(tags=(("team", "a"),))):
                        window = f.between(week_back - week_back % (15 * 60_000_000), None)
                        assert cached.totals(window) == plain.totals(window)
                        for period in ("day", "week", "month"):
                            assert cached.spend_in_period(period, f, now) == plain.spend_in_period(period, f, now)
        finally:
            writer.close()
            other.close()


def test_an_import_removed_while_another_came_is_noticed(data_dir):
    """Hypothesis found it: import A, check, import B (no rows in settled buckets), remove A —
    the number of imports is unchanged, yet A's spend must leave the remembered sums."""
    store = open_store(data_dir / "llmtray.db")
    try:
        first = store.create_dataset("a.csv", "openai", None)
        store.add([event(NOW - timedelta(days=2), "5")], "import:openai", dataset_id=first)
        settled, plain = SettledTotals(), Queries(store.conn, TZ)
        f = Filters(start_us=to_us(NOW - timedelta(days=10)))
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 5_000_000_000
        store.create_dataset("b.csv", "openai", None)
        store.remove_dataset(first)
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 0
    finally:
        store.close()


def test_rows_after_a_removed_last_import_are_noticed(data_dir):
    """Hypothesis found it (a saved example): the newest rows are an import; it is checked, removed
    and checked; a backfilled row then came in — with the removed rows' id, so the watermark
    (`id > last seen`) never saw it. Event ids are never reused now."""
    store = open_store(data_dir / "llmtray.db")
    try:
        store.add([event(NOW - timedelta(days=3), "1")], "hook")
        dataset = store.create_dataset("a.csv", "openai", None)
        store.add([event(NOW - timedelta(days=2), "5")], "import:openai", dataset_id=dataset)
        settled, plain = SettledTotals(), Queries(store.conn, TZ)
        f = Filters(start_us=to_us(NOW - timedelta(days=10)))
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 6_000_000_000
        (removed_id,) = store.conn.execute("SELECT max(id) FROM event").fetchone()
        store.remove_dataset(dataset)
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 1_000_000_000
        store.add([event(NOW - timedelta(days=1), "2")], "hook")  # a settled bucket: no notice
        assert store.conn.execute("SELECT max(id) FROM event").fetchone()[0] > removed_id
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 3_000_000_000
    finally:
        store.close()


def test_a_removed_import_is_noticed_and_a_reprice_after_forget(data_dir):
    store = open_store(data_dir / "llmtray.db")
    try:
        dataset = store.create_dataset("march.csv", "openai", None)
        store.add([event(NOW - timedelta(days=2), "5")], "import:openai", dataset_id=dataset)
        store.add([event(NOW - timedelta(days=1), "1")], "hook")
        settled, plain = settled_for(store.conn), Queries(store.conn, TZ)
        f = Filters(start_us=to_us(NOW - timedelta(days=10)))
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 6_000_000_000
        store.remove_dataset(dataset)  # from the import dialog: no notice needed
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 1_000_000_000
        store.conn.execute("UPDATE event SET cost_nanos = 2000000000")  # what a reprice does
        forget_all()
        assert SettledQueries(plain, settled, to_us(NOW)).totals(f).cost_nanos == 2_000_000_000
        assert settled_for(Queries(store.conn, TZ).conn) is settled  # one per database file
    finally:
        store.close()
