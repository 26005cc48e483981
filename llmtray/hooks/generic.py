"""`record(...)`: one usage event from any client the hooks don't know, with the same delivery.

The event is validated here, on the caller's thread, so a mistake (an unknown field, a negative
count) is reported at once with the field named — as a warning, never an exception: the call
being recorded has already happened and must not fail because of its bookkeeping. The invalid
event is kept in the spool's dead-letter file, not lost.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from llmtray.core.events import event_errors, format_ts
from llmtray.hooks import sender
from llmtray.hooks.context import current

log = logging.getLogger("llmtray.hooks")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return format_ts(value)
    return value


def record(*, provider: str, model: str, **fields: Any) -> str | None:
    """Record one call: `lt.record(provider="mistral", model="mistral-large-latest",
    input_tokens=812, output_tokens=95, latency_ms=640, feature="search")`.

    Fields are those of the usage event (DESIGN §3); `id` and `ts` default to a new uuid and
    now; feature / user / project / env / tags default to the active `lt.tags(...)` (given
    tags are merged over them). Returns the event id, or None when the event is invalid (a
    warning names every bad field; the event goes to the dead-letter file)."""
    try:
        now = datetime.now(UTC)
        event: dict[str, Any] = {"id": str(uuid.uuid4()), "ts": format_ts(now)}
        attribution = current().as_fields()
        tags = {**attribution.pop("tags", {}), **{str(k): str(v) for k, v in (fields.pop("tags", None) or {}).items()}}
        event.update(attribution)
        event.update({"provider": provider, "model": model})
        event.update({k: _jsonable(v) for k, v in fields.items()})
        if tags:
            event["tags"] = tags
        _parsed, errors = event_errors(event, now=now)
        if errors:
            message = "; ".join(map(str, errors))
            log.warning("llmtray.hooks.record: invalid event (%s); kept in the dead-letter file", message)
            sender.submit(sender.DeadLetter({"error": message, "event": event}))
            return None
        sender.submit(event)
        return str(event["id"])
    except Exception:
        log.warning("llmtray.hooks.record: could not record the event", exc_info=True)
        return None
