"""The ingest API without HTTP (STYLE practice 6): decode, validate, submit, answer.

The server only parses HTTP and calls these; unit tests and the metering proxy can call them
directly. Every refusal is an `HttpError` carrying the status DESIGN §5 names and a message that
says what and where, so a client can fix its batch in one round trip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from llmtray.core import db as dbmod
from llmtray.core.dburl import PostgresUrl
from llmtray import __version__
from llmtray.config import Config
from llmtray.core.blocks import BlockBook
from llmtray.core.budgets import PERIOD_PHRASE, evaluate, exhausted_enforced_budget
from llmtray.core.errors import EventValidationError
from llmtray.core.events import UsageEvent, parse_batch
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import Queries
from llmtray.core.status import BudgetEntries, summary
from llmtray.core.store import AddResult
from llmtray.ingest.reply import HttpError, Reply
from llmtray.ingest.writer import BacklogFull, StoreFailed, SumsOverflow, Writer, WriterStopped

MAX_EVENTS = 10_000
MAX_INT_DIGITS = 20  # every valid integer fits in 64 bits; longer ones are refused before Python converts them
SOURCE_HEADER = "x-llmtray-source"
CLIENT_SOURCES = ("api", "hook", "otel")  # "proxy" and "import:*" are set by llmtray itself
RETRY_AFTER_S = 1


@dataclass
class Activity:
    """Counters since start, for the once-a-minute log line of `llmtray serve`."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # 4xx answers to POST /v1/events
    failed: int = 0  # 5xx answers to POST /v1/events


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer {text[:24]}… ({len(text)} digits) is out of range")
    return int(text)


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no numbers outside 64-bit/double range."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise HttpError(400, "invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise HttpError(400, f"invalid JSON: {exc}") from None


def event_items(data: Any) -> list[Any]:
    """The three accepted shapes: one event, an array, or `{"events": [...]}`."""
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and "events" in data:
        extra = sorted(k for k in data if k != "events")
        if extra:
            raise HttpError(400, f"unknown key {extra[0]!r} next to 'events'",
                            [{"field": extra[0], "message": "only 'events' is allowed in a batch object"}])
        items = data["events"]
        if not isinstance(items, list):
            raise HttpError(400, "'events' must be an array of events",
                            [{"field": "events", "message": "must be an array"}])
    elif isinstance(data, dict):
        items = [data]
    else:
        raise HttpError(400, "expected an event object, an array of events or {\"events\": [...]}")
    if len(items) > MAX_EVENTS:
        raise HttpError(400, f"too many events in one request: {len(items)}; the limit is {MAX_EVENTS}, "
                             "split the batch")
    return items


def decode_events(body: bytes) -> list[UsageEvent]:
    """Validated events from a request body, or `HttpError(400)` listing every problem (atomic:
    one bad event rejects the batch)."""
    items = event_items(decode_json(body))
    try:
        return parse_batch(items)
    except EventValidationError as exc:
        errors = [{"index": e.index if e.index is not None else 0, "field": e.field, "message": e.message}
                  for e in exc.errors]
        count = len({e["index"] for e in errors})
        raise HttpError(400, f"{count} of {len(items)} event(s) invalid, nothing stored: {exc.errors[0]}",
                        errors) from None


def check_content_type(value: str | None) -> None:
    """415 unless the body is declared as JSON (UTF-8, the only charset JSON has)."""
    if value is None:
        raise HttpError(415, "missing Content-Type: send 'Content-Type: application/json'")
    media, _, params = value.partition(";")
    if media.strip().lower() != "application/json":
        raise HttpError(415, f"unsupported Content-Type {value[:60]!r}: send application/json")
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise HttpError(415, f"unsupported charset {val.strip()[:20]!r}: JSON is UTF-8")


def source_of(value: str | None) -> str:
    """Who sent the events (`X-LLMTray-Source`, default `api`); stored with every event."""
    if value is None:
        return "api"
    source = value.strip().lower()
    if source not in CLIENT_SOURCES:
        raise HttpError(400, f"X-LLMTray-Source must be one of {', '.join(CLIENT_SOURCES)}; got {value[:40]!r}")
    return source


SCOPE_QUERY = ("provider", "model", "feature", "user", "project", "env")


