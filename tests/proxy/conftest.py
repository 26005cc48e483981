"""Fixtures for the proxy tests: a stub upstream, and the real ingest service (proxy mounted) on an
ephemeral port over a throwaway data dir, its upstreams pointed at the stub through config."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtray.config import Config
from llmtray.core.store import event_json, iter_event_rows
from llmtray.ingest.service import IngestService
from llmtray.ingest.messages import Limits
from llmtray.paths import Paths
from tests.proxy.stub import StubUpstream

FAST_LIMITS = Limits(header_timeout=5.0, body_timeout=5.0, shutdown_grace=2.0, linger=1.0)


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    s = StubUpstream()
    yield s
    s.close()


def stub_config(stub: StubUpstream) -> Config:
    return Config(upstreams={"openai": stub.url, "anthropic": stub.url, "google": stub.url,
                             "openrouter": f"{stub.url}/api", "azure-test": f"{stub.url}/openai"})


@pytest.fixture
def service(data_dir: Path, stub: StubUpstream) -> Iterator[IngestService]:
    s = IngestService(Paths(data_dir, data_dir, data_dir), stub_config(stub), port=0, limits=FAST_LIMITS)
    s.start()
    assert s.wait_ready(30)
    yield s
    s.stop()  # before the stub closes (fixture order): the proxy's pooled connections go first


def stored_events(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        out = []
        for row in iter_event_rows(conn):
            event = event_json(row)
            event["cost_nanos"] = row["cost_nanos"]
            out.append(event)
        return out
    finally:
        conn.close()


def wait_events(service: IngestService, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The stored events once there are `n` (the proxy records after the response, not before)."""
    deadline = time.monotonic() + timeout
    while True:
        events = stored_events(service.paths.db)
        if len(events) >= n or time.monotonic() > deadline:
            assert len(events) == n, f"expected {n} stored events, found {len(events)}: {events}"
            return events
        time.sleep(0.02)
