"""A local stand-in for the three billing APIs: a real HTTP server on loopback that answers
like the providers' published examples and SDK types (BILLING.md §1–3) — bucketed pages with
`has_more`/`next_page`, Anthropic cents as decimal strings, OpenAI amounts as numbers or long
decimal strings, OpenRouter activity rows — plus the faults a test queues: error statuses with
the providers' bodies, `Retry-After`, a page that repeats, a malformed body, a slow answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENAI_KEY = "sk-admin-test0000000000000000"
ANTHROPIC_KEY = "sk-ant-admin01-test000000000000"
OPENROUTER_KEY = "sk-or-v1-management00000000000"
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "openrouter": OPENROUTER_KEY}

# The providers' own error bodies (BILLING.md §1.1, §2.1, §3).
OPENAI_SCOPE = {"error": {"type": "insufficient_permissions", "code": "insufficient_permissions",
                          "message": "You have insufficient permissions for this operation. Missing scopes: "
                                     "api.usage.read"}}
OPENAI_BAD_KEY = {"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                            "message": "Incorrect API key provided."}}
ANTHROPIC_PERMISSION = {"type": "error", "error": {"type": "permission_error",
                                                   "message": "Your API key does not have permission to use the "
                                                              "specified resource."}, "request_id": "req_1"}
OPENROUTER_NOT_MANAGEMENT = {"error": {"code": 403, "message": "Only management keys can perform this operation"}}


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: str | None = None  # a body sent as is (malformed JSON)


@dataclass
class StubData:
    openai_costs: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    openai_usage: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    anthropic_costs: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    anthropic_usage: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    openrouter_activity: list[dict[str, Any]] = field(default_factory=list)


class BillingStub:
    """`with BillingStub() as stub:` → `stub.url`; fill `stub.data`, queue `stub.faults[path]`."""

    def __init__(self) -> None:
        self.data = StubData()
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.repeat_page: set[str] = set()  # paths whose cursor always points back at page 1
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with stub.lock:
                    stub.requests.append((parts.path, query, dict(self.headers)))
                    queued = stub.faults.get(parts.path)
                    fault = queued.pop(0) if queued else None
                if fault is not None:
                    time.sleep(fault.delay)
                    return self._send(fault.status, fault.raw if fault.raw is not None else json.dumps(fault.body),
                                      fault.headers)
                status, body = stub.answer(parts.path, query, self.headers)
                self._send(status, json.dumps(body))

            def _send(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
                payload = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out first

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BillingStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]

    # --- answers ---------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, Any]:
        if path.startswith("/v1/organization/"):
            if headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
                key = (headers.get("Authorization") or "").removeprefix("Bearer ")
                return (401, OPENAI_SCOPE) if key.startswith("sk-") else (401, OPENAI_BAD_KEY)
            table = self.data.openai_costs if path.endswith("/costs") else self.data.openai_usage
            return 200, self._buckets(path, query, table, "start_time", "end_time", _unix, 7)
        if path.startswith("/v1/organizations/"):
            if headers.get("x-api-key") != ANTHROPIC_KEY or headers.get("anthropic-version") != "2023-06-01":
                return 403, ANTHROPIC_PERMISSION
            table = self.data.anthropic_costs if path.endswith("cost_report") else self.data.anthropic_usage
            return 200, self._buckets(path, query, table, "starting_at", "ending_at", _rfc3339, 7)
        if path == "/api/v1/activity":
            if headers.get("Authorization") != f"Bearer {OPENROUTER_KEY}":
                return 403, OPENROUTER_NOT_MANAGEMENT
            return 200, {"data": self.data.openrouter_activity}
        return 404, {"error": {"message": f"no route {path}"}}

    def _buckets(self, path: str, query: dict[str, list[str]], table: dict[date, list[dict[str, Any]]],
                 start_name: str, end_name: str, fmt: Any, default_limit: int) -> dict[str, Any]:
        start = _parse_time(query[start_name][0])
        end = _parse_time(query[end_name][0]) if end_name in query else datetime.now(UTC).date() + timedelta(days=1)
        limit = int(query.get("limit", [default_limit])[0])
        offset = int(query.get("page", ["cur_0"])[0].removeprefix("cur_"))
        if path in self.repeat_page:
            offset = 0
        days = [start + timedelta(days=i) for i in range((end - start).days)]
        chosen = days[offset:offset + limit]
        buckets = [{"object": "bucket", start_name: fmt(d), end_name: fmt(d + timedelta(days=1)),
                    "results": table.get(d, [])} for d in chosen]
        more = offset + limit < len(days)
        return {"object": "page", "data": buckets, "has_more": more,
                "next_page": f"cur_{offset + limit}" if more else None}


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _parse_time(value: str) -> date:
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC).date()
    return datetime.fromisoformat(value.replace("Z", "+00:00")).date()


# --- result builders, field for field as the providers' examples -----------------------------------

def openai_cost(value: Any, line_item: str | None, project_id: str | None = "proj_abc") -> dict[str, Any]:
    return {"object": "organization.costs.result", "amount": {"value": value, "currency": "usd"},
            "line_item": line_item, "project_id": project_id, "organization_id": "org-1"}


def openai_usage(model: str, requests: int, input_tokens: int, output_tokens: int, cached: int = 0,
                 batch: bool | None = False, project_id: str | None = "proj_abc") -> dict[str, Any]:
    return {"object": "organization.usage.completions.result", "input_tokens": input_tokens,
            "output_tokens": output_tokens, "num_model_requests": requests, "input_cached_tokens": cached,
            "input_audio_tokens": 0, "output_audio_tokens": 0, "project_id": project_id, "user_id": None,
            "api_key_id": None, "model": model, "batch": batch, "service_tier": "default"}


def anthropic_cost(cents: str, model: str | None, description: str, cost_type: str = "tokens",
                   token_type: str | None = "uncached_input_tokens", workspace_id: str | None = "wrkspc_1",
                   service_tier: str | None = "standard", context_window: str | None = "0-200k") -> dict[str, Any]:
    return {"currency": "USD", "amount": cents, "workspace_id": workspace_id, "description": description,
            "cost_type": cost_type, "context_window": context_window, "model": model,
            "service_tier": service_tier, "token_type": token_type, "inference_geo": "global"}


def anthropic_usage(model: str, uncached: int, output: int, cache_read: int = 0, cache_5m: int = 0,
                    cache_1h: int = 0, workspace_id: str | None = "wrkspc_1", service_tier: str = "standard",
                    context_window: str = "0-200k") -> dict[str, Any]:
    return {"uncached_input_tokens": uncached, "cache_creation": {"ephemeral_1h_input_tokens": cache_1h,
                                                                  "ephemeral_5m_input_tokens": cache_5m},
            "cache_read_input_tokens": cache_read, "output_tokens": output,
            "server_tool_use": {"web_search_requests": 0}, "api_key_id": "apikey_1", "workspace_id": workspace_id,
            "model": model, "service_tier": service_tier, "context_window": context_window,
            "inference_geo": "not_available"}


def openrouter_row(day: date, model: str, usage: Any, requests: int, prompt: int, completion: int,
                   byok: Any = 0) -> dict[str, Any]:
    return {"date": day.isoformat(), "model": model, "model_permaslug": f"{model}-2024-08-06",
            "endpoint_id": "ep_1", "provider_name": "OpenAI", "usage": usage, "byok_usage_inference": byok,
            "requests": requests, "prompt_tokens": prompt, "completion_tokens": completion, "reasoning_tokens": 0}
