"""Alerts: what was noticed, the history that keeps every one, and the sinks that deliver them.

Every alert is written to the history first (the window's alert log); OS notifications and the
webhook are best effort on top (DESKTOP.md: notifications may not appear at all). Sinks are
plugged in behind one small interface so the tray's native notifications, the webhook and tests
are interchangeable. A sink's `send` runs on the budget monitor's thread and must return at once:
the webhook queues and posts from a thread of its own, with retries and backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import peewee as pw

from llmtray.core.store import from_us, to_us
from llmtray.private_file import write_private

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
KEYRING_SERVICE = "llmtray"
WEBHOOK_KEY = "webhook_url"
NOTIFY_INTERVAL_S = 30.0  # at most one OS notification per 30 s (DESKTOP.md)


@dataclass(frozen=True)
class Alert:
    """One thing worth telling: a title and a body a person reads in two seconds.

    `kind` is `threshold`, `pace`, `spike`, `runaway`, `guard` or `summary` (several collapsed into one
    notification); `budget`/`period`/`period_start_us` name the budget period it is about."""

    kind: str
    severity: str
    title: str
    body: str
    ts_us: int
    budget: str | None = None
    period: str | None = None
    period_start_us: int | None = None
    id: int | None = None
    delivered: bool = False
    snoozed: bool = False
    feature: str | None = None  # what "Block <feature> for 1 h" would block; not stored (offered live only)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}"


class AlertSink(ABC):
    """Where notifications go. `send` must return immediately and never raise: a sink that does
    slow work (network, D-Bus) queues it on a thread of its own.

    In team mode an alert is recorded once, by the machine whose check claimed it; that machine
    sends it to every sink. A `per_machine` sink (desktop notifications) is also given the
    alerts other machines recorded, so everyone watching the budget sees it on their own screen,
    while a team sink (webhook, email) hears it once."""

    per_machine = False

    @abstractmethod
    def send(self, alert: Alert) -> None: ...

    def close(self) -> None:
        """Release threads and connections; called once when the monitor stops."""


# --- history and alert state -----------------------------------------------------------------


def alert_models(db: pw.Database) -> SimpleNamespace:
    """Peewee models of the alert tables bound to `db` (migration 3 in `core.db` creates them)."""

    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class AlertRow(Base):
        ts = pw.IntegerField()
        kind = pw.TextField()
        severity = pw.TextField()
        title = pw.TextField()
        body = pw.TextField()
        budget = pw.TextField(null=True)
        period = pw.TextField(null=True)
        period_start = pw.IntegerField(null=True)
        delivered = pw.BooleanField(default=False)
        snoozed = pw.BooleanField(default=False)

        class Meta:
            table_name = "alert"

    class AlertState(Base):
        key = pw.TextField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "alert_state"

    return SimpleNamespace(AlertRow=AlertRow, AlertState=AlertState)


class AlertLog:
    """The alert history and the persisted mute state (snooze, quiet hours, cool-downs) of one
    database; use it on the thread that opened `db`."""

    def __init__(self, db: pw.Database):
        self.db = db
        self.models = alert_models(db)

    # history

    def record(self, alert: Alert, *, snoozed: bool) -> Alert:
        """Store an alert (inside the caller's transaction when there is one); returns it with its id."""
        new_id = self.models.AlertRow.insert(
            ts=alert.ts_us, kind=alert.kind, severity=alert.severity, title=alert.title, body=alert.body,
            budget=alert.budget, period=alert.period, period_start=alert.period_start_us, snoozed=snoozed,
        ).execute()
        return replace(alert, id=new_id, snoozed=snoozed)

    def mark_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            A = self.models.AlertRow
            A.update(delivered=True).where(A.id.in_(list(ids))).execute()

    def history(self, limit: int = 200, since_us: int | None = None) -> list[Alert]:
        """Newest first."""
        A = self.models.AlertRow
        q = A.select().order_by(A.ts.desc(), A.id.desc()).limit(limit)
        if since_us is not None:
            q = q.where(A.ts >= since_us)
        return [_alert_from_row(r) for r in q.dicts()]

    def after(self, alert_id: int) -> list[Alert]:
        """Alerts recorded after `alert_id` (by any machine), oldest first."""
        A = self.models.AlertRow
        return [_alert_from_row(r) for r in A.select().where(A.id > alert_id).order_by(A.id).dicts()]

    def last_id(self) -> int:
        A = self.models.AlertRow
        return A.select(pw.fn.coalesce(pw.fn.max(A.id), 0)).scalar()

    def undelivered(self, since_us: int) -> list[Alert]:
        """Alerts recorded but never handed to a sink (the process stopped in between), oldest first."""
        A = self.models.AlertRow
        q = A.select().where((A.ts >= since_us) & (A.delivered == False) & (A.snoozed == False))  # noqa: E712
        return [_alert_from_row(r) for r in q.order_by(A.ts, A.id).dicts()]

    # key/value state

    def get_state(self, key: str) -> str | None:
        row = self.models.AlertState.get_or_none(self.models.AlertState.key == key)
        return row.value if row else None

    def set_state(self, key: str, value: str | None) -> None:
        S = self.models.AlertState
        if value is None:
            S.delete().where(S.key == key).execute()
        else:
            S.insert(key=key, value=value).on_conflict(conflict_target=[S.key], update={S.value: value}).execute()

    # muting

    def snooze(self, until: datetime | None) -> None:
        """Hold OS notifications and webhooks until `until` (None ends a snooze); alerts raised
        meanwhile are still recorded, marked snoozed."""
        self.set_state("snooze_until", None if until is None else str(to_us(until)))

    def snoozed_until(self, now: datetime) -> datetime | None:
        value = self.get_state("snooze_until")
        if value is None or int(value) <= to_us(now):
            return None
        return from_us(int(value))

    def set_quiet_hours(self, start: time | None, end: time | None = None) -> None:
        """Mute every day from `start` to `end` local time (over midnight when end < start);
        `None` turns quiet hours off."""
        if start is None or end is None:
            self.set_state("quiet_hours", None)
        elif start == end:
            raise ValueError("quiet hours need a start and an end that differ")
        else:
            self.set_state("quiet_hours", f"{start.strftime('%H:%M')}-{end.strftime('%H:%M')}")

    def quiet_hours(self) -> tuple[time, time] | None:
        value = self.get_state("quiet_hours")
        if not value:
            return None
        a, b = value.split("-")
        return time.fromisoformat(a), time.fromisoformat(b)

    def muted(self, now: datetime, tz: tzinfo | None) -> bool:
        if self.snoozed_until(now) is not None:
            return True
        hours = self.quiet_hours()
        if hours is None:
            return False
        local = (now.astimezone(tz) if tz is not None else now.astimezone()).time().replace(tzinfo=None)
        start, end = hours
        return start <= local < end if start < end else (local >= start or local < end)


def _alert_from_row(row: dict[str, Any]) -> Alert:
    return Alert(kind=row["kind"], severity=row["severity"], title=row["title"], body=row["body"], ts_us=row["ts"],
                 budget=row["budget"], period=row["period"], period_start_us=row["period_start"], id=row["id"],
                 delivered=bool(row["delivered"]), snoozed=bool(row["snoozed"]))


# --- rate limit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """What the sinks get (`alert`: one alert or a summary) and which stored alerts it covers."""

    alert: Alert
    covers: tuple[Alert, ...]


class NotificationThrottle:
    """At most one notification per `interval_s`: the first alert goes out at once, later ones
    wait and leave together as one summary when the interval is over (leading and trailing edge).
    Times are monotonic seconds passed in, so the logic is testable without a clock."""

    def __init__(self, interval_s: float = NOTIFY_INTERVAL_S):
        self.interval_s = interval_s
        self._last: float | None = None
        self._pending: list[Alert] = []

    def offer(self, alert: Alert, now: float) -> Notification | None:
        self._pending.append(alert)
        return self.due(now)

    def due(self, now: float) -> Notification | None:
        if not self._pending or (self._last is not None and now - self._last < self.interval_s):
            return None
        covers, self._pending = tuple(self._pending), []
        self._last = now
        return Notification(covers[0] if len(covers) == 1 else summarize(covers), covers)

    def next_due(self) -> float | None:
        """When pending alerts may go out (None: nothing pending)."""
        if not self._pending:
            return None
        return self._last + self.interval_s if self._last is not None else 0.0


def summarize(alerts: Sequence[Alert]) -> Alert:
    """Several alerts as one notification: the worst severity, one line per alert."""
    worst = max(alerts, key=lambda a: SEVERITIES.index(a.severity)).severity
    lines = [f"• {a.title}" for a in alerts[:6]]
    if len(alerts) > 6:
        lines.append(f"… and {len(alerts) - 6} more in the alert log")
    offers = {a.feature for a in alerts if a.feature}  # one feature to block: the summary still offers it
    return Alert(kind="summary", severity=worst, title=f"{len(alerts)} llmtray alerts", body="\n".join(lines),
                 ts_us=alerts[-1].ts_us, feature=offers.pop() if len(offers) == 1 else None)


# --- webhook -------------------------------------------------------------------------------------


def load_webhook_url(fallback: Path | None = None) -> str | None:
    """The webhook URL: from the 0600 `fallback` file where there is no keyring (headless Linux),
    else from the keyring (service `llmtray`, key `webhook_url`); None when unset. No keyring at
    all is not worth a warning (it is read for every alert; with no webhook set there is nothing
    to miss); a keyring that fails is. Off the GUI thread: keyrings can block."""
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    if fallback is not None:
        try:
            return fallback.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            pass
    try:
        return keyring.get_password(KEYRING_SERVICE, WEBHOOK_KEY)
    except NoKeyringError:
        return None
    except (KeyringError, RuntimeError, OSError) as exc:
        log.warning("webhook URL unavailable: keyring failed (%s: %s)", type(exc).__name__, exc)
        return None


def save_webhook_url(url: str | None, fallback: Path | None = None) -> str:
    """Keep the webhook URL in the keyring (None removes it; secrets never go to config.toml) and
    say where it went. Without a keyring that keeps passwords, it goes to the `fallback` file
    (mode 0600), as the ingest token does; without a fallback that is an error."""
    import keyring
    from keyring.errors import NoKeyringError, PasswordDeleteError

    if url is None:
        if fallback is not None:
            fallback.unlink(missing_ok=True)
        try:
            keyring.delete_password(KEYRING_SERVICE, WEBHOOK_KEY)
        except (PasswordDeleteError, NoKeyringError):
            pass
        return "removed"
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"webhook URL must start with https:// or http://, got {url[:40]!r}")
    try:
        keyring.set_password(KEYRING_SERVICE, WEBHOOK_KEY, url)
        kept = keyring.get_password(KEYRING_SERVICE, WEBHOOK_KEY) == url  # the null backend drops it
    except NoKeyringError:
        kept = False
    if kept:
        if fallback is not None:
            fallback.unlink(missing_ok=True)  # the keyring's copy wins from now on
        return "the system keyring"
    if fallback is None:
        raise ValueError("no keyring on this system keeps passwords")
    write_private(fallback, url + "\n")
    return f"{fallback} (readable only by you; there is no keyring)"


