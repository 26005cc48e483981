"""opencode: the SQLite `opencode.db` (and channel databases `opencode-<channel>.db`, v1.2+) and
the legacy `storage/message/<session>/<message>.json` files; one call per assistant message.

Semantics (AGENTS.md §4): `tokens.input` excludes the cache (`cache.read`, `cache.write`) and
`reasoning` is beside `output`, not in it, so llmtray's input is input + read + write and its
output is output + reasoning. Only messages are summed (never `step-finish` parts or the session
aggregate columns, copies of the same usage). A message is rewritten as it updates, so the id is
the message's and the largest counts win; the same message in the database and a legacy file is
stored once. opencode's own `cost` is kept as the `agent_cost_usd` tag, llmtray prices the call
itself. The database is opened read-only and read from the last `time_updated` seen.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llmtray.agents.base import OnError, home, unique, walk
from llmtray.agents.calls import Call, Skip, counts, project_of, provider_id, text, usage_event
from llmtray.agents.tailer import FileState, feed_record

SOURCE = "opencode"
_TABLES = ("session_message", "message")  # "OpenCode 2" (1.18) renamed the table


class OpenCode:
    source = SOURCE
    markers = (b'"tokens"',)

    def roots(self, env: Mapping[str, str]) -> list[Path]:
        data = Path(env["XDG_DATA_HOME"]).expanduser() if env.get("XDG_DATA_HOME") else home(env) / ".local" / "share"
        return unique([data / "opencode"])

    def files(self, root: Path, on_error: OnError) -> Iterator[Path]:
        yield from sorted(p for p in root.glob("opencode*.db") if p.is_file())
        messages = root / "storage" / "message"
        if messages.is_dir():
            yield from walk(messages, "*.json", on_error)

    def mode(self, path: Path) -> str:
        return "sqlite" if path.suffix == ".db" else "document"

    def reader(self, path: Path, state: dict[str, Any] | None) -> _Reader:
        return _Reader(str(path), state or {})

    def read_database(self, fs: FileState, emit: Callable[[Call], None]) -> None:
        read_database(fs, _Reader(fs.path, {}), emit)


class _Reader:
    def __init__(self, path: str, state: dict[str, Any]):
        self.path, self.s = path, state

    def state(self) -> dict[str, Any]:
        return self.s

    def feed(self, record: dict[str, Any], line: int) -> Call | None:
        if record.get("role") != "assistant":
            return None
        tokens = record.get("tokens")
        if not isinstance(tokens, dict):
            return None  # still streaming, or a message that used nothing
        provider, model = text(record.get("providerID")), text(record.get("modelID"))
        if provider is None or model is None:
            raise Skip("assistant message without providerID or modelID")
        cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
        inp, out, reasoning = counts(tokens, "tokens", "input", "output", "reasoning")
        read, write = counts(cache, "tokens.cache", "read", "write")
        if not (inp or out or reasoning or read or write):
            return None
        message_id = text(record.get("id"))
        if message_id is None:
            raise Skip("assistant message without id")
        times = record.get("time") if isinstance(record.get("time"), dict) else {}
        ms = times.get("completed") or times.get("created")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)):
            raise Skip("assistant message without time.created")
        tags = {"session": str(text(record.get("sessionID")) or "")[:200] or Path(self.path).parent.name}
        try:
            if record.get("cost") is not None and not isinstance(record.get("cost"), bool):
                tags["agent_cost_usd"] = format(Decimal(str(record["cost"])), "f")[:40]
        except InvalidOperation:
            pass
        where = record.get("path") if isinstance(record.get("path"), dict) else {}
        event = usage_event(f"opencode:{message_id}", datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z"),
                            provider_id(provider, "unknown"), model, input_tokens=inp + read + write,
                            output_tokens=out + reasoning, cache_read=read, cache_write=write, reasoning=reasoning,
                            project=project_of(where.get("cwd") or where.get("root")), tags=tags)
        return Call(event, self.path, line)


def read_database(fs: FileState, reader: _Reader, emit: Callable[[Call], None]) -> None:
    """New or updated messages since the last `time_updated` seen (read-only; the agent keeps
    writing). A database that can't be read is a skip reason, not a stop of the other files."""
    since = (fs.reader or {}).get("updated", -1)
    newest = since
    try:
        conn = sqlite3.connect(f"file:{fs.path}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error as exc:
        fs.skip(f"cannot open the database: {exc}", 0)
        return
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        table = next((t for t in _TABLES if t in tables), None)
        if table is None:
            fs.skip("no message table (unknown opencode database format?)", 0)
            return
        rows = conn.execute(f"SELECT id, session_id, time_updated, data FROM {table} "
                            "WHERE time_updated > ? ORDER BY time_updated", (since,))
        for n, (message_id, session_id, updated, data) in enumerate(rows, start=1):
            newest = max(newest, updated or 0)
            try:
                record = json.loads(data)
            except (TypeError, ValueError):
                fs.skip("message data is not JSON", n)
                continue
            if isinstance(record, dict):
                record.setdefault("id", message_id)
                record.setdefault("sessionID", session_id)
                record.setdefault("time", {"created": updated})
            feed_record(fs, record, n, reader, emit)
    except sqlite3.Error as exc:
        fs.skip(f"cannot read the database: {exc}", 0)
    finally:
        conn.close()
    fs.reader = {**(fs.reader or {}), "updated": newest}
