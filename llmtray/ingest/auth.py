"""Who may talk to the ingest server: the Host, Origin and token checks, in one place.

A web page the user visits can make their browser send requests to 127.0.0.1, and DNS
rebinding can make such a request look same-origin; aw-server added a Host check after exactly
that report. So: any request carrying a browser `Origin` (or a cross-site `Sec-Fetch-Site`) is
refused, the `Host` must name a loopback address unless remote access was allowed explicitly,
and writes need the bearer token.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from functools import lru_cache

from llmtray.ingest.reply import HttpError
from llmtray.ingest.messages import Headers

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


@lru_cache(maxsize=256)  # asked on every request, nearly always with the same one or two hosts
def is_loopback(host: str) -> bool:
    """Whether a host name or address (without port; IPv6 with or without brackets) is loopback."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::\d{1,5})?|(?P<name>[A-Za-z0-9._-]+)(?::\d{1,5})?")


def host_of(header: str) -> str:
    """The host part of a Host header value (`[::1]:8787` → `::1`, `localhost:8787` → `localhost`),
    or "" when the value is not `host[:port]` at all. Strict on purpose: a lenient split let
    `localhost:1@evil.com` pass as "localhost" and `127.0.0.1%anything` as 127.0.0.1 (a zone id
    has no place in a Host header), and a browser resolving those names is exactly what the
    rebinding check is for."""
    m = _HOST.fullmatch(header.strip())
    if m is None:
        return ""
    return m.group("v6") or m.group("name")


class Guard:
    """Checks a request's headers; raises `HttpError` (403 or 401) when it must not proceed."""

    def __init__(self, token: str, *, allow_remote: bool = False):
        self._token = token.encode()
        self.allow_remote = allow_remote

    def check_origin(self, headers: Headers, version: str) -> None:
        """403 for browser requests and for a Host that isn't loopback (DNS rebinding)."""
        if headers.get("origin") is not None:
            raise HttpError(403, "requests from web pages are refused (Origin header present)")
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in ("none", "same-origin"):
            raise HttpError(403, "requests from web pages are refused (Sec-Fetch-Site: cross-site)")
        hosts = headers.get_all("host")
        if len(hosts) > 1:
            raise HttpError(400, "more than one Host header")
        if not hosts:
            if version == "HTTP/1.1":
                raise HttpError(400, "missing Host header (required by HTTP/1.1)")
            return
        if not self.allow_remote and not is_loopback(host_of(hosts[0])):
            raise HttpError(403, f"Host {hosts[0][:60]!r} is not a loopback address (DNS rebinding protection)")

    def check_token(self, headers: Headers) -> None:
        """401 unless `Authorization: Bearer <token>` matches (compared in constant time)."""
        value = headers.get("authorization")
        if value is None:
            raise _unauthorized("missing token: send 'Authorization: Bearer <token>' "
                                "(the token is in ingest.json, or set LLMTRAY_TOKEN)")
        scheme, _, given = value.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            raise _unauthorized("invalid token (a restarted llmtray may have a new one: read ingest.json again)")


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, message, headers=(("WWW-Authenticate", 'Bearer realm="llmtray"'),))
