"""MailService against a real SMTP server: alert mails once per crossing (restarts, snooze),
failures in the alert history and retried, the outbox kept over a stop, the digest on schedule
and once only — also after days off."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from llmtray.config import Config, EmailConfig
from llmtray.core.alerts import Alert, AlertLog
from llmtray.core.budgets import Budget, BudgetBook
from llmtray.core.db import open_db
from llmtray.core.monitor import BudgetMonitor
from llmtray.core.store import to_us
from llmtray.mail.service import DIGEST_LAST, OUTBOX, MailService
from tests.core.budget_kit import event, open_store
from tests.mail.smtp_kit import PASSWORD, USER, free_port

NOW = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)


def email_config(port: int, **kw) -> Config:  # noqa: ANN003
    email = EmailConfig(host="127.0.0.1", port=port, security="none", sender="llmtray@example.com",
                        to=("me@example.com",), alerts=True, **kw)
    return Config(email=email)


class Results:
    """`on_result` calls, waited for without sleeps."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool, str]] = []
        self.cond = threading.Condition()

    def __call__(self, what: str, ok: bool, detail: str) -> None:
        with self.cond:
            self.items.append((what, ok, detail))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[str, bool, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


def service(db: Path, config: Config, results: Results | None = None, clock=lambda: NOW, **kw) -> MailService:  # noqa: ANN001, ANN003
    mail = MailService(db, lambda: config, clock=clock, backoff_s=0.2, on_result=results, tick_s=5, **kw)
    mail.start()
    return mail


def state(db_path: Path, prefix: str) -> dict[str, str]:
    db = open_db(db_path)
    try:
        S = AlertLog(db).models.AlertState
        return {r.key: r.value for r in S.select().where(S.key.startswith(prefix))}
    finally:
        db.close()


def history(db_path: Path) -> list[Alert]:
    db = open_db(db_path)
    try:
        return AlertLog(db).history()
    finally:
        db.close()


def crossing_store(data_dir: Path) -> Path:
    store = open_store(data_dir / "llmtray.db")
    BudgetBook(store.db).add(Budget("api", 10_000_000_000, "month"))
    store.add([event(NOW - timedelta(hours=1), "9")], "hook")  # 90 %: crosses 50 and 80
    store.close()
    return data_dir / "llmtray.db"


def run_monitor(db: Path, config: Config, mail: MailService) -> None:
    monitor = BudgetMonitor(db, config, [mail], clock=lambda: NOW)
    monitor.start()
    assert monitor.sync(20)
    monitor.stop()


def test_a_crossing_is_mailed_once_across_restarts(data_dir, smtp_server):
    server = smtp_server("plain")
    db, config = crossing_store(data_dir), email_config(server.port)
    results = Results()
    mail = service(db, config, results)
    run_monitor(db, config, mail)
    [(rcpt, msg)] = server.inbox.wait_for(1)
    assert msg["Subject"] == "[llmtray] Budget “api” at 80%" and "$9.00 of $10.00" in msg.get_content()
    assert rcpt == ["me@example.com"]
    mail.close()
    # The pace alert raised in the same pass waited in the 30 s notification throttle when the
    # monitor stopped: the next start delivers it (to the tray and by mail), once.
    for _ in range(2):  # restarts: every crossing is known, nothing is mailed again
        mail = service(db, config, results)
        run_monitor(db, config, mail)
        mail.wake()
        mail.close()
    subjects = [m["Subject"] for _, m in server.inbox.received]
    assert subjects == ["[llmtray] Budget “api” at 80%", "[llmtray] Budget “api” on pace to exceed"]
    assert state(db, OUTBOX) == {} and [r[:2] for r in results.items] == [("alert", True)] * 2


def test_snoozed_alerts_are_not_mailed(data_dir, smtp_server):
    server = smtp_server("plain")
    db, config = crossing_store(data_dir), email_config(server.port)
    sdb = open_db(db)
    AlertLog(sdb).snooze(NOW + timedelta(hours=2))
    sdb.close()
    mail = service(db, config)
    run_monitor(db, config, mail)
    mail.wake()
    mail.close()
    assert server.inbox.received == [] and state(db, OUTBOX) == {}
    assert [a.snoozed for a in history(db)] == [True, True]  # threshold and pace: logged, held


def test_alert_mail_off_sends_nothing(data_dir, smtp_server):
    server = smtp_server("plain")
    db = crossing_store(data_dir)
    config = replace(email_config(server.port), email=replace(email_config(server.port).email, alerts=False))
    mail = service(db, config)
    run_monitor(db, config, mail)
    mail.wake()
    mail.close()
    assert server.inbox.received == []


def test_failure_is_recorded_and_retried_until_the_server_answers(data_dir, smtp_server):
    db, port = crossing_store(data_dir), free_port()
    config, results = email_config(port), Results()
    mail = service(db, config, results, clock=lambda: datetime.now(UTC))
    mail.send(Alert("spike", "warning", "Spend spike", "x5", to_us(NOW)))
    what, ok, detail = results.wait_for(1)[0]
    assert (what, ok) == ("alert", False) and "connection refused" in detail
    [failure] = [a for a in history(db) if a.kind == "mail"]
    assert failure.title == "Alert mail not sent" and "Spend spike" in failure.body and f"127.0.0.1:{port}" in \
        failure.body and failure.delivered  # shown in the log, never forwarded as another notification
    server = smtp_server("plain", port=port)
    [(_, msg)] = server.inbox.wait_for(1)
    assert msg["Subject"] == "[llmtray] Spend spike"
    mail.close()
    assert state(db, OUTBOX) == {} and [r[1] for r in results.items][-1] is True
    assert len([a for a in history(db) if a.kind == "mail"]) == 1  # one record per mail, not per attempt


def test_an_unreachable_server_holds_the_whole_outbox_until_the_backoff(data_dir):
    db, results = crossing_store(data_dir), Results()
    mail = MailService(db, lambda: email_config(free_port()), clock=lambda: NOW, backoff_s=60, on_result=results)
    mail.start()
    for i in range(3):
        mail.send(Alert("spike", "warning", f"Spend spike {i}", "x5", to_us(NOW)))
    results.wait_for(1)
    for _ in range(3):
        mail.wake()
    mail.close()
    assert len(results.items) == 1  # one try, not one per queued mail (and no busy loop)
    attempts = sorted(json.loads(v)["attempts"] for v in state(db, OUTBOX).values())
    assert attempts == [0, 0, 1]
    assert len([a for a in history(db) if a.kind == "mail"]) == 1


def test_a_title_with_a_line_break_is_mailed_on_one_line(data_dir, smtp_server):
    server = smtp_server("plain")
    db, results = crossing_store(data_dir), Results()
    mail = service(db, email_config(server.port), results)
    mail.send(Alert("runaway", "critical", "Runaway feature “chat\nbot”", "40 calls/min", to_us(NOW)))
    [(_, msg)] = server.inbox.wait_for(1)
    mail.close()
    assert msg["Subject"] == "[llmtray] Runaway feature “chat bot”" and results.items[0][1] is True


def test_outbox_survives_a_stop(data_dir, smtp_server):
    db, port = crossing_store(data_dir), free_port()
    config, results = email_config(port), Results()
    mail = service(db, config, results)
    mail.send(Alert("runaway", "critical", "Runaway feature", "chat at 40 calls/min", to_us(NOW)))
    results.wait_for(1)
    mail.close()
    assert len(state(db, OUTBOX)) == 1
    server = smtp_server("plain", port=port)
    mail = service(db, config, results, clock=lambda: NOW + timedelta(minutes=5))
    [(_, msg)] = server.inbox.wait_for(1)
    mail.close()
    assert msg["Subject"] == "[llmtray] Runaway feature" and state(db, OUTBOX) == {}


def test_permanent_refusal_is_not_retried(data_dir, smtp_server):
    server = smtp_server("plain")
    db, results = crossing_store(data_dir), Results()
    config = email_config(server.port)
    config = replace(config, email=replace(config.email, to=("nobody@refused.example",)))
    mail = service(db, config, results)
    mail.send(Alert("spike", "warning", "Spend spike", "x5", to_us(NOW)))
    results.wait_for(1)
    mail.wake()
    mail.close()
    assert state(db, OUTBOX) == {} and len(results.items) == 1
    [failure] = [a for a in history(db) if a.kind == "mail"]
    assert "nobody@refused.example" in failure.body and "Not retried" in failure.body


BERLIN = "Europe/Berlin"
DAY = date(2026, 3, 17)


def digest_store(data_dir: Path) -> Path:
    store = open_store(data_dir / "llmtray.db")
    store.add([event(datetime.combine(DAY, time(10), ZoneInfo(BERLIN)), "1.25", feature="chat")], "hook")
    store.close()
    return data_dir / "llmtray.db"


def digest_config(port: int, **kw) -> Config:  # noqa: ANN003
    config = email_config(port, digest="daily", digest_at="08:00", **kw)
    return replace(config, timezone=BERLIN)


MORNING = datetime.combine(DAY + timedelta(days=1), time(9), ZoneInfo(BERLIN))


def test_digest_goes_once_at_digest_at(data_dir, smtp_server):
    server = smtp_server("plain")
    db, config, results = digest_store(data_dir), digest_config(server.port), Results()
    early = service(db, config, results, clock=lambda: MORNING - timedelta(hours=2))  # 07:00: the day before's
    [(_, first)] = server.inbox.wait_for(1)
    early.close()
    assert "Mon 16 Mar" in first["Subject"] and state(db, DIGEST_LAST) == {DIGEST_LAST: "2026-03-16"}
    mail = service(db, config, results, clock=lambda: MORNING)
    [_, (_, msg)] = server.inbox.wait_for(2)
    mail.wake()
    mail.close()
    assert msg["Subject"] == "llmtray daily digest — Tue 17 Mar 2026: $1.25"
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html", "image/png"}
    mail = service(db, config, results, clock=lambda: MORNING + timedelta(hours=3))  # restarted: not again
    mail.wake()
    mail.close()
    assert len(server.inbox.received) == 2 and state(db, DIGEST_LAST) == {DIGEST_LAST: "2026-03-17"}


def test_digest_missed_for_days_is_sent_once(data_dir, smtp_server):
    server = smtp_server("plain")
    db, config = digest_store(data_dir), digest_config(server.port)
    sdb = open_db(db)
    AlertLog(sdb).set_state(DIGEST_LAST, (DAY - timedelta(days=6)).isoformat())
    sdb.close()
    mail = service(db, config, clock=lambda: MORNING)
    [(_, msg)] = server.inbox.wait_for(1)
    mail.wake()
    mail.close()
    assert len(server.inbox.received) == 1 and "Tue 17 Mar" in msg["Subject"]


def test_digest_failure_is_in_the_history_and_retried(data_dir, smtp_server, trust):
    server = smtp_server("starttls", auth=True)
    db, results = digest_store(data_dir), Results()
    config = digest_config(server.port, username=USER)
    config = replace(config, email=replace(config.email, security="starttls"))
    passwords = iter(["wrong", PASSWORD])
    mail = service(db, config, results, clock=lambda: datetime.now(UTC), password=lambda: next(passwords))
    assert results.wait_for(1)[0][:2] == ("digest", False)
    [failure] = [a for a in history(db) if a.kind == "mail"]
    assert failure.title == "Digest not sent" and "wrong SMTP username or password" in failure.body
    assert results.wait_for(2)[1][:2] == ("digest", True)  # retried after the backoff, with the fixed password
    mail.close()
    assert len(server.inbox.received) == 1
