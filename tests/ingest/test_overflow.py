"""Issue #26 item 10 over the real API: values whose sums can't be stored are a 400 naming the
field and index (not a 503 that a client retries forever), and nothing of the batch is stored."""

from __future__ import annotations

from tests.ingest.conftest import count_events, event


def test_ten_billion_dollar_events_are_refused_naming_cost_usd(client, service):
    client.post("/v1/events", json=[event(100)]).raise_for_status()
    r = client.post("/v1/events", json=[event(i, cost_usd=999999999) for i in range(10)])
    assert r.status_code == 400
    assert {"index": 0, "field": "cost_usd", "message": "must be ≤ 10000000 USD, got 999999999"} in r.json()["errors"]
    assert count_events(service.paths.db) == 1  # the earlier event is intact, none of the batch stored


def test_a_batch_that_can_never_be_stored_is_a_400_not_a_retry(client, service):
    r = client.post("/v1/events", json=[event(i, input_tokens=10**15) for i in range(882)])
    assert r.status_code == 400 and "Retry-After" not in r.headers
    errors = r.json()["errors"]
    assert errors[881] == {"index": 881, "field": "input_tokens", "message": f"must be ≤ {10**12}, got {10**15}"}
    assert count_events(service.paths.db) == 0
    assert client.post("/v1/events", json=[event(i, input_tokens=10**12) for i in range(3)]).status_code == 200


def test_a_day_total_past_int64_is_a_400_and_the_day_keeps_working(client, service):
    """Every value within its cap, but 923 calls of $10M in one day and rollup key exceed 2^63
    nano-dollars: SQLite's 'integer overflow' is a 400 (the same batch can never be stored),
    not a 503 a client retries forever; the batch is not stored, later ones are."""
    big = [event(i, cost_usd=10**7) for i in range(923)]
    r = client.post("/v1/events", json=big)
    assert r.status_code == 400 and "Retry-After" not in r.headers
    assert "past 2^63" in r.json()["error"]
    assert count_events(service.paths.db) == 0
    assert client.post("/v1/events", json=big[:900]).status_code == 200
    assert client.post("/v1/events", json=[event(2000)]).status_code == 200
    assert count_events(service.paths.db) == 901
