"""Reading one field of a billing page, with the place named when it is not what the API
documents (`costs page 2, bucket 3, result 1: amount.value: …`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from llmtray.billing.errors import MalformedPage


def need(obj: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise MalformedPage(f"{where}: missing {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedPage(f"{where}: {name} should be {_kind(kind)}, got {value!r:.60}")
    return value


def count(obj: dict[str, Any], name: str, where: str) -> int:
    """A token or request count: absent or null is 0 (older bodies lack newer fields)."""
    value = obj.get(name)
    if value is None:
        return 0
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedPage(f"{where}: {name} should be a count ≥ 0, got {value!r:.60}")
    return value


def text(obj: dict[str, Any], name: str, where: str) -> str:
    """A dimension: null (not grouped, or the default workspace) is ''."""
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedPage(f"{where}: {name} should be text or null, got {value!r:.60}")
    return value


def utc_midnight(value: Any, name: str, where: str) -> date:
    """The UTC day a bucket starts, which must start at 00:00:00Z (BILLING §1.5: we always ask
    for whole days, so a ragged bucket means the page is not for what we asked)."""
    if isinstance(value, int) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MalformedPage(f"{where}: {name} is not a time: {value!r:.60}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    else:
        raise MalformedPage(f"{where}: {name} should be a time, got {value!r:.60}")
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        raise MalformedPage(f"{where}: {name} {value!r} is not 00:00:00 UTC (a bucket must be a whole UTC day)")
    return moment.date()


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {list: "a list", dict: "an object", str: "text", int: "an integer", bool: "true/false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
