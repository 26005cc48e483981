"""Hard budget caps for `instrument(..., enforce=True)`: ask the running llmtray before a call.

Contract (served by the ingest server):
`GET /v1/enforce?provider=P&model=M[&feature=F&user=U&project=J&env=E&tag=K=V...]`, bearer
token as for events, answers `200 {"allowed": bool, "budget": name|null, "message": str,
"limit_usd": str|null, "spent_usd": str|null, "period": str|null}`; a call a block covers gets
`"block": {"id", "scope", "reason", "until", …}` too and raises `Blocked` (a `BudgetExceeded`).
Answers are cached for a second per (provider, model, attribution), so a busy loop asks
once a second, not every call. Enforcement fails open: when no llmtray runs, or it can't answer, the
call goes ahead and one warning is logged (until it answers again) — a monitoring tool must not
take an application down.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmtray.core.errors import LLMTrayError
from llmtray.hooks import endpoint as discovery
from llmtray.hooks.context import Attribution
from llmtray.hooks.transport import Connection, get_json

log = logging.getLogger("llmtray.hooks")

CACHE_SECONDS = 1.0  # a block made anywhere reaches enforcing hooks within a second (DESIGN §15)
TIMEOUT = 1.0
MAX_ENTRIES = 1024


class BudgetExceeded(LLMTrayError):
    """An enforced llmtray budget is exhausted; the call was not sent to the provider."""

    def __init__(self, budget: str | None, limit_usd: str | None = None, spent_usd: str | None = None,
                 period: str | None = None, detail: str = ""):
        self.budget = budget
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.period = period
        spent = f"${spent_usd}" if spent_usd is not None else "an unknown amount"
        limit = f"${limit_usd}" if limit_usd is not None else "its limit"
        when = f" ({period})" if period else ""
        message = f"llmtray budget {budget!r} is exhausted: spent {spent} of {limit}{when}"
        if detail and detail not in message:
            message += f" — {detail}"
        super().__init__(message)


class Blocked(BudgetExceeded):
    """A llmtray block (DESIGN §15) covers this call; it was not sent. A `BudgetExceeded`, so code
    that already handles hard caps handles blocks too; `block_id`, `reason`, `until` say which."""

    def __init__(self, block_id: int | None, reason: str, until: str | None, message: str):
        self.block_id, self.reason, self.until = block_id, reason, until
        LLMTrayError.__init__(self, message or f"blocked by llmtray block #{block_id}: {reason}")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    budget: str | None = None
    limit_usd: str | None = None
    spent_usd: str | None = None
    period: str | None = None
    message: str = ""
    block: dict[str, Any] | None = None  # the block's entry when a block (not a budget) refuses

    def raise_if_denied(self) -> None:
        if not self.allowed and self.block is not None:
            raise Blocked(self.block.get("id"), str(self.block.get("reason") or ""), _str(self.block.get("until")),
                          self.message)
        if not self.allowed:
            raise BudgetExceeded(self.budget, self.limit_usd, self.spent_usd, self.period, self.message)


ALLOW = Verdict(True)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class Enforcer:
    """Thread-safe; one per process."""

    def __init__(self, discover: Callable[[], discovery.Endpoint | None] = discovery.discover,
                 cache_seconds: float = CACHE_SECONDS, timeout: float = TIMEOUT):
        self._discover = discover
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._cache: dict[tuple[Any, ...], tuple[float, Verdict]] = {}
        self._lock = threading.Lock()
        self._conn = Connection()
        self._warned = False

    @staticmethod
    def _key(provider: str, model: str, who: Attribution) -> tuple[Any, ...]:
        return provider, model, who.feature, who.user, who.project, who.env, tuple(sorted(who.tags.items()))

    def cached(self, provider: str, model: str, who: Attribution) -> Verdict | None:
        hit = self._cache.get(self._key(provider, model, who))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def check(self, provider: str, model: str, who: Attribution) -> None:
        """Raise `BudgetExceeded` if an enforced budget forbids this call (may do one GET)."""
        verdict = self.cached(provider, model, who) or self.ask(provider, model, who)
        verdict.raise_if_denied()

    async def check_async(self, provider: str, model: str, who: Attribution) -> None:
        """As `check`, with the GET (on a cache miss) off the event loop."""
        verdict = self.cached(provider, model, who)
        if verdict is None:
            import asyncio

            verdict = await asyncio.to_thread(self.ask, provider, model, who)
        verdict.raise_if_denied()

    def ask(self, provider: str, model: str, who: Attribution) -> Verdict:
        params: dict[str, Any] = {"provider": provider, "model": model}
        for name in ("feature", "user", "project", "env"):
            if getattr(who, name) is not None:
                params[name] = getattr(who, name)
        if who.tags:
            params["tag"] = [f"{k}={v}" for k, v in sorted(who.tags.items())]
        with self._lock:
            verdict = self._fetch(params)
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[self._key(provider, model, who)] = (time.monotonic() + self.cache_seconds, verdict)
        return verdict

    def _fetch(self, params: dict[str, Any]) -> Verdict:
        endpoint = self._discover()
        if endpoint is None:
            return self._fail_open("no llmtray is running")
        try:
            status, body = get_json(self._conn, endpoint, "/v1/enforce", params, self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            return self._fail_open(f"{type(exc).__name__}: {exc}")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("allowed"), bool):
            return self._fail_open(f"HTTP {status} from {endpoint.url}/v1/enforce")
        self._warned = False
        block = body.get("block") if isinstance(body.get("block"), dict) else None
        return Verdict(body["allowed"], _str(body.get("budget")), _str(body.get("limit_usd")),
                       _str(body.get("spent_usd")), _str(body.get("period")), str(body.get("message") or ""), block)

    def _fail_open(self, why: str) -> Verdict:
        if not self._warned:
            self._warned = True
            log.warning("llmtray: budget enforcement unavailable (%s); calls are allowed until it answers", why)
        return ALLOW

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._conn.forget()


_enforcer: Enforcer | None = None
_enforcer_lock = threading.Lock()


def get() -> Enforcer:
    global _enforcer
    if _enforcer is None:
        with _enforcer_lock:
            if _enforcer is None:
                _enforcer = Enforcer()
    return _enforcer


def reset() -> None:
    """Forget cached answers and close the connection (tests; after budgets changed)."""
    global _enforcer
    enforcer, _enforcer = _enforcer, None
    if enforcer is not None:
        enforcer.close()


def _after_fork_in_child() -> None:
    global _enforcer_lock
    _enforcer_lock = threading.Lock()
    if _enforcer is not None:
        _enforcer.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
