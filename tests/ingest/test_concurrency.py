"""Many clients at once: every event stored exactly once, counts add up, listeners agree."""

from __future__ import annotations

import threading

import httpx

from llmtray.core.commits import Committed
from tests.ingest.conftest import build_service, count_events, event, started, stored_ids

CLIENTS, REQUESTS, BATCH = 8, 15, 40


def test_concurrent_clients_with_overlapping_ids(data_dir):
    notices: list[Committed] = []
    service = build_service(data_dir)
    service.add_listener(notices.append)
    started(service)
    answers: list[dict] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.token}"},
                          timeout=60) as http:
            for r in range(REQUESTS):
                # half the ids are shared between client pairs, so duplicates race across requests
                ids = [f"own-{c}-{r}-{i}" if i % 2 else f"shared-{c // 2}-{r}-{i}" for i in range(BATCH)]
                reply = http.post("/v1/events", json=[event(0, id=i) for i in ids])
                assert reply.status_code == 200, reply.text
                with lock:
                    answers.append(reply.json())

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        service.stop()
    sent = CLIENTS * REQUESTS * BATCH
    unique = CLIENTS * REQUESTS * BATCH // 2 + (CLIENTS // 2) * REQUESTS * BATCH // 2
    assert len(answers) == CLIENTS * REQUESTS
    assert sum(a["accepted"] for a in answers) == unique
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == sent
    assert count_events(service.paths.db) == len(stored_ids(service.paths.db)) == unique
    assert sum(n.accepted for n in notices) == unique
    assert len(notices) <= CLIENTS * REQUESTS  # group commits never split a batch
