"""Claude Code: `projects/**/*.jsonl` transcripts, one assistant message per API call.

Semantics (AGENTS.md §1): only `type:"assistant"` records with `message.usage` carry spend;
`input_tokens` there is the *uncached* input (llmtray's counts include the cache, DESIGN §3);
`cache_creation.ephemeral_1h_input_tokens` is the part of the cache writes billed at the 1-hour
rate. One response is written as several lines sharing `message.id` (a line per content block,
streaming snapshots with a growing `output_tokens`, resume copies in other files), so the id is
`anthropic:<message.id>` for all of them and the scanner keeps each count's maximum.
`<synthetic>` messages and all-zero usage are no call. `progress` records that embed a
subagent's usage are ignored: the subagent's own transcript has it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmtray.agents.base import OnError, home, unique, walk
from llmtray.agents.calls import Call, Skip, counts, project_of, text, usage_event

SOURCE = "claude-code"
_TIERS = {"priority": "priority", "batch": "batch", "flex": "flex"}  # "standard" is the default
_NO_SPEND = ("user", "progress", "system", "summary", "attachment")  # may quote usage; never a call of their own


class ClaudeCode:
    source = SOURCE
    markers = (b'"assistant"',)

    def roots(self, env: Mapping[str, str]) -> list[Path]:
        """`$CLAUDE_CONFIG_DIR` (a comma-separated list allowed), `~/.config/claude`, `~/.claude`:
        every one that exists, each with its `projects/` folder."""
        bases = [Path(p.strip()).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
        bases += [home(env) / ".config" / "claude", home(env) / ".claude"]
        return unique([b / "projects" for b in bases])

    def files(self, root: Path, on_error: OnError) -> Iterator[Path]:
        return walk(root, "*.jsonl", on_error)

    def mode(self, path: Path) -> str:
        return "lines"

    def reader(self, path: Path, state: dict[str, Any] | None) -> _Reader:
        return _Reader(path)


def settings_files(env: Mapping[str, str]) -> list[Path]:
    """Where Claude Code's `settings.json` (with `cleanupPeriodDays`) can be."""
    bases = [Path(p.strip()).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    return [b / "settings.json" for b in (*bases, home(env) / ".claude", home(env) / ".config" / "claude")]


class _Reader:
    def __init__(self, path: Path):
        self.path = str(path)
        parts = path.parts
        # Subagent transcripts: <session>/subagents/agent-<id>.jsonl, or (2.0.x) agent-<id>.jsonl
        self.in_subagent_file = "subagents" in parts or path.name.startswith("agent-")
        self.file_session = path.parent.parent.name if "subagents" in parts else path.stem

    def state(self) -> None:
        return None

    def feed(self, record: dict[str, Any], line: int) -> Call | None:
        kind = record.get("type")
        if kind != "assistant":
            message = record.get("message")
            if kind not in _NO_SPEND and isinstance(message, dict) and "usage" in message:
                # usage where no known record type has it: a newer format, said, never a silent $0
                raise Skip(f"a {str(kind)[:40]!r} record with message.usage (unknown format?)")
            return None
        message = record.get("message")
        if not isinstance(message, dict):
            raise Skip("assistant record without a message object")
        model = message.get("model")
        if model == "<synthetic>":
            return None  # written locally (API errors, slash commands): no call was billed
        usage = message.get("usage")
        if usage is None:
            raise Skip("assistant record without message.usage (unknown format?)")
        if not isinstance(usage, dict):
            raise Skip("message.usage is not an object")
        fresh, writes, reads, output = counts(usage, "usage", "input_tokens", "cache_creation_input_tokens",
                                              "cache_read_input_tokens", "output_tokens")
        split = usage.get("cache_creation")
        writes_1h = writes_5m = 0
        if isinstance(split, dict):
            writes_1h, writes_5m = counts(split, "usage.cache_creation", "ephemeral_1h_input_tokens",
                                          "ephemeral_5m_input_tokens")
        writes = max(writes, writes_1h + writes_5m)
        if not (fresh or writes or reads or output):
            return None  # nothing used: no call to bill
        if text(model) is None:
            raise Skip("assistant record without message.model")
        message_id, request_id = text(message.get("id")), text(record.get("requestId"))
        key = message_id or request_id
        if key is None:
            raise Skip("assistant record without message.id or requestId")
        tags = {"session": str(text(record.get("sessionId")) or self.file_session)[:200]}
        if version := text(record.get("version")):
            tags["agent_version"] = version[:200]
        if record.get("isSidechain") is True or text(record.get("agentId")) or self.in_subagent_file:
            tags["subagent"] = "true"
        if usage.get("speed") == "fast":
            tags["speed"] = "fast"  # genai-prices 0.2.3 has no fast-mode rates: see docs/agents.md
        tools = usage.get("server_tool_use")
        if isinstance(tools, dict):
            for name in ("web_search_requests", "web_fetch_requests"):
                if isinstance(uses := tools.get(name), int) and uses > 0:
                    tags[name] = str(uses)
        event = usage_event(f"anthropic:{key}", record.get("timestamp"), "anthropic", model,
                            input_tokens=fresh + writes + reads, output_tokens=output, cache_read=reads,
                            cache_write=writes, cache_write_1h=writes_1h, project=project_of(record.get("cwd")),
                            tags=tags, request_id=(request_id or key)[:200],
                            service_tier=_TIERS.get(str(usage.get("service_tier") or "")))
        aliases = (f"anthropic:{request_id}",) if message_id and request_id else ()
        return Call(event, self.path, line, aliases)


def cleanup_period_days(env: Mapping[str, str] = os.environ) -> tuple[int, bool]:
    """Claude Code's `cleanupPeriodDays` and whether it is the default (30): transcripts older
    than that are deleted at its next start."""
    import json

    for path in settings_files(env):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        days = data.get("cleanupPeriodDays") if isinstance(data, dict) else None
        if isinstance(days, int) and not isinstance(days, bool):
            return days, False
    return 30, True
