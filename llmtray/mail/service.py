"""`MailService`: alert mails and the scheduled digest, on a thread of their own.

It is an `AlertSink`: the budget monitor hands it each notification it hands the tray (so the
once-only rule, snooze and quiet hours hold for mail exactly as for notifications), `send`
returns at once, and the thread does the SMTP work with a timeout. A mail waits in an outbox —
rows `mail:outbox:*` of the `alert_state` table — until the server took it, so a failure is
retried with exponential backoff and an app that quits first sends it at its next start. Each
failure that matters (the first of a mail, giving up) is written to the alert history, where the
window's Alerts tab shows it. The digest is due at `digest_at` local time; the day it covered is
kept (`mail:digest_last`), so a digest missed while the machine was off goes once at the next start.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from email.message import EmailMessage
from functools import partial
from pathlib import Path

import peewee as pw

from llmtray.config import Config, load
from llmtray.core.alerts import Alert, AlertLog, AlertSink
from llmtray.core.db import open_db
from llmtray.core.store import from_us, to_us
from llmtray.mail import digest as digestmod
from llmtray.mail.smtp import TIMEOUT_S, MailError, load_password, send
from llmtray.paths import Paths

log = logging.getLogger(__name__)

OUTBOX = "mail:outbox:"
DIGEST_CLAIM = "mail:digest_claim"  # a digest being sent now, by whom it doesn't matter: when (µs)
CLAIM_US = 10 * 60 * 1_000_000  # longer than any sending with its timeouts
DIGEST_LAST = "mail:digest_last"
TICK_S = 60.0  # how often the digest schedule is looked at (and the config re-read)

Result = Callable[[str, bool, str], None]  # (what: "alert" | "digest", ok, detail)


def alert_message(title: str, body: str) -> EmailMessage:
    """An alert as a short plain-text mail: the title is the subject, as in a notification (on
    one line: a feature name with a newline must not end the header or break the mail)."""
    msg = EmailMessage()
    msg["Subject"] = f"[llmtray] {' '.join(title.split())}"
    msg.set_content(f"{body}\n\n— llmtray (the alert log in its window keeps every alert)\n")
    return msg


def send_digest(db: pw.SqliteDatabase, config: Config, last: date, password: str | None, *,
                kind: str = "daily", now: datetime | None = None, timeout: float = TIMEOUT_S) -> digestmod.Digest:
    """Build the digest ending on `last` and mail it (raises `MailError`)."""
    d = digestmod.build(db, config, last, kind=kind, now=now)
    send(config.email, digestmod.message(d, config), password, timeout=timeout)
    return d


def last_news(db_path: Path, tz: tzinfo | None) -> str:
    """One line for Settings: the last digest sent and the last mail failure, if any ("" when
    there is neither, or no database yet). Reads the database: call it off the GUI thread."""
    if not db_path.exists():
        return ""
    db = open_db(db_path, migrate_schema=False)
    try:
        alerts = AlertLog(db)
        last = alerts.get_state(DIGEST_LAST)
        A = alerts.models.AlertRow
        failure = A.select().where(A.kind == "mail").order_by(A.ts.desc(), A.id.desc()).first()
    finally:
        db.close()
    parts = [f"Last digest: {date.fromisoformat(last):%a %d %b}." if last else ""]
    if failure is not None:
        parts.append(f"Last problem, {from_us(failure.ts).astimezone(tz):%a %d %b %H:%M}: {failure.title} — "
                     f"{failure.body}")
    return " ".join(p for p in parts if p)


class MailService(AlertSink):
    """Alert mails and digests for one database. `load_config` is called on the mail thread at
    every step, so what Settings saves applies without a restart; `on_result` hears how each
    sending ended (from the mail thread)."""

    @classmethod
    def for_paths(cls, paths: Paths, on_result: Result | None = None) -> MailService:
        """The service of a data folder, re-reading its config.toml at every step."""
        return cls(paths.db, partial(load, paths.config_file), on_result=on_result)

    def __init__(self, db_path: Path, load_config: Callable[[], Config], *,
                 clock: Callable[[], datetime] | None = None,
                 password: Callable[[], str | None] = load_password, timeout_s: float = TIMEOUT_S,
                 attempts: int = 8, backoff_s: float = 60.0, max_backoff_s: float = 3600.0,
                 tick_s: float = TICK_S, on_result: Result | None = None):
        self.db_path = db_path
        self.load_config = load_config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.password = password
        self.timeout_s = timeout_s
        self.attempts, self.backoff_s, self.max_backoff_s = attempts, backoff_s, max_backoff_s
        self.tick_s = tick_s
        self.on_result = on_result
        self._queue: queue.Queue[object] = queue.Queue()  # Alert, _WAKE or None (stop)
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._digest_retry_us = 0
        self._digest_attempts = 0
        self._outbox_wait_us = 0  # set when the server can't be used at all: no mail before then

    # --- other threads --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("mail service already started")
        self._thread = threading.Thread(target=self._run, name="llmtray-mail", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> None:
        self._queue.put(alert)

    def wake(self) -> None:
        """Look at the outbox and the digest schedule now (tests; after Settings changed)."""
        self._queue.put(_WAKE)

    def close(self) -> None:
        """Stop after the mail in hand; alerts not yet in the outbox are put there for next time."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    # --- the mail thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            db = open_db(self.db_path)
        except Exception:
            log.exception("mail: cannot open %s; no alert mails or digests this session", self.db_path)
            return
        try:
            alerts = AlertLog(db)
            config = self._config(None)
            self._step(db, alerts, config)  # at start: mail left from last time, a digest missed while off
            while True:
                timeout = self._next_wait(alerts, config)
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = _WAKE
                config = self._config(config)
                if item is None:
                    self._drain(alerts, config)
                    return
                if isinstance(item, Alert):
                    self._enqueue(alerts, config, item)
                self._step(db, alerts, config)
        except Exception:
            log.exception("mail service stopped by an error")
        finally:
            db.close()

    def _config(self, previous: Config | None) -> Config:
        try:
            return self.load_config()
        except Exception as exc:  # a config.toml broken by hand: keep what worked
            log.warning("mail: config unreadable (%s); keeping the previous settings", exc)
            return previous or Config()

    def _next_wait(self, alerts: AlertLog, config: Config) -> float:
        """Seconds until the outbox or the digest needs a look (at most a tick: the config and
        the schedule are re-read then). Mail can't go while email isn't set up: no wake-ups for it."""
        now_us = to_us(self.clock())
        due = [max(entry["next_us"], self._outbox_wait_us) for _, entry in self._outbox(alerts)] \
            if config.email.configured else []
        if self._digest_retry_us:
            due.append(self._digest_retry_us)
        soonest = (min(due) - now_us) / 1e6 if due else self.tick_s
        return max(0.0, min(soonest, self.tick_s))

    def _drain(self, alerts: AlertLog, config: Config) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Alert):
                self._enqueue(alerts, config, item)

    def _step(self, db: pw.SqliteDatabase, alerts: AlertLog, config: Config) -> None:
        for what, fn in (("alert mail", self._flush), ("digest", self._digest)):
            try:
                fn(db, alerts, config)
            except (pw.PeeweeException, sqlite3.Error, OSError) as exc:  # a locked database: the next step retries
                log.warning("mail: %s step failed: %s", what, exc)
            except Exception:  # a bug in one step must not end alert mail for the session
                log.exception("mail: %s step failed", what)

    # outbox of alert mails

    def _enqueue(self, alerts: AlertLog, config: Config, alert: Alert) -> None:
        if not (config.email.alerts and config.email.configured):
            return
        self._seq += 1
        key = f"{OUTBOX}{to_us(self.clock()):020d}:{self._seq:06d}"
        alerts.set_state(key, json.dumps({"subject": alert.title, "body": alert.body, "attempts": 0, "next_us": 0}))

    @staticmethod
    def _outbox(alerts: AlertLog) -> list[tuple[str, dict]]:
        S = alerts.models.AlertState
        rows = S.select().where(S.key.startswith(OUTBOX)).order_by(S.key)
        return [(r.key, json.loads(r.value)) for r in rows]

    def _flush(self, db: pw.SqliteDatabase, alerts: AlertLog, config: Config) -> None:
        if not config.email.configured or to_us(self.clock()) < self._outbox_wait_us:
            return
        for key, entry in self._outbox(alerts):
            if entry["next_us"] > to_us(self.clock()):
                continue
            exc = self._attempt(lambda: send(config.email, alert_message(entry["subject"], entry["body"]),
                                             self.password(), timeout=self.timeout_s))
            if exc is not None:
                entry["attempts"] += 1
                last = not exc.retry or entry["attempts"] >= self.attempts
                if entry["attempts"] == 1 or last:
                    self._record(alerts, "Alert mail not sent", f"“{entry['subject']}”: {exc}. "
                                 + ("Not retried." if last else "Retrying with backoff."))
                if last:
                    alerts.set_state(key, None)
                else:
                    entry["next_us"] = to_us(self.clock()) + self._backoff_us(entry["attempts"])
                    alerts.set_state(key, json.dumps(entry))
                self._report("alert", False, str(exc))
                if exc.kind in ("unreachable", "auth", "password", "tls", "config"):
                    # the next mail would fail the same way: the whole outbox waits for this backoff
                    self._outbox_wait_us = entry["next_us"] if not last else to_us(self.clock())
                    return
            else:
                alerts.set_state(key, None)
                self._report("alert", True, entry["subject"])

    # digest

    def _digest(self, db: pw.SqliteDatabase, alerts: AlertLog, config: Config) -> None:
        email, now = config.email, self.clock()
        last = alerts.get_state(DIGEST_LAST)
        target = digestmod.due(email.digest, email.digest_at, now, config.tz, config.week_start,
                               date.fromisoformat(last) if last else None)
        if target is None or not email.configured or to_us(now) < self._digest_retry_us:
            return
        if not self._claim(db, alerts, target, to_us(now)):
            return  # another machine of the team sends this one (or already did)
        exc = self._attempt(lambda: send_digest(db, config, target, self.password(), kind=email.digest, now=now,
                                                timeout=self.timeout_s))
        if exc is not None:
            alerts.set_state(DIGEST_CLAIM, None)
            self._digest_attempts += 1
            self._digest_retry_us = to_us(now) + self._backoff_us(self._digest_attempts)
            if self._digest_attempts == 1:
                self._record(alerts, "Digest not sent", f"The {email.digest} digest for {target}: {exc}. "
                             "Retrying with backoff.")
            self._report("digest", False, str(exc))
            return
        with db.atomic("IMMEDIATE"):  # sent, and the claim let go, at once: nobody sends it again
            alerts.set_state(DIGEST_LAST, target.isoformat())
            alerts.set_state(DIGEST_CLAIM, None)
        self._digest_attempts, self._digest_retry_us = 0, 0
        self._report("digest", True, target.isoformat())

    @staticmethod
    def _claim(db: pw.Database, alerts: AlertLog, target: date, now_us: int) -> bool:
        """Take the digest of `target` for this process, in the database: with a team's machines
        sharing one (DESIGN §16) only one of them mails it. A claim older than `CLAIM_US` was
        left by a process that died while sending; it is taken over."""
        with db.atomic("IMMEDIATE"):
            last = alerts.get_state(DIGEST_LAST)
            if last is not None and date.fromisoformat(last) >= target:
                return False
            claim = alerts.get_state(DIGEST_CLAIM)
            if claim is not None and now_us - int(claim) < CLAIM_US:
                return False
            alerts.set_state(DIGEST_CLAIM, str(now_us))
        return True

    # helpers

    @staticmethod
    def _attempt(fn: Callable[[], object]) -> MailError | None:
        """Run one sending; any other error (a bug, a database that can't be read) counts as a
        failed try too — with its backoff — so it can neither kill the mail thread nor spin it."""
        try:
            fn()
        except MailError as exc:
            return exc
        except Exception as exc:
            log.exception("mail: sending failed unexpectedly")
            return MailError("server", f"{type(exc).__name__}: {exc}")
        return None

    def _backoff_us(self, attempts: int) -> int:
        return int(min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s) * 1_000_000)

    def _record(self, alerts: AlertLog, title: str, body: str) -> None:
        """A mail failure in the alert history, marked delivered: it is shown in the Alerts tab,
        not re-sent to the sinks (a mail about a mail that can't be sent would only fail again)."""
        stored = alerts.record(Alert("mail", "warning", title, body, to_us(self.clock())), snoozed=False)
        alerts.mark_delivered([stored.id] if stored.id is not None else [])

    def _report(self, what: str, ok: bool, detail: str) -> None:
        if not ok:
            log.warning("mail: %s not sent: %s", what, detail)
        if self.on_result is not None:
            try:
                self.on_result(what, ok, detail)
            except Exception:
                log.exception("mail result listener failed")


_WAKE = object()
