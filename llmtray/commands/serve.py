"""`llmtray serve`: the ingest API without the tray (servers, CI, headless boxes), logging to stderr."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from types import FrameType
from typing import Any

from llmtray.core.errors import LLMTrayError

log = logging.getLogger("llmtray.serve")

ACTIVITY_INTERVAL_S = 60.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the ingest API headless (no tray), logging to stderr",
        description="Serve the local ingest API (POST /v1/events, GET /v1/health, GET /v1/summary) "
                    "until Ctrl-C or SIGTERM; every accepted event is committed before it is acknowledged.")
    p.add_argument("--port", type=int, metavar="N",
                   help="TCP port (default: LLMTRAY_PORT, else ingest.port in config.toml, else 8787; "
                        "0 picks a free port)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1); non-loopback addresses need --allow-remote")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow listening on a non-loopback address (anyone who can reach it and has the "
                        "token can post events; traffic is not encrypted)")
    p.set_defaults(run=run)


def _log_activity(service: Any, stop: threading.Event) -> None:
    """One INFO line per minute in which something happened."""
    from llmtray.ingest.api import Activity

    before = Activity()
    while not stop.wait(ACTIVITY_INTERVAL_S):
        now = service.api.activity_snapshot()
        if now.requests == before.requests:
            continue
        log.info("last minute: %d events stored, %d duplicates, %d requests (%d rejected, %d failed); backlog %d",
                 now.accepted - before.accepted, now.duplicates - before.duplicates, now.requests - before.requests,
                 now.rejected - before.rejected, now.failed - before.failed, service.writer.backlog)
        before = now


def run(args: argparse.Namespace, ctx: Any) -> int:
    # Imported here, not at the top: every `llmtray` command builds this parser, and these
    # (httpx, the price data) cost a quick command like `agents scan` a tenth of a second.
    from llmtray.core.alerts import WebhookSink, load_webhook_url
    from llmtray.core.monitor import BudgetMonitor
    from llmtray.ingest.service import IngestService
    from llmtray.mail.service import MailService

    package_log = logging.getLogger("llmtray")
    if package_log.getEffectiveLevel() > logging.INFO:
        package_log.setLevel(logging.INFO)  # the CLI default is WARNING; a daemon reports what it does
    ctx.paths.ensure()
    service = IngestService(ctx.paths, ctx.config, host=args.host, port=args.port,
                            allow_remote=args.allow_remote, watch_agents=True)
    monitor, webhook, mail = None, None, None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing in-flight requests", signal.Signals(signum).name)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C / SIGTERM ends it at once

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = False
    try:
        service.start()
        try:
            while not service.wait_ready(0.2):
                if stop.is_set():
                    return 0
        except sqlite3.Error as exc:
            raise LLMTrayError(f"cannot open the database {ctx.paths.db}: {exc}") from None
        except OSError as exc:
            raise LLMTrayError(f"cannot start: {exc}") from None
        started = True
        if service.recovered is not None:
            print(f"llmtray serve: {service.recovered.message()}", file=sys.stderr, flush=True)
        # Budgets: threshold, pace, spike and runaway alerts, delivered to the webhook (if one
        # is set in the keyring or the 0600 file), by mail (if [email] alerts is on) and always to the alert history.
        webhook = WebhookSink(url_loader=lambda: load_webhook_url(ctx.paths.webhook_file))
        mail = MailService.for_paths(ctx.paths)  # alert mails and the digest ([email] in config.toml)
        monitor = BudgetMonitor(ctx.paths.db, ctx.config, [webhook, mail])
        service.add_listener(monitor.on_commit)
        mail.start()
        if service.billing is not None:
            service.billing.add_alert_listener(monitor.deliver)  # the bill's drift alerts notify too
        monitor.start()
        token = service.token_info
        print(f"llmtray serve: ingest API on {service.url}", flush=True)
        print(f"  token: {token.where}; clients read URL and token from {ctx.paths.ingest_file} "
              "(or LLMTRAY_URL / LLMTRAY_TOKEN)", flush=True)
        print(f"  proxy: {service.url}/proxy/<upstream>/… "
              f"(e.g. OPENAI_BASE_URL={service.url}/proxy/openai/v1)", flush=True)
        activity = threading.Thread(target=_log_activity, args=(service, stop), name="llmtray-activity", daemon=True)
        activity.start()
        stop.wait()
        activity.join()
        return 0
    finally:
        service.stop()  # the writer's last commits still reach the monitor
        if monitor is not None:
            monitor.stop()
        if webhook is not None:
            webhook.close()
        if mail is not None:
            mail.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if started:
            log.info("stopped")
