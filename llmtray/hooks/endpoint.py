"""Where the running llmtray listens, found the way DESIGN §5 says: environment first, then `ingest.json`.

Stdlib-only (plus `llmtray.paths` and the server's own `ingest.discovery` reader) because it runs
inside users' applications. It is read again after every failed delivery and after a 401, so a
tray that restarts on another port or with a new token is found without restarting the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llmtray import paths
from llmtray.ingest import discovery as announcement


@dataclass(frozen=True)
class Endpoint:
    """Base URL of the ingest API (scheme://host:port, no path) and its bearer token."""

    url: str
    token: str | None

    @property
    def host_port(self) -> tuple[str, int, bool]:
        """(host, port, https) for `http.client`."""
        parts = urlsplit(self.url)
        https = parts.scheme == "https"
        return parts.hostname or "127.0.0.1", parts.port or (443 if https else 80), https


def _base(url: str) -> str:
    """Accept `http://127.0.0.1:8787`, with or without a trailing `/` or `/v1`."""
    url = url.strip().rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def discover() -> Endpoint | None:
    """The ingest endpoint, or None when no llmtray is known to run (nothing to connect to).

    `LLMTRAY_URL` / `LLMTRAY_TOKEN` win field by field over `ingest.json` in the runtime folder
    (the data dir when `LLMTRAY_DATA_DIR` is set) — `llmtray.ingest.discovery`, stdlib only."""
    found = announcement.discover(paths.resolve().ingest_file)
    return Endpoint(_base(found.url), found.token) if found is not None else None


def spool_dir() -> Path:
    """The spool folder of this installation (or of `LLMTRAY_DATA_DIR`)."""
    return paths.resolve().spool_dir
