"""The daily digest in team mode: every machine has email set up, the team gets one mail."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from llmtray.core import dburl
from llmtray.core.store import Store
from tests.core.budget_kit import event
from tests.mail.conftest import cert, smtp_server  # noqa: F401 - the mail tests' real SMTP server
from tests.mail.test_service import BERLIN, DAY, MORNING, Results, digest_config, service


def test_three_machines_due_at_once_send_one_digest(team_url, smtp_server):  # noqa: F811
    server = smtp_server("plain")
    url = dburl.parse(team_url)
    store = Store.open(url)
    store.add([event(datetime.combine(DAY, time(10), ZoneInfo(BERLIN)), "1.25", feature="chat")], "hook")
    store.close()
    config, results = digest_config(server.port), Results()
    machines = [service(url, config, results, clock=lambda: MORNING) for _ in range(3)]
    try:
        [(_, msg)] = server.inbox.wait_for(1)
        for mail in machines:  # each one looks again: the digest is the team's, already sent
            mail.wake()
    finally:
        for mail in machines:
            mail.close()
    assert len(server.inbox.received) == 1
    assert msg["Subject"] == "llmtray daily digest — Tue 17 Mar 2026: $1.25"
