"""Bad input the fuzzer found (fixed in 8fd00ee): each is a 400 naming its field, and never fails
anyone else's batch (DESIGN §5: invalid events → 400, nothing stored; a batch is atomic — its
own, not its neighbours' in the same group commit).

Two inputs got past validation: JSON's `\\ud800` escapes (a lone surrogate is valid JSON but
not Unicode; SQLite can't encode it) and timestamps at the edge of the calendar whose UTC
conversion overflowed. The first failed the whole group commit — another client's good batch,
committed in the same transaction, was refused with a 503 (and hook senders retry a 503
forever); the second was a 500 with a traceback in the log.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtray.core.events import UsageEvent
from llmtray.core.store import AddResult, Batch, Store
from tests.ingest.conftest import event, make_service, stored_ids

POISON = [  # (body, the field its 400 names)
    (b'{"provider": "openai", "model": "gpt-\\ud800"}', "model"),
    (b'{"provider": "openai", "model": "m", "tags": {"\\udfff": "x"}}', "tags"),
    (b'{"provider": "openai", "model": "m", "feature": "caf\\udce9"}', "feature"),
    (b'{"provider": "openai", "model": "m", "id": "\\udc80"}', "id"),
]


def _post(url: str, token: str, body: bytes) -> httpx.Response:
    with httpx.Client(headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                      timeout=30) as client:
        return client.post(f"{url}/v1/events", content=body)


@pytest.mark.parametrize(("body", "field"), POISON, ids=[f for _, f in POISON])
def test_a_lone_surrogate_is_a_400_naming_the_field(data_dir: Path, body: bytes, field: str):
    service = make_service(data_dir)
    try:
        reply = _post(service.url, service.token, body)
        assert reply.status_code == 400, reply.text
        assert {"index": 0, "field": field} == {k: reply.json()["errors"][0][k] for k in ("index", "field")}
    finally:
        service.stop()
    assert stored_ids(service.paths.db) == set()


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_at_the_calendars_edge_is_a_400(data_dir: Path, ts: str):
    service = make_service(data_dir)
    try:
        reply = _post(service.url, service.token, b'{"provider": "openai", "model": "m", "ts": "%s"}' % ts.encode())
    finally:
        service.stop()
    assert reply.status_code == 400, reply.text
    assert reply.json()["errors"][0]["field"] == "ts"


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_one_clients_bad_batch_never_fails_another_clients_batch(data_dir: Path):
    """A good batch and a poisoned one queue while the writer waits for the database lock, so
    they meet in one group commit; the good one must be stored and acknowledged regardless."""
    service = make_service(data_dir)
    replies: dict[str, httpx.Response] = {}

    def post(name: str, body: bytes) -> None:
        replies[name] = _post(service.url, service.token, body)

    blocker = sqlite3.connect(service.paths.db, isolation_level=None)
    threads: list[threading.Thread] = []
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer's next commit waits (busy_timeout 10 s)
        threads.append(threading.Thread(target=post, args=("first", b'[%s]' % _json(event(0)))))
        threads[-1].start()
        _wait(lambda: service.writer.backlog == 1)
        threads.append(threading.Thread(target=post, args=("good", b'[%s, %s]' % (_json(event(1)), _json(event(2))))))
        threads.append(threading.Thread(target=post, args=("poison", POISON[0][0])))
        for t in threads[1:]:
            t.start()
        _wait(lambda: service.writer.backlog == 4 or (service.writer.backlog == 3 and "poison" in replies))
        blocker.execute("COMMIT")
    finally:
        blocker.close()
        for t in threads:
            t.join(30)
        service.stop()
    assert replies["first"].status_code == 200
    assert replies["good"].status_code == 200, replies["good"].text
    assert replies["poison"].status_code == 400, replies["poison"].text
    assert stored_ids(service.paths.db) == {"ev-0", "ev-1", "ev-2"}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def test_store_add_many_keeps_the_other_batches_when_one_cannot_be_encoded(data_dir: Path):
    """The store's own promise ("a batch that fails yields its exception; the others still
    commit"), for a failure SQLite raises while binding parameters rather than executing."""
    now = datetime.now(UTC)
    good = [UsageEvent(provider="openai", model="gpt-4o-mini", ts=now, id=f"g{i}") for i in range(2)]
    poison = UsageEvent(provider="openai", model="gpt-\ud800", ts=now, id="p")
    store = Store.open(data_dir / "llmtray.db")
    try:
        results = store.add_many([Batch([good[0]], "api"), Batch([poison], "api"), Batch([good[1]], "api")])
    finally:
        store.close()
    assert isinstance(results[0], AddResult) and isinstance(results[2], AddResult)
    assert isinstance(results[1], Exception)
    assert stored_ids(data_dir / "llmtray.db") == {"g0", "g1"}
