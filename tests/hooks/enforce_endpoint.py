"""`GET /v1/enforce` as the hooks expect the ingest server to serve it — added to the real
`IngestService` in tests until the server has the route (the same code is proposed for it).

Query: `provider`, `model`, optional `feature`, `user`, `project`, `env`, repeated `tag=K=V`.
Answer: `{"allowed", "budget", "message", "limit_usd", "spent_usd", "period"}` from
`core.budgets.exhausted_enforced_budget` over the tray's database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from llmtray.core.budgets import PERIOD_PHRASE, evaluate, exhausted_enforced_budget
from llmtray.core.money import nanos_to_str
from llmtray.core.queries import Queries
from llmtray.ingest.reply import Reply
from llmtray.ingest.server import json_response
from llmtray.ingest.service import IngestService
from llmtray.ingest.wire import Request, Response

SCOPE = ("provider", "model", "feature", "user", "project", "env")


def verdict(db: Path, query: str) -> dict[str, Any]:
    params = parse_qs(query)
    values: dict[str, Any] = {k: params[k][0] for k in SCOPE if k in params}
    values["tags"] = dict(t.partition("=")[::2] for t in params.get("tag", []))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        queries = Queries(conn)
        budget = exhausted_enforced_budget(queries, values)
        if budget is None:
            return {"allowed": True, "budget": None, "message": "", "limit_usd": None, "spent_usd": None,
                    "period": None}
        spent = nanos_to_str(evaluate(queries, budget, project=False).spent_nanos)
        return {"allowed": False, "budget": budget.name, "limit_usd": budget.limit_usd, "spent_usd": spent,
                "period": budget.period,
                "message": f"budget {budget.name!r} ({budget.scope.describe()}) is exhausted "
                           f"{PERIOD_PHRASE[budget.period]}: ${spent} of ${budget.limit_usd}"}
    finally:
        conn.close()


def install(service: IngestService, seen: list[str]) -> None:
    """Add the route to a started service. WORKAROUND until the server has it: mounts need a
    prefix ending in "/", so the route goes into the server's route table (its private
    `_routes`, the same table `/v1/summary` lives in), with the same bearer-token check."""
    db = service.paths.db
    token = service.token

    async def enforce(_conn: object, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            return json_response(Reply(401, {"error": "missing or wrong bearer token"}))
        seen.append(request.query)
        body = await asyncio.get_running_loop().run_in_executor(None, verdict, db, request.query)
        return json_response(Reply(200, body))

    service.server._routes["/v1/enforce"] = {"GET": enforce}
