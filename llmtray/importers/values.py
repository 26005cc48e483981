"""Cell values as exports really write them: floats for integers (`31422.0`), thousands
separators, `False`/`FALSE`, timestamps with and without offsets, Unix seconds; and the
deterministic row ids that make a second import of the same rows add nothing.

Every parser raises `RowProblem` naming the column and quoting the bad text, so a row error
tells the user exactly what to fix.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from llmtray.core.events import format_ts
from llmtray.importers.base import RowProblem

_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_PLAIN_DECIMAL_RE = re.compile(r"^\d+(\.\d+)?$")
_UNIX_RE = re.compile(r"^\d{9,11}(\.\d*)?$")
_TRUE = frozenset(("true", "1", "yes", "y", "t"))
_FALSE = frozenset(("false", "0", "no", "n", "f", ""))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400_000_000


def _clean_number(text: str) -> str:
    text = text.strip()
    if "," in text and _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    return text


def whole(text: str | None, column: str) -> int:
    """A token or request count: `12`, `12.0`, `1,234`; empty means 0."""
    if text is None:
        return 0
    text = text.strip()
    if not text:
        return 0
    if text.isdecimal():  # not isdigit(): '²' is a digit int() refuses
        return int(text)
    cleaned = _clean_number(text)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise RowProblem(f"{column}: not a number: {text[:40]!r}") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise RowProblem(f"{column}: not a whole number: {text[:40]!r}")
    if value < 0:
        raise RowProblem(f"{column}: must not be negative: {text[:40]!r}")
    return int(value)


def money(text: str | None, column: str, *, cents: bool = False) -> str | None:
    """A dollar amount as an exact decimal string (`$1,234.50` → `1234.50`); None when empty.
    `cents=True` divides by 100 exactly (Anthropic's cost report is in cents)."""
    if text is None:
        return None
    raw = text.strip()
    if not raw:
        return None
    if not cents and _PLAIN_DECIMAL_RE.match(raw):  # the common case, already exact text
        return "0" if raw.strip("0.") == "" else raw
    cleaned = _clean_number(raw.lstrip("$").strip())
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise RowProblem(f"{column}: not an amount: {raw[:40]!r}") from None
    if not value.is_finite():
        raise RowProblem(f"{column}: not a finite amount: {raw[:40]!r}")
    if value.is_zero():
        return "0"  # `0E-6176` from the OpenAI Costs API
    if cents:
        value = value.scaleb(-2)
    return format(value, "f")


def decimal_number(text: str | None, column: str) -> float | None:
    """A measurement such as a latency in ms (`1234`, `1234.5`); empty means not given."""
    if text is None or not text.strip():
        return None
    try:
        value = float(_clean_number(text))
    except ValueError:
        raise RowProblem(f"{column}: not a number: {text[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise RowProblem(f"{column}: must be a finite number ≥ 0: {text[:40]!r}")
    return value


def boolean(text: str | None, column: str) -> bool | None:
    """`true`/`True`/`TRUE`/`1`/`yes` and their opposites; empty means not given."""
    if text is None:
        return None
    key = text.strip().lower()
    if not key:
        return None
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise RowProblem(f"{column}: expected true or false, got {text[:40]!r}")


def timestamp(text: str | None, column: str) -> str:
    """Any timestamp an export writes, as RFC 3339 UTC: Unix seconds (`1719532800.0`), ISO
    8601 with or without an offset (without one it is UTC, as every provider export is),
    `YYYY-MM-DD` dates, Postgres `+00` offsets, and a trailing ` UTC`."""
    raw = (text or "").strip()
    if not raw:
        raise RowProblem(f"{column}: missing timestamp")
    if raw[4:5] != "-" and _UNIX_RE.match(raw):
        return format_ts(unix_to_dt(raw, column))
    try:
        ts = datetime.fromisoformat(raw[:-4] if raw.endswith(" UTC") else raw)
    except ValueError:
        raise RowProblem(f"{column}: not a date or timestamp: {raw[:40]!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return format_ts(ts)


def unix_to_dt(text: str, column: str) -> datetime:
    """Unix seconds written as text, exactly (no float rounding of the fraction)."""
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        raise RowProblem(f"{column}: not Unix seconds: {text[:40]!r}") from None
    micros = int((seconds * 1_000_000).to_integral_value())
    return _EPOCH + timedelta(microseconds=micros)


# --- fast paths: one column of one file at a time ------------------------------------------
# An export writes a column the same way on every row, so the common spelling is converted
# here in a few hundred nanoseconds; any other spelling goes to the full parser above, which
# gives the same value or raises the same `RowProblem`. Tests compare the two on every case.

_UTC_ISO_RE = re.compile(r"(\d{4}-\d\d-\d\d)[T ]([01]\d|2[0-3])(:[0-5]\d:[0-5]\d)(?:\.(\d{1,6}))?(?:Z|\+00:00)?")
_DAYS: dict[str, bool] = {}  # `YYYY-MM-DD` → is a real date (a file spans few days)
_DAYS_MAX = 100_000


def whole_fast(cell: str, column: str) -> int:
    """`whole()` for a cell of plain digits; anything else through `whole()` itself."""
    return int(cell) if cell.isdecimal() else whole(cell, column)


_BOOLEANS: dict[str, bool | None] = {
    spelling: value for words, value in ((_TRUE, True), (_FALSE, False))
    for word in words for spelling in (word, word.upper(), word.capitalize())
}
_BOOLEANS[""] = None
_UNKNOWN = object()


def boolean_fast(cell: str, column: str) -> bool | None:
    """`boolean()` by one lookup for the usual spellings (`true`, `True`, `TRUE`, …)."""
    value = _BOOLEANS.get(cell, _UNKNOWN)
    return boolean(cell, column) if value is _UNKNOWN else value  # type: ignore[return-value]


def decimal_number_fast(cell: str, column: str) -> float | None:
    """`decimal_number()` for a cell of plain digits or empty."""
    if cell.isdecimal():
        return float(cell)
    return None if not cell else decimal_number(cell, column)


def timestamp_fast(cell: str, column: str) -> str:
    """`timestamp()` without building a datetime for UTC ISO 8601 (`2026-05-01 12:00:00.123`,
    `…T…Z`, `…+00:00`): the text is rearranged, the date checked once per day."""
    m = _UTC_ISO_RE.fullmatch(cell)
    if m is None:
        return timestamp(cell, column)
    day, hour, rest, fraction = m.groups()
    valid = _DAYS.get(day)
    if valid is None:
        try:
            date.fromisoformat(day)
            valid = True
        except ValueError:
            valid = False
        if len(_DAYS) >= _DAYS_MAX:
            _DAYS.clear()
        _DAYS[day] = valid
    if not valid:
        return timestamp(cell, column)  # raises, naming the column
    if fraction and fraction.strip("0"):
        return f"{day}T{hour}{rest}.{fraction:0<6}Z"
    return f"{day}T{hour}{rest}Z"


def utc_day(ts: str | int | float) -> int:
    """Days since the epoch (UTC) of an event's `ts` as importers write it."""
    if isinstance(ts, (int, float)):
        return int(ts // 86_400)
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (dt.astimezone(UTC) - _EPOCH).days


def text(value: str | None) -> str | None:
    """A cell as an optional string: surrounding spaces dropped, empty means absent."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def stable_id(fmt: str, *parts: object) -> str:
    """A deterministic event id from the format and the row's identifying fields: the same
    row imported twice (or from an overlapping date range) gets the same id and is skipped."""
    return key_id(fmt, "\x1f".join("" if p is None else str(p) for p in parts))


def key_id(fmt: str, key: str) -> str:
    """`stable_id` of an already joined key (a fast path joins the row's cells itself)."""
    return f"{fmt}:{hashlib.blake2b(key.encode('utf-8'), digest_size=16).hexdigest()}"
