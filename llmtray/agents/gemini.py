"""Gemini CLI: `tmp/<project>/chats/*.jsonl` (and legacy whole-document `*.json`), one call per
model message's `tokens`.

Semantics (AGENTS.md §3): the JSONL re-appends a whole message every time it changes (tokens
arrive later), so the id is the message's and the scanner keeps each count's maximum; a
`{"$set": {"messages": [...]}}` checkpoint is a list to merge, not to add; `$rewindTo` un-bills
nothing (those requests were paid). `tokens.input` includes `cached`; `thoughts` are billed as
output but are not inside `output`; `tool` (tool-use prompt) is input. The legacy `.json` is
rewritten whole, and on resume migrated into a `.jsonl` with the same message ids: stored once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmtray.agents.base import OnError, home, unique, walk
from llmtray.agents.calls import Call, Skip, counts, project_of, text, usage_event

SOURCE = "gemini-cli"


class GeminiCli:
    source = SOURCE
    markers = (b'"tokens"', b'"sessionId"', b'"$set"')

    def roots(self, env: Mapping[str, str]) -> list[Path]:
        base = Path(env["GEMINI_CLI_HOME"]).expanduser() if env.get("GEMINI_CLI_HOME") else home(env)
        return unique([base / ".gemini" / "tmp"])

    def files(self, root: Path, on_error: OnError) -> Iterator[Path]:
        for path in walk(root, "*.json*", on_error):
            if path.suffix in (".jsonl", ".json") and "chats" in path.parts:
                yield path

    def mode(self, path: Path) -> str:
        return "document" if path.suffix == ".json" else "lines"

    def reader(self, path: Path, state: dict[str, Any] | None) -> _Reader:
        return _Reader(path, state or {})


def _project(project_dir: Path) -> str | None:
    """`<project-id>/.project_root` holds the workspace path (hash and slug folders alike)."""
    try:
        return project_of((project_dir / ".project_root").read_text(encoding="utf-8").strip())
    except OSError:
        return None


class _Reader:
    def __init__(self, path: Path, state: dict[str, Any]):
        self.path = str(path)
        self.s = state
        parts = path.parts
        i = len(parts) - 1 - parts[::-1].index("chats")
        self.parent_session = parts[i + 1] if len(parts) - i > 2 else None  # chats/<parent>/<id>.jsonl
        if "project" not in self.s:
            self.s["project"] = _project(Path(*parts[:i]))

    def state(self) -> dict[str, Any]:
        return self.s

    def feed(self, record: dict[str, Any], line: int) -> Call | list[Call] | None:
        if "messages" in record and isinstance(record.get("messages"), list):  # a legacy document
            self._meta(record)
            return self._many(record["messages"], line)
        patch = record.get("$set")
        if isinstance(patch, dict):
            self._meta(patch)
            if isinstance(patch.get("messages"), list):
                return self._many(patch["messages"], line)
            return None
        if "sessionId" in record and "type" not in record:
            self._meta(record)
            return None
        return self._message(record, line)

    def _meta(self, record: dict[str, Any]) -> None:
        if session := text(record.get("sessionId")):
            self.s.setdefault("session", session)

    def _many(self, messages: list[Any], line: int) -> list[Call]:
        return [c for m in messages if isinstance(m, dict) and (c := self._message(m, line)) is not None]

    def _message(self, message: dict[str, Any], line: int) -> Call | None:
        if message.get("type") != "gemini":
            return None
        tokens = message.get("tokens")
        if not tokens:  # written before its tokens arrived
            return None
        if not isinstance(tokens, dict):
            raise Skip("gemini message tokens is not an object")
        inp, cached, out, thoughts, tool = counts(tokens, "tokens", "input", "cached", "output", "thoughts", "tool")
        if not (inp or out or thoughts):
            return None
        message_id, model = text(message.get("id")), text(message.get("model"))
        if message_id is None:
            raise Skip("gemini message without id")
        if model is None:
            raise Skip("gemini message without model")
        session = self.parent_session or self.s.get("session") or Path(self.path).stem
        tags = {"session": str(session)[:200]}
        if self.parent_session:
            tags["subagent"] = "true"
        event = usage_event(f"gemini-cli:{message_id}", message.get("timestamp"), "google", model,
                            input_tokens=max(inp + tool, cached), output_tokens=out + thoughts, cache_read=cached,
                            reasoning=thoughts, project=self.s.get("project"), tags=tags)
        return Call(event, self.path, line)
