"""Budget periods are the user's local calendar: property tests over many zones (DST both ways,
UTC+5:45, half-hour DST, DST at midnight), month ends and every week start."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtray.core.budgets import Budget, evaluate
from llmtray.core.queries import Queries
from llmtray.core.store import from_us, to_us
from tests.core.budget_kit import event, open_store

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

ZONES = (
    "UTC",
    "America/Los_Angeles",  # UTC−8, DST at 02:00
    "Asia/Tokyo",  # UTC+9, no DST
    "Asia/Kathmandu",  # UTC+5:45
    "Europe/Berlin",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # DST changes at midnight: some days start at 01:00
    "America/St_Johns",  # UTC−3:30 with DST
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Asia/Tehran",  # UTC+3:30 (DST until 2022)
)


def _transitions(zone: str) -> list[datetime]:
    """Instants (to the hour) where the zone's UTC offset changes, 2020–2030."""
    tz, out = ZoneInfo(zone), []
    t, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    while t < end:
        t += timedelta(days=1)
        off = t.astimezone(tz).utcoffset()
        if off != prev:
            hour = t - timedelta(days=1)
            while hour.astimezone(tz).utcoffset() == prev:
                hour += timedelta(hours=1)
            out.append(hour)
            prev = off
    return out


TRANSITIONS = {z: _transitions(z) for z in ZONES}


@st.composite
def instants(draw) -> tuple[str, datetime]:
    """A zone and an instant: anywhere 2000–2037, or within two days of one of its DST changes,
    or within a minute of a local midnight."""
    zone = draw(st.sampled_from(ZONES))
    kind = draw(st.sampled_from(["any", "dst", "midnight"]))
    if kind == "dst" and TRANSITIONS[zone]:
        base = draw(st.sampled_from(TRANSITIONS[zone]))
        return zone, base + timedelta(seconds=draw(st.integers(-2 * 86_400, 2 * 86_400)))
    t = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)))
    if kind == "midnight":
        local = t.astimezone(ZoneInfo(zone))
        midnight = datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(zone))
        t = midnight.astimezone(UTC) + timedelta(microseconds=draw(st.integers(-60_000_000, 60_000_000)))
    return zone, t


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    s = open_store(tmp_path_factory.mktemp("periods") / "llmtray.db")
    yield s
    s.close()


def _local_day(us: int, tz: ZoneInfo) -> date:
    return from_us(us).astimezone(tz).date()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=instants(), period=st.sampled_from(["day", "week", "month"]), week_start=st.integers(0, 6))
def test_the_current_period_is_the_local_calendar_period(empty_db, at, period, week_start):
    zone, now = at
    tz = ZoneInfo(zone)
    status = evaluate(Queries(empty_db.conn, tz), Budget("b", 1, period), now, week_start, project=False)
    start, end, now_us = status.start_us, status.end_us, to_us(now)
    assert start <= now_us < end
    # both bounds are the first instant of a local day (midnight, or the end of a DST gap)
    for bound in (start, end):
        assert _local_day(bound - 1, tz) < _local_day(bound, tz)
        assert from_us(bound).astimezone(tz).time() <= datetime.strptime("01:00", "%H:%M").time()
    first, last = _local_day(start, tz), _local_day(end - 1, tz)
    today = now.astimezone(tz).date()
    assert first <= today <= last
    if period == "day":
        assert first == last == today
    elif period == "week":
        assert first.weekday() == week_start and (last - first).days == 6
    else:
        assert first.day == 1 and (first.year, first.month) == (today.year, today.month)
        assert (last + timedelta(days=1)).day == 1
    # the next period starts exactly where this one ends: nothing falls between two periods
    after = evaluate(Queries(empty_db.conn, tz), Budget("b", 1, period), from_us(end), week_start, project=False)
    assert after.start_us == end


@pytest.mark.parametrize("zone, local_midnight", [
    ("America/Los_Angeles", "2026-03-01T00:00:00-08:00"),
    ("Asia/Tokyo", "2026-03-01T00:00:00+09:00"),
    ("Asia/Kathmandu", "2026-03-01T00:00:00+05:45"),
    ("Europe/Berlin", "2026-03-29T00:00:00+01:00"),  # the day clocks go forward
    ("Europe/Berlin", "2026-10-25T00:00:00+02:00"),  # the day clocks go back
    ("America/Santiago", "2026-09-06T01:00:00-03:00"),  # midnight doesn't exist that day
])
def test_an_event_just_after_local_midnight_counts_in_the_new_period_only(tmp_path, zone, local_midnight):
    tz = ZoneInfo(zone)
    midnight = datetime.fromisoformat(local_midnight)
    s = open_store(tmp_path / "llmtray.db")
    try:
        s.add([event(midnight - timedelta(seconds=1), "2"), event(midnight + timedelta(seconds=1), "3")], "api")
        queries = Queries(s.conn, tz)
        now = midnight + timedelta(minutes=10)
        day = evaluate(queries, Budget("d", 1, "day"), now, project=False)
        assert from_us(day.start_us) == midnight and day.spent_nanos == 3_000_000_000
        before = evaluate(queries, Budget("d", 1, "day"), midnight - timedelta(minutes=10), project=False)
        assert before.end_us == to_us(midnight)
        if midnight.astimezone(tz).day == 1:
            month = evaluate(queries, Budget("m", 1, "month"), now, project=False)
            assert month.spent_nanos == 3_000_000_000
    finally:
        s.close()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles", "Australia/Lord_Howe"])
def test_dst_days_are_shorter_or_longer_by_the_shift(empty_db, zone):
    tz = ZoneInfo(zone)
    lengths = set()
    for t in TRANSITIONS[zone][:4]:
        day = evaluate(Queries(empty_db.conn, tz), Budget("d", 1, "day"), t, project=False)
        lengths.add((day.end_us - day.start_us) / 3_600_000_000)
    shift = 0.5 if zone == "Australia/Lord_Howe" else 1
    assert lengths == {24 - shift, 24 + shift}


def test_month_ends_include_the_last_day_in_every_month_length(empty_db):
    tz = ZoneInfo("Asia/Kathmandu")
    lengths = []
    for month_start in ("2024-02-01", "2025-02-01", "2025-04-01", "2025-12-01"):
        now = datetime.fromisoformat(month_start + "T12:00:00+05:45")
        m = evaluate(Queries(empty_db.conn, tz), Budget("m", 1, "month"), now, project=False)
        lengths.append(round((m.end_us - m.start_us) / 86_400_000_000))
    assert lengths == [29, 28, 30, 31]
