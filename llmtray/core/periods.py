"""Calendar periods in the user's time zone, as UTC microsecond bounds for the store.

Events are stored in UTC; days, weeks and months are the user's local calendar (DESIGN §3).
`tz=None` means the system's local zone, resolved through the C library (DST-aware), so a
packaged app needs no tz database to get the user's own midnight right.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

PERIODS = ("day", "week", "month")


def midnight_us(day: date, tz: tzinfo | None) -> int:
    """UTC microseconds of local midnight starting `day` (first instant of the day in DST gaps)."""
    naive = datetime(day.year, day.month, day.day)
    if tz is None:
        return int(naive.timestamp()) * 1_000_000
    return int(naive.replace(tzinfo=tz).timestamp()) * 1_000_000


def local_date(us: int, tz: tzinfo | None) -> date:
    """The local calendar day of a UTC microsecond instant."""
    return datetime.fromtimestamp(us // 1_000_000, tz).date()


def today(tz: tzinfo | None, now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    return now.astimezone(tz).date() if tz is not None else now.astimezone().date()


def period_start(period: str, day: date, week_start: int = 0) -> date:
    """First day of the period containing `day`; `week_start` 0 = Monday … 6 = Sunday."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=(day.weekday() - week_start) % 7)
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


def period_end(period: str, start: date) -> date:
    """First day after the period that starts on `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


def period_bounds_us(period: str, day: date, tz: tzinfo | None, week_start: int = 0) -> tuple[int, int]:
    start = period_start(period, day, week_start)
    return midnight_us(start, tz), midnight_us(period_end(period, start), tz)


def day_edges_us(first: date, last: date, tz: tzinfo | None) -> list[int]:
    """Midnights from `first` to the day after `last`, for bucketing instants into local days."""
    days = (last - first).days + 1
    return [midnight_us(first + timedelta(days=i), tz) for i in range(days + 1)]
