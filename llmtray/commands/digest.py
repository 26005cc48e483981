"""`llmtray digest`: print the digest of a local day (default yesterday), or mail it with --send."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

from llmtray.core import periods
from llmtray.core.errors import LLMTrayError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digest", help="the daily (or weekly) spend digest; --send mails it",
                       description="The digest of one local day: spend of the day and month to date (the "
                                   "figures `llmtray status` gave at that day's end), budgets, top features, "
                                   "models and projects, alerts and unpriced calls. Mail settings: [email] in "
                                   "config.toml; password in the keyring or LLMTRAY_SMTP_PASSWORD.")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the local day (default: yesterday)")
    p.add_argument("--weekly", action="store_true", help="the seven days ending on --date")
    p.add_argument("--send", action="store_true", help="mail it to [email] to (exit 1 with the reason if it fails)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    from llmtray.core.db import open_db
    from llmtray.mail import digest, smtp
    from llmtray.mail.service import send_digest

    config = ctx.config
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            raise LLMTrayError(f"--date {args.date!r}: expected a date such as 2026-01-31") from None
    else:
        day = periods.today(config.tz) - timedelta(days=1)
    kind = "weekly" if args.weekly else "daily"
    ctx.paths.ensure()
    db = open_db(ctx.paths.db)
    try:
        if not args.send:
            print(digest.render_text(digest.build(db, config, day, kind=kind), config.tz), end="")
            return 0
        try:
            sent = send_digest(db, config, day, smtp.load_password(), kind=kind)
        except smtp.MailError as exc:
            print(f"llmtray: digest not sent ({exc.kind}): {exc}", file=sys.stderr)
            return 1
        print(f"sent {sent.title} to {', '.join(config.email.to)}")
        return 0
    finally:
        db.close()
