"""The team database goes away: the machine keeps accepting, keeps every event, delivers later."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from llmtray.config import Config
from llmtray.core import dburl
from llmtray.core.store import Store
from llmtray.ingest.service import IngestService
from llmtray.paths import Paths
from llmtray.team.spool import SPOOL_NAME
from tests import postgres


@pytest.fixture
def own_server() -> Iterator[postgres.PgServer]:
    """A server of this test's own, to stop and start again (the session's is shared)."""
    server = postgres.start()
    if isinstance(server, str):
        pytest.skip(server)
    yield server
    server.stop()


def event(i: int, **fields) -> dict:  # noqa: ANN003
    return {"id": f"spool-{i}", "provider": "openai", "model": "gpt-4o-mini", "ts": "2026-11-20T10:00:00Z",
            "input_tokens": 1000 + i, "output_tokens": 10 * i, **fields}


def health(client: httpx.Client) -> dict:
    return client.get("/v1/health").json()


def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def team_service(url: str, data_dir: Path, machine: str) -> IngestService:
    """This machine's ingest service, writing to the team database at `url`, started."""
    paths = replace(Paths(data_dir, data_dir, data_dir), database=dburl.resolve(url, None, machine))
    service = IngestService(paths, Config(), port=0, sync_bills=False)
    service.start()
    assert service.wait_ready(30)
    return service


def team_totals(url: str) -> tuple:
    store = Store.open(dburl.parse(url))
    try:
        return (store.conn.execute("SELECT count(*), sum(input_tokens), sum(cost_nanos) FROM event").fetchone()
                + store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM rollup_day").fetchone())
    finally:
        store.close()


def test_events_recorded_while_the_team_database_is_down_are_kept_and_delivered(own_server, data_dir: Path):
    url = own_server.new_database(schema=False)
    service = team_service(url, data_dir, "laptop-1")
    try:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.token}"},
                          timeout=30) as client:
            assert client.post("/v1/events", json=[event(i) for i in range(10)]).json()["accepted"] == 10
            assert health(client)["database"] == "ok"

            own_server.halt()
            # accepted while the server is down: committed to the spool, acknowledged as durable
            assert client.post("/v1/events", json=[event(i) for i in range(10, 30)]).json()["accepted"] == 20
            assert client.post("/v1/events", json=[event(i) for i in range(30, 35)]).json()["accepted"] == 5
            state = health(client)
            assert state["database"] == "unreachable" and state["spooled"] == 25 and state["reason"]
            assert (data_dir / SPOOL_NAME).exists()
            # a duplicate of a spooled event is a duplicate, even offline
            assert client.post("/v1/events", json=[event(12)]).json() == {"accepted": 0, "duplicates": 1}

            own_server.resume()
            wait_for(lambda: health(client) == {**health(client), "database": "ok", "spooled": 0})
            assert not (data_dir / SPOOL_NAME).exists()
            assert client.post("/v1/events", json=[event(35)]).json()["accepted"] == 1
    finally:
        service.stop()
    count, tokens, cost, rolled_events, rolled_cost = team_totals(url)
    assert (count, tokens) == (36, sum(1000 + i for i in range(36)))
    assert (rolled_events, rolled_cost) == (count, cost)  # the rollups saw every delivered event, exactly


def test_a_team_database_down_at_start_is_not_a_failed_start(own_server, data_dir: Path):
    url = own_server.new_database(schema=False)
    own_server.halt()
    service = team_service(url, data_dir, "laptop-2")
    try:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.token}"},
                          timeout=30) as client:
            assert client.post("/v1/events", json=[event(i) for i in range(5)]).json()["accepted"] == 5
            assert health(client)["spooled"] == 5
            own_server.resume()
            wait_for(lambda: health(client)["spooled"] == 0)
    finally:
        service.stop()
    assert team_totals(url)[0] == 5


def test_a_reader_carries_on_after_the_server_restarts(own_server):
    """The long-lived readers (monitor, dashboard worker, proxy checks) hold one connection: a
    restart of the server fails the statements meanwhile, then the same connection works again."""
    import sqlite3

    from llmtray.core.queries import Queries

    url = own_server.new_database(schema=False)
    store = Store.open(dburl.parse(url))
    try:
        queries = Queries(store.conn, None)
        assert queries.totals().events == 0
        own_server.halt()
        with pytest.raises(sqlite3.OperationalError):
            queries.totals()
        own_server.resume()
        assert queries.totals().events == 0
        from llmtray.core.events import parse_event

        store.add([parse_event({"ts": "2026-11-20T10:00:00Z", "provider": "openai", "model": "gpt-4o",
                                "input_tokens": 5})], "hook")  # the writer's connection came back too
        assert queries.totals().events == 1
    finally:
        store.close()
