"""Codex CLI / Desktop: `sessions/**/rollout-*.jsonl` and `archived_sessions/`, one call per rise
of the thread's cumulative `token_count` totals.

Semantics (AGENTS.md §2): `input_tokens` includes `cached_input_tokens` and `output_tokens`
includes `reasoning_output_tokens` (llmtray's own convention, DESIGN §3). `total_token_usage` is
cumulative per thread and is re-emitted unchanged by UI and rate-limit refreshes, so a call is the
*difference* to the previous total; an unchanged total or `info: null` is nothing; a total that
falls (a resumed process restarts its counter, compaction) is a reset: that call is
`last_token_usage` and a new epoch begins. The model is the latest `turn_context` (or
`thread_settings_applied`) before the count.

Ids carry no per-event id, so each call's id is `codex:<root thread>:<epoch>:<cumulative totals>`.
A fork or subagent file starts with its own `session_meta` and then its ancestors', and copies the
parent's history, `token_count` rows included (with rewritten timestamps): keyed by the *root*
thread and the cumulative totals, the copied rows get the parent's ids and are stored once,
whichever file is read first, while the child's own later calls (larger totals) are new. If the
parent's file is gone, the copy is billed once from the child (fail open), never suppressed by
token-vector equality across unrelated threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmtray.agents.base import OnError, home, unique, walk
from llmtray.agents.calls import Call, Skip, counts, project_of, provider_id, text, usage_event

SOURCE = "codex"
_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "cache_write_input_tokens")
_TIERS = {"priority": "priority", "fast": "priority", "flex": "flex"}


class Codex:
    source = SOURCE
    markers = (b"token_count", b"session_meta", b"turn_context", b"thread_settings")

    def roots(self, env: Mapping[str, str]) -> list[Path]:
        base = Path(env["CODEX_HOME"]).expanduser() if env.get("CODEX_HOME") else home(env) / ".codex"
        return unique([base / "sessions", base / "archived_sessions"])

    def files(self, root: Path, on_error: OnError) -> Iterator[Path]:
        return walk(root, "rollout-*.jsonl", on_error)

    def mode(self, path: Path) -> str:
        return "lines"

    def reader(self, path: Path, state: dict[str, Any] | None) -> _Reader:
        return _Reader(str(path), state or {})


def _vector(usage: Any, what: str) -> tuple[int, ...]:
    if not isinstance(usage, dict):
        raise Skip(f"{what} is not an object (unknown token_count format?)")
    vec = counts(usage, what, *_FIELDS)
    if "input_tokens" not in usage and "output_tokens" not in usage:
        raise Skip(f"{what} has no input_tokens or output_tokens (unknown token_count format?)")
    return vec


class _Reader:
    def __init__(self, path: str, state: dict[str, Any]):
        self.path = path
        self.s: dict[str, Any] = {"prev": [0] * len(_FIELDS), "epoch": 0, "counted": False, **state}

    def state(self) -> dict[str, Any]:
        return self.s

    def feed(self, record: dict[str, Any], line: int) -> Call | None:
        kind, payload = record.get("type"), record.get("payload")
        if not isinstance(payload, dict):
            return None
        s = self.s
        if kind == "session_meta":
            thread = text(payload.get("id"))
            if "thread" not in s:  # the first one is this file's own thread
                s["thread"] = thread
                s["cwd"] = payload.get("cwd")
                s["version"] = text(payload.get("cli_version"))
                s["provider"] = provider_id(payload.get("model_provider"), "openai")
                s["subagent"] = isinstance(payload.get("source"), dict)
            if thread and not s["counted"]:  # ancestors follow the leaf: the last one is the root
                s["root"] = thread
        elif kind == "turn_context":
            s["model"] = text(payload.get("model")) or s.get("model")
            s["cwd"] = payload.get("cwd") or s.get("cwd")
        elif kind == "event_msg":
            sub = payload.get("type")
            if sub == "thread_settings_applied" and isinstance(ts := payload.get("thread_settings"), dict):
                s["model"] = text(ts.get("model")) or s.get("model")
                s["tier"] = _TIERS.get(str(ts.get("service_tier") or ""))
            elif sub == "token_count":
                if "info" not in payload and ("input_tokens" in payload or "output_tokens" in payload):
                    # early rollouts: the turn's usage right in the payload, no running total
                    return self._count(record, {"last_token_usage": payload}, line)
                return self._count(record, payload.get("info"), line)
        return None

    def _count(self, record: dict[str, Any], info: Any, line: int) -> Call | None:
        if info is None:
            return None  # a rate-limit refresh
        if not isinstance(info, dict):
            raise Skip("token_count.info is not an object (unknown format?)")
        s = self.s
        prev = tuple(s["prev"])
        if info.get("total_token_usage") is None and info.get("last_token_usage") is not None:
            # no running total logged: this call is `last`, and the total is ours
            total = tuple(p + d for p, d in zip(prev, _vector(info["last_token_usage"], "last_token_usage")))
        else:
            total = _vector(info.get("total_token_usage"), "total_token_usage")
        s["counted"] = True
        if total == prev:
            return None  # re-emitted unchanged: no new call
        if all(t >= p for t, p in zip(total, prev)):
            delta = tuple(t - p for t, p in zip(total, prev))
        else:  # the counter restarted: this call is the last request alone
            s["epoch"] += 1
            last = info.get("last_token_usage")
            delta = _vector(last, "last_token_usage") if last is not None else total
        s["prev"] = list(total)
        inp, cached, out, reasoning, writes = delta
        if not (inp or out or cached):
            return None
        root = s.get("root") or s.get("thread") or Path(self.path).stem
        thread = s.get("thread") or Path(self.path).stem
        # A subagent's spend rolls up to the session that spawned it; a fork is a session of its own.
        tags = {"session": str(root if s.get("subagent") else thread)[:200]}
        if s.get("version"):
            tags["agent_version"] = s["version"][:200]
        if s.get("subagent"):
            tags["subagent"] = "true"
        elif root != thread:
            tags["forked_from"] = str(root)[:200]
        event = usage_event(f"codex:{root}:{s['epoch']}:{'.'.join(map(str, total))}", record.get("timestamp"),
                            s.get("provider") or "openai",
                            # Old rollouts name no model: "unknown" stays unpriced rather than guessed as gpt-5.
                            s.get("model") or "unknown",
                            input_tokens=max(inp, cached + writes), output_tokens=max(out, reasoning),
                            cache_read=cached, cache_write=writes, reasoning=reasoning,
                            project=project_of(s.get("cwd")), tags=tags, operation="responses",
                            service_tier=s.get("tier"))
        return Call(event, self.path, line)
