"""What the ingest API answers, independent of any transport: a status, JSON and a few headers.

`HttpError` is how every layer (framing, guard, API) says "answer with this status": the server
turns it into a JSON body, so a client always gets `{"error": ...}` and never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


class HttpError(Exception):
    """An answer other than success; `errors` are per-event entries for 400s (DESIGN §5)."""

    def __init__(self, status: int, message: str, errors: Sequence[dict[str, Any]] = (),
                 headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(status, message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def reply(self) -> Reply:
        body: dict[str, Any] = {"error": self.message}
        if self.errors:
            body["errors"] = list(self.errors)
        return Reply(self.status, body, self.headers)
