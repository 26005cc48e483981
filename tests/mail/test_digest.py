"""The digest's figures are `status --json`'s and `report`'s for the same day, in several zones;
later traffic never leaks into a past day; the mail has a text part and HTML with a real PNG."""

from __future__ import annotations

import io
import json
import struct
import zlib
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llmtray import cli
from llmtray.config import load
from llmtray.core import periods, status
from llmtray.core.alerts import Alert, AlertLog
from llmtray.core.budgets import Budget, BudgetBook, Scope
from llmtray.core.events import UsageEvent
from llmtray.core.money import nanos_to_str
from llmtray.core.store import to_us
from llmtray.mail import chart, digest
from tests.core.budget_kit import event, open_store

DAY = date(2026, 3, 8)  # a 23-hour day in Los Angeles (DST starts)
ZONES = ["UTC", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata"]


def local(tz: str, day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), ZoneInfo(tz)).astimezone(UTC)


def freeze(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The CLI's clock (status and report read `datetime.now`) stopped at `at`."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return at.astimezone(tz) if tz else at.replace(tzinfo=None)

    monkeypatch.setattr(status, "datetime", Frozen)
    monkeypatch.setattr(periods, "datetime", Frozen)


def cli_json(data_dir: Path, *args: str) -> object:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["--data-dir", str(data_dir), *args]) == 0
    return json.loads(out.getvalue())


def fill(data_dir: Path, tz: str) -> None:
    (data_dir / "config.toml").write_text(f'[display]\ntimezone = "{tz}"\n', encoding="utf-8")
    store = open_store(data_dir / "llmtray.db")
    prev_month = DAY.replace(day=1) - timedelta(days=3)
    store.add([
        event(local(tz, prev_month, 12), "50", feature="chat"),  # not this month
        event(local(tz, DAY - timedelta(days=5), 9), "3.25", feature="chat", project="web"),
        event(local(tz, DAY - timedelta(days=1), 23, 50), "1.10", feature="search", project="web"),
        event(local(tz, DAY, 0, 5), "0.40", feature="chat", project="web"),
        event(local(tz, DAY, 12), "2.00", feature="search", project="api", model="gpt-4o-mini"),
        event(local(tz, DAY, 23, 55), "0.75", feature="summary", project="api"),
        UsageEvent(ts=local(tz, DAY, 13), provider="acme", model="mystery-1", input_tokens=10),  # unpriced
    ], "hook")
    BudgetBook(store.db).add(Budget("monthly", 10_000_000_000, "month"))
    BudgetBook(store.db).add(Budget("chat-daily", 300_000_000, "day", Scope(feature="chat")))
    alerts = AlertLog(store.db)
    alerts.record(Alert("spike", "warning", "Spend spike", "x4 in 15 minutes", to_us(local(tz, DAY, 12, 1))),
                  snoozed=False)
    alerts.record(Alert("pace", "warning", "Yesterday's pace", "earlier", to_us(local(tz, DAY - timedelta(days=1),
                                                                                       22))), snoozed=False)
    store.close()


@pytest.mark.parametrize("tz", ZONES)
def test_digest_figures_are_status_and_report_of_that_day(data_dir, monkeypatch, tz):
    fill(data_dir, tz)
    day_end = local(tz, DAY + timedelta(days=1), 0) - timedelta(microseconds=1)
    freeze(monkeypatch, day_end)
    status_json = cli_json(data_dir, "status", "--json")
    by_model = cli_json(data_dir, "report", "--since", DAY.isoformat(), "--by", "model", "--format", "json")
    by_feature = cli_json(data_dir, "report", "--since", DAY.isoformat(), "--by", "feature", "--format", "json")

    config = load(data_dir / "config.toml")
    store = open_store(data_dir / "llmtray.db")
    d = digest.build(store.db, config, DAY, now=day_end + timedelta(hours=8))  # sent next morning
    assert json.loads(json.dumps(d.summary)) == status_json
    assert d.summary["today_usd"] == "3.15" and d.summary["month_usd"] == "7.5"
    for dim, report in (("model", by_model), ("feature", by_feature)):
        assert [(k or "(none)", nanos_to_str(t.cost_nanos), t.requests, t.unpriced) for k, t in d.top[dim]] == \
            [(r[dim], r["cost_usd"], r["requests"], r["unpriced_requests"]) for r in report["rows"]][:digest.TOP]
    assert [a.title for a in d.alerts] == ["Spend spike"]
    assert d.unpriced == [("acme", "mystery-1", 1)]
    assert d.chart_days[-1] == DAY and d.chart_nanos[-1] == 3_150_000_000 and d.chart_nanos[-2] == 1_100_000_000

    # traffic after the day (next morning) leaves the digest of that day as it was
    store.add([event(local(tz, DAY + timedelta(days=1), 1), "9.99", feature="chat")], "hook")
    again = digest.build(store.db, config, DAY, now=day_end + timedelta(hours=9))
    assert again.summary == d.summary and again.top == d.top and again.chart_nanos == d.chart_nanos
    store.close()


