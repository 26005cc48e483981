"""The digest's cost on a realistic database, beside the naive way and the transport ceiling.

Prints, in one run, on 90 days of demo traffic (`llmtray.demo`, default 1 500 calls/day):
  (a) building yesterday's digest (`mail.digest.build`: status figures, budgets, top features,
      models and projects, 30-day chart, through the rollups) against the naive baseline that
      sums the same figures straight from the event table — and checks both agree to the nano;
  (b) rendering the mail (text, HTML, the PNG chart drawn with zlib);
  (c) sending it to a local aiosmtpd server (if installed) against a bare `smtplib.sendmail` of
      the same bytes on the same server: the transport ceiling.

    python bench/digest.py [--per-day 1500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from llmtray import demo
from llmtray.config import Config, EmailConfig
from llmtray.core import periods
from llmtray.core.budgets import Budget, BudgetBook
from llmtray.core.db import open_db
from llmtray.core.money import nanos_to_str
from llmtray.core.store import Store
from llmtray.mail import digest, smtp
from llmtray.mail.chart import bar_chart_png

TZ = "Europe/Berlin"


def naive(conn, tz: ZoneInfo, day) -> dict:  # noqa: ANN001
    """The same figures from raw events: one scan per figure, no rollups."""
    start, end = periods.midnight_us(day, tz), periods.midnight_us(day + timedelta(days=1), tz)
    month = periods.midnight_us(day.replace(day=1), tz)
    one = lambda sql, *a: conn.execute(sql, a).fetchone()[0] or 0  # noqa: E731
    out = {"day": one("SELECT sum(cost_nanos) FROM event WHERE ts >= ? AND ts < ?", start, end),
           "month": one("SELECT sum(cost_nanos) FROM event WHERE ts >= ? AND ts < ?", month, end)}
    for dim in digest.TOP_DIMENSIONS:
        out[dim] = conn.execute(f"SELECT {dim}, sum(coalesce(cost_nanos, 0)) c FROM event WHERE ts >= ? AND ts < ? "
                                f"GROUP BY 1 ORDER BY c DESC LIMIT {digest.TOP}", (start, end)).fetchall()
    out["chart"] = [one("SELECT sum(cost_nanos) FROM event WHERE ts >= ? AND ts < ?",
                        periods.midnight_us(day - timedelta(days=i), tz),
                        periods.midnight_us(day - timedelta(days=i - 1), tz))
                    for i in range(digest.CHART_DAYS - 1, -1, -1)]
    return out


def timed(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tz = ZoneInfo(TZ)
    config = Config(timezone=TZ)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmtray.db"
        store = Store.open(path)
        now = datetime.now(UTC)
        t = time.perf_counter()
        n = demo.fill(store, days=90, per_day=args.per_day, now=now, tz=tz)
        print(f"{n} demo events in {time.perf_counter() - t:.1f} s")
        store.close()
        db = open_db(path)
        for b in (Budget("all", 10**12, "month"), Budget("daily", 50 * 10**9, "day")):
            BudgetBook(db).add(b)
        day = periods.today(tz, now) - timedelta(days=1)
        built_s, d = timed(lambda: digest.build(db, config, day, now=now), args.repeat)
        naive_s, ref = timed(lambda: naive(db.connection(), tz, day), args.repeat)
        agree = (d.summary["today_usd"], d.chart_nanos) == (nanos_to_str(ref["day"]), ref["chart"]) and all(
            [(k, t.cost_nanos) for k, t in d.top[dim]] == [(k, c) for k, c in ref[dim]] for dim in digest.TOP_DIMENSIONS)
        print(f"(a) build the digest: {built_s * 1e3:.1f} ms | naive from raw events {naive_s * 1e3:.1f} ms "
              f"(x{naive_s / built_s:.1f}); figures agree: {agree}")
        render_s, msg = timed(lambda: digest.message(d, config), args.repeat)
        png_s, png = timed(lambda: bar_chart_png(d.chart_nanos), args.repeat)
        print(f"(b) render the mail: {render_s * 1e3:.1f} ms, of which the PNG chart {png_s * 1e3:.1f} ms "
              f"({len(png)} bytes); whole message {len(msg.as_bytes())} bytes")
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            print("(c) skipped: aiosmtpd not installed")
            return

        class Sink:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
                return "250 OK"

        with socket.socket() as probe:  # aiosmtpd's controller needs a concrete port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(Sink(), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            email = EmailConfig(host="127.0.0.1", port=port, security="none", sender="a@example.com",
                                to=("b@example.com",))
            msg = digest.message(d, config)
            ours, _ = timed(lambda: smtp.send(email, msg, None), args.repeat)
            raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # SMTP lines end in CRLF

            def bare() -> None:
                with smtplib.SMTP("127.0.0.1", port) as s:
                    s.sendmail(email.sender, list(email.to), raw)

            ceiling, _ = timed(bare, args.repeat)
            print(f"(c) send over local SMTP: {ours * 1e3:.1f} ms | bare smtplib.sendmail of "
                  f"the same bytes {ceiling * 1e3:.1f} ms (ceiling)")
        finally:
            controller.stop()
        db.close()


if __name__ == "__main__":
    main()
