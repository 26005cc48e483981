"""The webhook sink against a real HTTP receiver on 127.0.0.1 — success, retries on 5xx/429,
no retry on 4xx, receiver down, a stop while backing off, a hanging receiver — its URL in the
keyring, and the alert history."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from llmtray.core.alerts import (
    Alert,
    AlertLog,
    WebhookSink,
    load_webhook_url,
    save_webhook_url,
)
from llmtray.core.db import open_db

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

ALERT = Alert("threshold", "warning", "Budget “api” at 80%", "$82.10 of $100.00 this month (82%).", 1)


class Receiver:
    """A webhook endpoint answering with scripted statuses (then 200), recording every request."""

    def __init__(self, statuses: list[int] | None = None, headers: dict[str, str] | None = None):
        self.statuses = list(statuses or [])
        self.headers = headers or {}
        self.requests: list[tuple[str, str, bytes]] = []
        self.arrived = threading.Condition()
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                    receiver.arrived.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                payload = b"ok" if status == 200 else b"upstream says no"
                self.send_response(status)
                for k, v in receiver.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/T000"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_requests(self, n: int, timeout: float = 20) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= n, timeout)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Results:
    """`on_result` collector with a blocking wait."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool, str]] = []
        self.cond = threading.Condition()

    def __call__(self, alert: Alert, ok: bool, detail: str) -> None:
        with self.cond:
            self.items.append((alert.title, ok, detail))
            self.cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 30) -> list[tuple[str, bool, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


def sink_for(url: str | None, results: Results, **kwargs) -> WebhookSink:
    kwargs.setdefault("backoff_s", 0.01)
    return WebhookSink(url, on_result=results, **kwargs)


def test_posts_slack_compatible_json(receiver):
    results = Results()
    sink = sink_for(receiver.url, results)
    try:
        sink.send(ALERT)
        assert results.wait() == [(ALERT.title, True, "HTTP 200")]
    finally:
        sink.close()
    ((path, ctype, body),) = receiver.requests
    assert path == "/hook/T000" and ctype == "application/json"
    assert json.loads(body) == {"text": "*Budget “api” at 80%*\n$82.10 of $100.00 this month (82%)."}


def test_server_errors_and_rate_limits_are_retried_until_delivered():
    receiver = Receiver([500, 503, 429], headers={"Retry-After": "0"})
    results = Results()
    sink = sink_for(receiver.url, results)
    try:
        sink.send(ALERT)
        assert results.wait() == [(ALERT.title, True, "HTTP 200")]
    finally:
        sink.close()
        receiver.close()
    assert len(receiver.requests) == 4 and len({r[2] for r in receiver.requests}) == 1


def test_a_refusing_hook_is_reported_not_retried():
    receiver = Receiver([404])
    results = Results()
    sink = sink_for(receiver.url, results)
    try:
        sink.send(ALERT)
        assert results.wait() == [(ALERT.title, False, "HTTP 404: upstream says no")]
    finally:
        sink.close()
        receiver.close()
    assert len(receiver.requests) == 1


def test_persistent_failure_gives_up_after_the_attempts():
    receiver = Receiver([500] * 10)
    results = Results()
    sink = sink_for(receiver.url, results, attempts=3)
    try:
        sink.send(ALERT)
        ((title, ok, detail),) = results.wait()
    finally:
        sink.close()
        receiver.close()
    assert (title, ok, detail) == (ALERT.title, False, "HTTP 500: upstream says no")
    assert len(receiver.requests) == 3


def test_receiver_down_is_reported_and_the_next_alert_still_goes_out(receiver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port nobody listens on: connection refused
        down = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
        results = Results()
        sink = sink_for(down, results, attempts=3)
        try:
            sink.send(ALERT)
            ((_, ok, detail),) = results.wait()
        finally:
            sink.close()
    assert not ok and detail.startswith("ConnectError")
    results = Results()
    sink = sink_for(receiver.url, results)  # the hook is back
    try:
        sink.send(ALERT)
        assert results.wait()[0][1] is True
    finally:
        sink.close()


def test_close_interrupts_a_long_backoff():
    receiver = Receiver([500] * 10)
    results = Results()
    sink = sink_for(receiver.url, results, backoff_s=3600)
    try:
        sink.send(ALERT)
        assert receiver.wait_requests(1)
    finally:
        sink.close()  # returns without waiting an hour
        receiver.close()
    ((_, ok, detail),) = results.items
    assert not ok and detail.endswith("(stopped before retrying)")


def test_send_never_waits_for_a_hanging_receiver(receiver):
    receiver.hold = threading.Event()
    results = Results()
    sink = sink_for(receiver.url, results, max_queued=1)
    try:
        sink.send(ALERT)  # in flight, the receiver holds it
        assert receiver.wait_requests(1)
        sink.send(Alert("spike", "warning", "second", "b", 2))  # queued
        sink.send(Alert("spike", "warning", "third", "b", 3))  # backlog full: dropped and reported
        assert results.wait(1) == [("third", False, "webhook backlog full")]
        receiver.hold.set()
        assert [r[:2] for r in results.wait(3)] == [("third", False), (ALERT.title, True), ("second", True)]
    finally:
        sink.close()


# --- the URL in the keyring ------------------------------------------------------------------------


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    previous = keyring.get_keyring()
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_webhook_url_lives_in_the_keyring(file_keyring, receiver):
    assert load_webhook_url() is None
    save_webhook_url(receiver.url)
    assert file_keyring.get_password("llmtray", "webhook_url") == receiver.url
    moved = Receiver()
    results = Results()
    sink = WebhookSink(on_result=results, backoff_s=0.01)  # reads the keyring on its own thread
    try:
        sink.send(ALERT)
        assert results.wait() == [(ALERT.title, True, "HTTP 200")]
        save_webhook_url(moved.url)  # the user pastes a new hook in the settings: the next alert goes there
        sink.send(ALERT)
        assert results.wait(2)[1] == (ALERT.title, True, "HTTP 200")
    finally:
        sink.close()
        moved.close()
    assert len(receiver.requests) == 1 and len(moved.requests) == 1
    save_webhook_url(None)
    save_webhook_url(None)  # removing twice is fine
    assert load_webhook_url() is None
    with pytest.raises(ValueError, match="must start with https://"):
        save_webhook_url("hooks.slack.com/services/x")


def test_without_a_keyring_the_sink_reports_no_url():
    results = Results()  # the suite's null keyring backend stores nothing
    sink = WebhookSink(on_result=results)
    try:
        sink.send(ALERT)
        assert results.wait() == [(ALERT.title, False,
                                   "no webhook URL set (keyring service 'llmtray', key 'webhook_url')")]
    finally:
        sink.close()


# --- history ---------------------------------------------------------------------------------------


def test_history_keeps_every_alert_newest_first(data_dir):
    db = open_db(data_dir / "llmtray.db")
    try:
        log = AlertLog(db)
        a = log.record(Alert("threshold", "info", "a", "x", 10, budget="api", period="day", period_start_us=5),
                       snoozed=False)
        b = log.record(Alert("spike", "warning", "b", "y", 20), snoozed=True)
        log.mark_delivered([a.id])
        assert [(x.title, x.delivered, x.snoozed) for x in log.history()] == [("b", False, True), ("a", True, False)]
        assert log.history(since_us=15) == [b]
        assert log.history()[1] == Alert("threshold", "info", "a", "x", 10, budget="api", period="day",
                                         period_start_us=5, id=a.id, delivered=True)
        assert log.undelivered(0) == []  # snoozed alerts are not owed to anyone
        with pytest.raises(ValueError, match="severity"):
            Alert("spike", "urgent", "t", "b", 0)
    finally:
        db.close()