def slack_payload(alert: Alert) -> dict[str, str]:
    """Slack-compatible incoming-webhook JSON (also understood by Mattermost, Rocket.Chat, …).

    Titles and bodies carry names any local process chooses (a feature header on a proxied call
    needs no token), and Slack reads `<!channel>`, `<@U…>` and `<https://…|label>` as mentions
    and links: the whole text is escaped (our own wording uses none of `&`, `<`, `>`)."""
    return {"text": f"*{slack_escape(alert.title)}*\n{slack_escape(alert.body)}"}


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities Slack documents for them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


WebhookResult = Callable[[Alert, bool, str], None]


class WebhookSink(AlertSink):
    """Posts alerts to a webhook from its own thread, retrying connection errors, 429 and 5xx
    with exponential backoff; other answers (a 404 from a deleted hook) are reported, not retried.

    `on_result(alert, ok, detail)` is told how each delivery ended (the settings dialog shows it).
    Unless a URL is given, it is read from the keyring for each alert, on the sink's thread, so a
    URL changed in the settings or a keyring unlocked after login applies at once."""

    def __init__(self, url: str | None = None, *, url_loader: Callable[[], str | None] = load_webhook_url,
                 attempts: int = 5, backoff_s: float = 2.0, max_backoff_s: float = 300.0, timeout_s: float = 10.0,
                 on_result: WebhookResult | None = None, max_queued: int = 200):
        self._url = url
        self._url_loader = url_loader
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.on_result = on_result
        self._queue: queue.Queue[Alert | None] = queue.Queue(max_queued)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtray-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("webhook backlog full; not sending %r (it stays in the alert log)", alert.title)
            self._report(alert, False, "webhook backlog full")

    def close(self) -> None:
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the worker sees _stop at its next step
        self._thread.join()

    def _run(self) -> None:
        client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        try:
            while not self._stop.is_set():
                alert = self._queue.get()
                if alert is None:
                    break
                self._deliver(client, alert)
            left = self._queue.qsize()
            if left:
                log.info("webhook stopped with %d alert(s) unsent (they stay in the alert log)", left)
        finally:
            client.close()

    def _deliver(self, client: httpx.Client, alert: Alert) -> None:
        url = self._url or self._url_loader()  # read per alert: a changed URL or an unlocked keyring counts
        if url is None:
            self._report(alert, False, "no webhook URL set (keyring service 'llmtray', key 'webhook_url')")
            return
        detail = ""
        for attempt in range(1, self.attempts + 1):
            delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
            try:
                response = client.post(url, json=slack_payload(alert))
            except httpx.TransportError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self._report(alert, True, f"HTTP {response.status_code}")
                    return
                detail = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # the hook refuses this request; retrying won't change its mind
                delay = max(delay, min(_retry_after(response), self.max_backoff_s))
            if attempt < self.attempts and self._stop.wait(delay):
                detail += " (stopped before retrying)"
                break
        log.warning("webhook delivery of %r failed: %s", alert.title, detail)
        self._report(alert, False, detail)

    def _report(self, alert: Alert, ok: bool, detail: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(alert, ok, detail)
            except Exception:  # a listener's bug must not kill delivery
                log.exception("webhook result listener failed")


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
