"""The digest: a day's (or a week's) spend as a mail, with the figures `status` and `report` give.

One query path: the summary is `core.status.summary` and the top lists are `Queries.by`, run
"as of" the end of the digest's day — an `AsOf` view cuts every sum at that instant, so a digest
sent at 08:00 about yesterday shows what `llmtray status` showed at yesterday's last moment,
whatever has come in since.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import peewee as pw

from llmtray.config import Config
from llmtray.core import periods
from llmtray.core.alerts import Alert, AlertLog
from llmtray.core.budgets import entry, evaluate, load_budgets
from llmtray.core.money import format_usd, usd_to_nanos
from llmtray.core.queries import Filters, Queries, Totals
from llmtray.core.status import summary
from llmtray.core.store import from_us
from llmtray.mail.chart import bar_chart_png

TOP = 5
CHART_DAYS = 30
TOP_DIMENSIONS = ("feature", "model", "project")


class AsOf(Queries):
    """`Queries` that sees nothing at or after `cut_us`: open-ended period sums end there."""

    def __init__(self, queries: Queries, cut_us: int):
        super().__init__(queries.conn, queries.tz)
        self.cut_us = cut_us

    def _grouped(self, f: Filters, group: tuple[str, ...], grain: int | None = None) -> list[tuple[Any, ...]]:
        end = self.cut_us if f.end_us is None else min(f.end_us, self.cut_us)
        return super()._grouped(f.between(f.start_us, end), group, grain)


@dataclass
class Digest:
    """What a digest says. `summary` is `status --json`'s body as of the end of `last`."""

    kind: str  # daily | weekly
    first: date
    last: date
    summary: dict[str, Any]
    period: Totals
    top: dict[str, list[tuple[str, Totals]]]
    unpriced: list[tuple[str, str, int]]
    alerts: list[Alert]
    chart_days: list[date] = field(default_factory=list)
    chart_nanos: list[int] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.kind == "daily":
            return f"llmtray daily digest — {self.last:%a %d %b %Y}"
        return f"llmtray weekly digest — {self.first:%d %b} to {self.last:%d %b %Y}"


def period_for(kind: str, last: date) -> tuple[date, date]:
    """First and last day a digest of `kind` ending on `last` covers."""
    return (last - timedelta(days=6) if kind == "weekly" else last), last


def build(db: pw.SqliteDatabase, config: Config, last: date, *, kind: str = "daily",
          now: datetime | None = None) -> Digest:
    """The digest of the local day `last` (or of the week ending on it), as of the end of that
    day — or of `now`, when the day isn't over yet."""
    tz = config.tz
    now = now or datetime.now(UTC)
    first, last = period_for(kind, last)
    start_us, cut_us = periods.midnight_us(first, tz), periods.midnight_us(last + timedelta(days=1), tz)
    as_of = min(now, from_us(cut_us - 1))
    queries = AsOf(Queries(db.connection(), tz), cut_us)
    week_start = config.week_start

    def budgets(q: Queries, at: datetime) -> list[dict[str, Any]]:
        return [entry(evaluate(q, b, at, week_start), q.tz) for b in load_budgets(q.conn)]

    data = summary(queries, as_of, budgets, week_start)
    span = Filters(start_us=start_us, end_us=cut_us)
    chart_first = last - timedelta(days=CHART_DAYS - 1)
    daily = queries.daily(Filters(), chart_first, last)
    alerts = [a for a in AlertLog(db).history(limit=100, since_us=start_us) if a.ts_us < cut_us]
    return Digest(
        kind=kind, first=first, last=last, summary=data, period=queries.totals(span),
        top={dim: queries.by(dim, span)[:TOP] for dim in TOP_DIMENSIONS},
        unpriced=queries.unpriced_models(span), alerts=list(reversed(alerts)),
        chart_days=daily.days, chart_nanos=daily.totals,
    )


# --- rendering -----------------------------------------------------------------------------------


def _usd(text: str) -> str:
    return format_usd(usd_to_nanos(text))


def _requests(n: int) -> str:
    return f"{n} request{'' if n == 1 else 's'}"


def _lines(d: Digest) -> list[tuple[str, str, str]]:
    """(label, amount, note) rows shared by the text and HTML parts, so they can't say different things."""
    s = d.summary
    rows = []
    if d.kind == "weekly":
        rows.append(("this week", format_usd(d.period.cost_nanos), _requests(d.period.requests)))
    rows += [
        (f"{d.last:%a %d %b}", _usd(s["today_usd"]), _requests(s["today_requests"])),
        ("month to date", _usd(s["month_usd"]), ""),
        ("projected month end", _usd(s["projected_month_usd"]), ""),
    ]
    return rows


# A digest is read the next morning: "today" would be the wrong day.
_PER = {"day": "per day", "week": "per week", "month": "per month"}


def _budget_line(b: dict[str, Any]) -> str:
    state = "" if b["state"] == "ok" else f"  {b['state'].upper()}"
    return (f"{b['name']}: {_usd(b['spent_usd'])} of {_usd(b['limit_usd'])} {_PER[b['period']]} "
            f"({b['percent']:.0f}%), projected {_usd(b['projected_usd'])}{state}")


