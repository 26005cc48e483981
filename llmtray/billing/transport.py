"""One GET against a billing API, with every fault turned into a `BillingError`, and the
cursor pagination the three APIs share.

The key travels in a header only; URLs carry dates and cursors. httpx logs full URLs at INFO,
which is harmless here but silenced by the CLI anyway. `Retry-After` is honoured: a short wait
is slept (stoppably) and the call retried; a long one ends the round with `RateLimited`, whose
`retry_at` the scheduler uses as the next attempt.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmtray import __version__
from llmtray.billing.errors import AuthFailed, BillingError, MalformedPage, RateLimited, Unavailable, WrongKeyClass
from llmtray.billing.units import load_page

USER_AGENT = f"llmtray/{__version__} (https://github.com/llmtray/llmtray)"
MAX_PAGES = 400  # a runaway cursor stops here (a 30-day backfill needs a handful)
DEFAULT_RETRY_S = 60.0
_SCOPE_HINTS = ("missing scopes", "insufficient permissions", "insufficient_permissions", "only management keys",
                "permission_error", "admin key", "not allowed", "does not have permission")


@dataclass
class Page:
    """One response as received: kept raw in the ledger with its fetch time."""

    endpoint: str
    params: dict[str, Any]
    text: str
    body: Any
    fetched_at: float


@dataclass
class Transport:
    """Where and how to call one source. `sleep(seconds)` returns False when the caller is
    stopping (the scheduler's event), so a wait never holds up quitting."""

    source: str
    base_url: str
    headers: dict[str, str]
    timeout: float = 30.0
    max_wait: float = 10.0
    sleep: Callable[[float], bool] = field(default=lambda s: (time.sleep(s), True)[1])
    client: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.headers}
        if self.client is None:  # one per round: a TLS context costs ~50 ms, a connection is reused
            self.client = httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Page:
        """The page at `path`, or the `BillingError` that says what went wrong."""
        for _ in range(4):
            response = self._send(path, params)
            if response.status_code == 429:
                delay = retry_after(response.headers.get("retry-after"))
                if delay > self.max_wait:
                    raise RateLimited(self.source, time.time() + delay)
                if not self.sleep(delay):
                    raise Unavailable(f"{self.source}: stopped while waiting out a rate limit")
                continue
            return self._page(path, params, response)
        raise RateLimited(self.source, time.time() + DEFAULT_RETRY_S)

    def _send(self, path: str, params: Any) -> httpx.Response:
        assert self.client is not None
        try:
            return self.client.get(self.base_url + path, params=params, headers=self.headers)
        except httpx.TimeoutException:
            raise Unavailable(f"{self.source}: no answer from {_host(self.base_url)} within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.source}: cannot reach {_host(self.base_url)} ({type(exc).__name__})") from None

    def _page(self, path: str, params: Any, response: httpx.Response) -> Page:
        status, text = response.status_code, response.text
        if status in (401, 403):
            message = provider_message(text)
            if status == 403 or any(h in message.lower() or h in text.lower() for h in _SCOPE_HINTS):
                raise WrongKeyClass(f"{self.source}: needs an admin/management key — the provider said "
                                    f"{status}: {message}")
            raise AuthFailed(f"{self.source}: the key was refused (revoked or mistyped?) — {status}: {message}")
        if status >= 500:
            raise Unavailable(f"{self.source}: the provider's server failed ({status}: {provider_message(text)}); "
                              "retrying next round")
        if status == 404:
            raise Unavailable(f"{self.source}: {path} is unavailable (404) — retrying next round")
        if status != 200:
            raise BillingError(f"{self.source}: {path} refused the request ({status}: {provider_message(text)})")
        try:
            body = load_page(text)
        except ValueError:
            raise MalformedPage(f"{self.source}: {path} sent a page that is not JSON "
                                f"(starts {text[:40]!r})") from None
        if not isinstance(body, dict):
            raise MalformedPage(f"{self.source}: {path} sent a {type(body).__name__}, not a JSON object")
        plain = params if isinstance(params, dict) else dict(params)
        return Page(path, plain, text, body, time.time())


def retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date); a default when absent or odd."""
    if not value:
        return DEFAULT_RETRY_S
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_S


def provider_message(text: str) -> str:
    """The provider's own error message from `{"error": {"message": …}}` (all three use it)."""
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message[:300]
    except (ValueError, AttributeError):
        pass
    return text.strip()[:120] or "no details"


def paginate(transport: Transport, path: str, params: list[tuple[str, Any]]) -> Iterator[Page]:
    """Every page of a cursor-paginated listing (`has_more` + `next_page`), in order. A cursor or
    a page body seen before is a `MalformedPage` (a server looping on one page would otherwise
    fill the ledger twice); more than `MAX_PAGES` is one too."""
    seen_cursors: set[str] = set()
    seen_bodies: dict[str, int] = {}
    cursor: str | None = None
    for number in range(1, MAX_PAGES + 1):
        page = transport.get(path, params + ([("page", cursor)] if cursor else []))
        digest = hashlib.sha256(page.text.encode()).hexdigest()
        if digest in seen_bodies:
            raise MalformedPage(f"{transport.source}: {path} page {number} repeats page {seen_bodies[digest]}")
        seen_bodies[digest] = number
        yield page
        body = page.body
        if not body.get("has_more"):
            return
        cursor = body.get("next_page")
        if not isinstance(cursor, str) or not cursor:
            raise MalformedPage(f"{transport.source}: {path} page {number} says has_more but gives no next_page")
        if cursor in seen_cursors:
            raise MalformedPage(f"{transport.source}: {path} page {number} repeats the cursor {cursor[:40]!r}")
        seen_cursors.add(cursor)
    raise MalformedPage(f"{transport.source}: {path} has more than {MAX_PAGES} pages; stopped")


def _host(url: str) -> str:
    return httpx.URL(url).host or url