def test_weekly_digest_sums_the_seven_days(data_dir):
    fill(data_dir, "Europe/Berlin")
    store = open_store(data_dir / "llmtray.db")
    d = digest.build(store.db, load(data_dir / "config.toml"), DAY, kind="weekly")
    assert (d.first, d.last) == (DAY - timedelta(days=6), DAY)
    assert d.period.cost_nanos == 7_500_000_000 and d.period.unpriced == 1
    assert d.title.startswith("llmtray weekly digest")
    store.close()


def _png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + data)
        if kind == b"IHDR":
            size = struct.unpack(">II", data[:8])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    w, h = size
    rows = [raw[i * (w * 3 + 1) + 1:(i + 1) * (w * 3 + 1)] for i in range(h)]
    return w, h, rows


def test_mail_has_text_and_html_with_an_inline_chart(data_dir):
    fill(data_dir, "UTC")
    config = load(data_dir / "config.toml")
    store = open_store(data_dir / "llmtray.db")
    msg = digest.message(digest.build(store.db, config, DAY), config)
    store.close()
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "$3.15" in text and "$7.50" in text and "monthly" in text and "Spend spike" in text
    assert "acme/mystery-1: 1" in text and "Top features" in text and "search" in text
    assert "mystery-1: no price (1 request)" in text and "$0.00" not in text  # unpriced is never $0
    assert "of $0.30 per day (133%)" in text  # not "today": the mail is read the next morning
    [image] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html and "$3.15" in html
    w, h, rows = _png_pixels(image.get_content())
    assert (w, h) == (chart.WIDTH, chart.HEIGHT)
    bottom = rows[h - chart.PAD - 1]
    assert bytes(chart.LAST) in bottom and bytes(chart.BAR) in bottom  # the day's bar and earlier ones
    assert msg["Subject"].endswith("$3.15")


def test_chart_scales_exactly_and_refuses_nothing():
    with pytest.raises(ValueError):
        chart.bar_chart_png([])
    w, h, rows = _png_pixels(chart.bar_chart_png([0, 5, 10]))
    column = lambda x: [rows[y][x * 3:x * 3 + 3] for y in range(h)]  # noqa: E731
    tall = sum(1 for px in column(w - 60) if px == bytes(chart.LAST))
    half = sum(1 for px in column(w // 2) if px == bytes(chart.BAR))
    assert tall == h - 2 * chart.PAD and half == (h - 2 * chart.PAD) // 2
    assert all(px != bytes(chart.BAR) for px in column(20))  # a zero day draws no bar


BERLIN = ZoneInfo("Europe/Berlin")


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), BERLIN)


@pytest.mark.parametrize("now, last_sent, expected", [
    (at(DAY, 7, 59), None, DAY - timedelta(days=2)),  # before 08:00: the day before yesterday is the newest due
    (at(DAY, 7, 59), DAY - timedelta(days=2), None),
    (at(DAY, 8, 0), DAY - timedelta(days=2), DAY - timedelta(days=1)),
    (at(DAY, 8, 0), DAY - timedelta(days=1), None),  # sent once
    (at(DAY, 9, 0), DAY - timedelta(days=9), DAY - timedelta(days=1)),  # off for a week: one digest, not nine
])
def test_daily_digest_due(now, last_sent, expected):
    assert digest.due("daily", "08:00", now, BERLIN, 0, last_sent) == expected


def test_weekly_digest_due_on_the_first_day_of_the_week():
    monday = date(2026, 3, 9)
    assert digest.due("weekly", "08:00", at(monday, 7), BERLIN, 0, None) == monday - timedelta(days=8)
    assert digest.due("weekly", "08:00", at(monday, 8), BERLIN, 0, monday - timedelta(days=8)) == \
        monday - timedelta(days=1)
    assert digest.due("weekly", "08:00", at(monday + timedelta(days=3), 8), BERLIN, 0, monday - timedelta(days=1)) \
        is None
    assert digest.due("off", "08:00", at(monday, 9), BERLIN, 0, None) is None