class IngestAPI:
    """The endpoints of DESIGN §5 as plain methods; `submit` returns a future that resolves
    after the commit."""

    def __init__(self, writer: Writer, db_path: Path, config: Config,
                 budget_entries: BudgetEntries | None = None):
        self.writer = writer
        self._db_path, self._config, self._budget_entries = db_path, config, budget_entries
        self.activity = Activity()
        self._lock = threading.Lock()

    @property
    def db_path(self) -> Path:
        return self._db_path

    def health(self) -> Reply:
        """Alive; in team mode also whether the team database is reachable and how many events
        wait in the spool for it (`ingest.writer`)."""
        body: dict[str, Any] = {"status": "ok", "version": __version__}
        if isinstance(self._db_path, PostgresUrl):
            writer = self.writer
            body["database"] = "unreachable" if writer.unreachable else "ok"
            body["spooled"] = writer.spooled
            if writer.unreachable:
                body["reason"] = writer.unreachable
        return Reply(200, body)

    def summary(self) -> Reply:
        """Spend today / this month and budgets. Blocking (a database read): call it off the event loop."""
        conn = dbmod.connect(self._db_path)
        try:
            body = summary(Queries(conn, self._config.tz), budget_entries=self._budget_entries,
                           week_start=self._config.week_start)
        finally:
            conn.close()
        return Reply(200, body)

    def enforce(self, query: str) -> Reply:
        """GET /v1/enforce?provider=&model=[&feature=…][&tag=K=V…]: whether a block or an exhausted
        `enforce` budget forbids such a call (the SDK hooks' hard cap). Blocking: off the loop."""
        params = parse_qs(query, keep_blank_values=True)
        values: dict[str, Any] = {k: params[k][0] for k in SCOPE_QUERY if params.get(k)}
        if "provider" not in values or "model" not in values:
            raise HttpError(400, "provider and model are required query parameters")
        tags: dict[str, str] = {}
        for text in params.get("tag", []):
            key, sep, value = text.partition("=")
            if not sep or not key:
                raise HttpError(400, f"tag must be KEY=VALUE, got {text[:60]!r}")
            tags[key] = value
        values["tags"] = tags
        conn = dbmod.connect(self._db_path)
        try:
            block = BlockBook(conn).refusal(values)
            if block is not None:
                return Reply(200, {"allowed": False, "blocked": True, "block": block.entry(), "budget": None,
                                   "message": block.message, "limit_usd": None, "spent_usd": None, "period": None})
            queries = Queries(conn, self._config.tz)
            budget = exhausted_enforced_budget(queries, values, week_start=self._config.week_start)
            if budget is None:
                return Reply(200, {"allowed": True, "budget": None, "message": "", "limit_usd": None,
                                   "spent_usd": None, "period": None})
            spent = nanos_to_str(evaluate(queries, budget, week_start=self._config.week_start,
                                          project=False).spent_nanos)
        finally:
            conn.close()
        return Reply(200, {
            "allowed": False, "budget": budget.name, "limit_usd": budget.limit_usd, "spent_usd": spent,
            "period": budget.period,
            "message": f"budget {budget.name!r} ({budget.scope.describe()}) is exhausted "
                       f"{PERIOD_PHRASE[budget.period]}: ${spent} of ${budget.limit_usd}",
        })

    def submit(self, events: Sequence[UsageEvent], source: str) -> Future[AddResult]:
        """Hand a validated batch to the writer; 503 when it is behind or stopping."""
        try:
            return self.writer.submit(events, source)
        except BacklogFull as exc:
            raise HttpError(503, str(exc), headers=(("Retry-After", str(exc.retry_after)),)) from None
        except WriterStopped as exc:
            raise HttpError(503, str(exc), headers=(("Retry-After", str(RETRY_AFTER_S)),)) from None

    def stored(self, future: Future[AddResult]) -> Reply:
        """The answer for a resolved submit future: 200 with counts, or 503 if SQLite refused."""
        try:
            result = future.result(timeout=0)
        except SumsOverflow as exc:  # the same batch would fail again: not a 503 to retry forever
            raise HttpError(400, str(exc)) from None
        except StoreFailed as exc:
            raise HttpError(503, str(exc), headers=(("Retry-After", str(RETRY_AFTER_S)),)) from None
        return Reply(200, {"accepted": result.accepted, "duplicates": result.duplicates})

    def count(self, status: int, body: dict[str, Any] | None = None) -> None:
        """Record one answer to POST /v1/events (for the activity log)."""
        with self._lock:
            a = self.activity
            a.requests += 1
            if status == 200 and body:
                a.accepted += body.get("accepted", 0)
                a.duplicates += body.get("duplicates", 0)
            elif status >= 500:
                a.failed += 1
            else:
                a.rejected += 1

    def activity_snapshot(self) -> Activity:
        with self._lock:
            return Activity(**vars(self.activity))
