"""More than the writer can take: DESIGN §5's backpressure (`503` with `Retry-After` when the
writer's backlog is full) under a real flood, and a hook sender living through it.

The backlog bound is lowered so a few client threads overrun it. Every answer must be a 200
for exactly its events or a 503 with `Retry-After` for none of them — so the stored ids are
exactly the acknowledged ones — and a hook `Sender` recording meanwhile (it is refused, spools,
backs off as told and retries) must end with every event stored once. Afterwards the server
answers as if nothing had happened.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from llmtray.hooks.endpoint import Endpoint
from llmtray.hooks.sender import Sender
from llmtray.ingest.service import IngestService
from tests.ingest.conftest import event, make_service, stored_ids
from tests.proof.conftest import LIMITS, Mode, id_counts
from tests.proof.rawhttp import health

BACKLOG = 1_000  # events: one flood batch fills it (the default, 50,000, needs more clients than cores here)


class Flood:
    """Threads posting 1,000-event batches back to back for `seconds`."""

    def __init__(self, service: IngestService, clients: int, seconds: float):
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.statuses: dict[int, int] = {}
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(service, c, seconds), name=f"proof-flood-{c}")
                         for c in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self, service: IngestService, client: int, seconds: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        headers = {"Authorization": f"Bearer {service.token}", "Content-Type": "application/json"}
        deadline, n = time.monotonic() + seconds, 0
        try:
            while time.monotonic() < deadline:
                ids = [f"flood-{client}-{n + i}" for i in range(1000)]
                n += len(ids)
                conn.request("POST", "/v1/events", json.dumps([event(i, id=x) for i, x in enumerate(ids)]), headers)
                response = conn.getresponse()
                answer = json.loads(response.read())
                with self._lock:
                    self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                    if response.status == 200 and answer == {"accepted": len(ids), "duplicates": 0}:
                        self.acked.update(ids)
                    elif response.status == 503 and response.getheader("Retry-After", "").isdigit():
                        self.refused.update(ids)
                    else:
                        self.problems.append(f"{response.status} {response.headers} {answer}")
        finally:
            conn.close()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self) -> None:
        for t in self._threads:
            t.join(120)


def test_a_flood_gets_503s_for_whole_batches_and_a_hook_sender_rides_it_out(data_dir: Path, mode: Mode):
    service = make_service(data_dir, LIMITS)
    service.writer.max_backlog = BACKLOG
    sender = Sender(data_dir / "spool", discover=lambda: Endpoint(service.url, service.token))
    try:
        flood = Flood(service, clients=4, seconds=mode.pick(3, 30))
        recorded: list[str] = []
        while flood.running():  # bursts: the sender posts batches of up to 500
            for _ in range(250):
                recorded.append(f"hook-{len(recorded)}")
                sender.submit({**event(len(recorded)), "id": recorded[-1]})
            time.sleep(0.05)
        flood.join()
        delivered = sender.flush(60)
        stats = sender.stats()
        assert health(service.port) == 200
    finally:
        sender.close()
        service.stop()
    print(f"\nflood answers {flood.statuses}; hook sender {stats}")
    assert not flood.problems, flood.problems[:3]
    assert flood.statuses.get(503, 0) > 0, "the flood never filled the backlog: nothing was proven"
    stored = stored_ids(service.paths.db)
    assert {x for x in stored if x.startswith("flood-")} == flood.acked  # 200 = all of it, 503 = none of it
    assert stats["spooled"] > 0, "the hook sender was never refused: its retry path was not exercised"
    assert delivered and stats["dropped"] == 0 and stats["dead_lettered"] == 0
    assert set(id_counts(service.paths.db, "hook-")) == set(recorded)  # each exactly once (ids are unique)
