"""Where the metering proxy may forward to, and how each provider family words an error.

Only these base URLs are ever contacted: the request names an upstream, never a host, so the
proxy can't be used as an open relay. Built-in bases are each provider's documented API root
minus the version segment the SDKs add (`base_url="http://127.0.0.1:8787/proxy/openai/v1"` ↔
`https://api.openai.com/v1`); `[proxy.upstreams]` in config.toml overrides or adds entries
(a local stub, an Azure resource, a self-hosted gateway).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmtray.ingest.upstream import Origin

log = logging.getLogger(__name__)

BUILT_IN: dict[str, str] = {
    "openai": "https://api.openai.com",  # SDK base .../v1
    "anthropic": "https://api.anthropic.com",  # SDK base (the SDK adds /v1/messages)
    "google": "https://generativelanguage.googleapis.com",  # /v1beta/models/...:generateContent
    "openrouter": "https://openrouter.ai/api",  # SDK base .../v1
    "deepseek": "https://api.deepseek.com",  # SDK base as is (or .../v1)
    "groq": "https://api.groq.com/openai",  # SDK base .../v1
    "mistral": "https://api.mistral.ai",  # SDK base .../v1
    "xai": "https://api.x.ai",  # SDK base .../v1
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # an upstream name is also the event's provider


_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")  # controls, spaces, non-ASCII: not in a base path


@dataclass(frozen=True)
class Upstream:
    name: str
    base: str  # as configured, for messages
    origin: Origin
    base_path: str  # without its trailing slash

    def target(self, path: str, query: str) -> str:
        """The request target for a path (relative to the base) and raw query, both kept as
        sent: the authority is never parsed from anything the client sent."""
        raw = self.base_path + path or "/"  # `/proxy/stub`: the base's root, never an empty target
        if query:
            raw += "?" + query
        return raw


def parse_upstream(name: str, base: str) -> Upstream:
    """An upstream from its base URL; ValueError says what is wrong with it."""
    parts = urlsplit(base)
    port = parts.port  # ValueError for a port out of range or not a number
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or parts.username is not None or _UNSAFE_PATH.search(parts.path)):
        raise ValueError("must be http(s)://host[:port][/path] without credentials, query or fragment")
    origin = Origin(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return Upstream(name, base, origin, parts.path.rstrip("/"))


def upstreams(overrides: Mapping[str, str]) -> dict[str, Upstream]:
    """Built-ins merged with config overrides; an entry that can't be used is skipped with a
    warning (a typo in one upstream must not keep the ingest API from starting)."""
    out: dict[str, Upstream] = {}
    for name, base in {**BUILT_IN, **overrides}.items():
        if not _NAME.match(name):
            log.warning("proxy.upstreams.%s: skipped: an upstream name is also the event's provider id "
                        "(lowercase letters, digits, '.', '_' or '-')", name)
            continue
        try:
            out[name] = parse_upstream(name, base)
        except ValueError as exc:
            log.warning("proxy.upstreams.%s: skipped: %r %s", name, base, exc)
    return out


# --- errors in each provider family's own shape, so SDKs raise their usual exception types ------

_OPENAI_TYPES = {429: "insufficient_quota", 502: "server_error", 503: "server_error", 504: "server_error",
                 400: "invalid_request_error", 403: "permission_denied"}
_ANTHROPIC_TYPES = {429: "rate_limit_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error",
                    400: "invalid_request_error", 403: "permission_error"}
_GOOGLE_STATUS = {429: "RESOURCE_EXHAUSTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
                  400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}


def error_body(dialect: str, status: int, message: str, code: str) -> bytes:
    """A provider-shaped error: OpenAI `{"error": {message, type, param, code}}`, Anthropic
    `{"type": "error", "error": {type, message}}`, Gemini `{"error": {code, message, status}}`."""
    if dialect == "anthropic":
        body: dict[str, object] = {"type": "error", "error": {"type": _ANTHROPIC_TYPES[status], "message": message}}
    elif dialect == "google":
        body = {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS[status]}}
    else:
        body = {"error": {"message": message, "type": _OPENAI_TYPES[status], "param": None, "code": code}}
    return json.dumps(body, ensure_ascii=False).encode()