def _top_line(key: str, t: Totals) -> str:
    if t.unpriced == t.requests:  # never "$0.00" for calls without a price
        return f"{key or '(none)'}: no price ({_requests(t.requests)})"
    extra = f", {t.unpriced} unpriced" if t.unpriced else ""
    return f"{key or '(none)'}: {format_usd(t.cost_nanos)} ({_requests(t.requests)}{extra})"


def _alert_line(a: Alert, tz: tzinfo | None) -> str:
    return f"{from_us(a.ts_us).astimezone(tz):%a %H:%M} {a.title} — {a.body}"


def render_text(d: Digest, tz: tzinfo | None) -> str:
    """The plain-text part (always sent: some readers show nothing else)."""
    out = [d.title, ""]
    out += [f"{label:<22}{amount:>10}   {note}".rstrip() for label, amount, note in _lines(d)]
    out += ["", "Budgets"] + ([f"  {_budget_line(b)}" for b in d.summary["budgets"]] or ["  none"])
    for dim, rows in d.top.items():
        out += ["", f"Top {dim}s"] + ([f"  {_top_line(k, t)}" for k, t in rows] or ["  no spend"])
    out += ["", "Alerts"] + ([f"  {_alert_line(a, tz)}" for a in d.alerts] or ["  none"])
    if d.unpriced:
        out += ["", f"Unpriced calls (not counted above): {sum(n for _, _, n in d.unpriced)}"]
        out += [f"  {p}/{m}: {n}" for p, m, n in d.unpriced]
    out += ["", f"Daily spend, {d.chart_days[0]:%d %b} to {d.chart_days[-1]:%d %b}: "
            f"peak {format_usd(max(d.chart_nanos))}" if d.chart_days else ""]
    return "\n".join(out).rstrip() + "\n"


def render_html(d: Digest, tz: tzinfo | None, chart_cid: str | None) -> str:
    """The HTML part; `chart_cid` is the Content-ID of the inline chart (None: no image)."""
    e = html.escape
    td = 'style="padding:2px 12px 2px 0"'
    parts = [f'<div style="font-family:sans-serif;font-size:14px;color:#222"><h2 style="font-size:18px">'
             f"{e(d.title)}</h2><table>"]
    parts += [f'<tr><td {td}>{e(label)}</td><td {td} align="right"><b>{e(amount)}</b></td><td {td}>{e(note)}</td></tr>'
              for label, amount, note in _lines(d)]
    parts.append("</table>")

    def section(title: str, items: list[str]) -> None:
        parts.append(f'<h3 style="font-size:15px;margin-bottom:4px">{e(title)}</h3><ul style="margin-top:0">')
        parts.extend(f"<li>{e(i)}</li>" for i in items)
        parts.append("</ul>")

    section("Budgets", [_budget_line(b) for b in d.summary["budgets"]] or ["none"])
    if chart_cid:
        parts.append(f'<h3 style="font-size:15px;margin-bottom:4px">Daily spend, {d.chart_days[0]:%d %b} to '
                     f'{d.chart_days[-1]:%d %b} (peak {e(format_usd(max(d.chart_nanos)))})</h3>'
                     f'<img src="cid:{chart_cid[1:-1]}" width="560" height="140" alt="daily spend chart">')
    for dim, rows in d.top.items():
        section(f"Top {dim}s", [_top_line(k, t) for k, t in rows] or ["no spend"])
    section("Alerts", [_alert_line(a, tz) for a in d.alerts] or ["none"])
    if d.unpriced:
        section(f"Unpriced calls (not counted above): {sum(n for _, _, n in d.unpriced)}",
                [f"{p}/{m}: {n}" for p, m, n in d.unpriced])
    parts.append("</div>")
    return "\n".join(parts)


def message(d: Digest, config: Config) -> EmailMessage:
    """The mail: plain text, then HTML with the chart as an inline (cid:) image."""
    msg = EmailMessage()
    msg["Subject"] = f"{d.title}: {_usd(d.summary['today_usd'])}"
    msg.set_content(render_text(d, config.tz))
    cid = make_msgid(domain="llmtray") if d.chart_days else None
    msg.add_alternative(render_html(d, config.tz, cid), subtype="html")
    if cid:
        msg.get_payload()[1].add_related(bar_chart_png(d.chart_nanos), "image", "png", cid=cid,
                                         filename="daily-spend.png")
    return msg


# --- when a digest is due ----------------------------------------------------------------------------


def due(kind: str, digest_at: str, now: datetime, tz: tzinfo | None, week_start: int,
        last_sent: date | None) -> date | None:
    """The last day of the digest due at `now`, or None. Only the newest one is ever due: a
    machine off for a week sends one digest when it starts, not seven."""
    if kind == "off":
        return None
    local = now.astimezone(tz) if tz is not None else now.astimezone()
    at = time.fromisoformat(digest_at)
    today = local.date()
    passed = local.time().replace(tzinfo=None) >= at
    if kind == "daily":
        target = today - timedelta(days=1 if passed else 2)
    else:
        anchor = today - timedelta(days=(today.weekday() - week_start) % 7)  # this week's first day
        if anchor == today and not passed:
            anchor -= timedelta(days=7)
        target = anchor - timedelta(days=1)
    return target if last_sent is None or last_sent < target else None
