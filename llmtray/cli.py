"""The `llmtray` command line: global options, then one module per subcommand.

The CLI is a thin layer over the core API (as sqlite-utils does it): each module in
`llmtray.commands` adds its parser and runs against a `Context`; no business logic lives here.
Without a subcommand, `llmtray` starts the tray app.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from llmtray import __version__, paths
from llmtray.config import Config, load
from llmtray.core.errors import ConfigError, LLMTrayError
from llmtray.core.trust import PRIVATE_UMASK

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ("serve", "status", "report", "budgets", "blocks", "guards", "import_", "export", "reprice",
            "digest", "billing", "reconcile", "otel_env", "agents", "db")


@dataclass
class Context:
    """What every subcommand needs: resolved folders and the config, loaded on first use."""

    paths: paths.Paths
    opened: list = field(default_factory=list)  # stores handed out, closed when the command ends

    @cached_property
    def config(self) -> Config:
        return load(self.paths.config_file)

    def with_database(self, explicit: str | None) -> Context:
        """This context on the database `--database`, `LLMTRAY_DATABASE_URL` or `[database] url`
        names (itself when none does: the data dir's SQLite file)."""
        from llmtray.core import dburl

        chosen = dburl.resolve(explicit, self.config.database_url, self.config.machine)
        return replace(self, paths=replace(self.paths, database=chosen)) if chosen is not None else self

    def store(self, *, writes: bool = True):  # noqa: ANN201 - imported lazily so `--help` stays fast
        """The store; `writes=False` (a command that only reads) also works on a read-only data dir."""
        from llmtray.core import db as dbmod
        from llmtray.core.pricing import Pricer, load_overrides
        from llmtray.core.store import Store

        pricer = Pricer(load_overrides(self.paths.pricing_file))
        try:
            self.paths.ensure()
            store = Store.open(self.paths.db, pricer)
        except (sqlite3.OperationalError, OSError) as exc:
            if not dbmod.cannot_write(exc):
                raise
            if writes:
                raise dbmod.write_refused(self.paths.db, exc) from None
            store = Store(dbmod.open_read_only(self.paths.db), pricer)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()

    def queries(self):  # noqa: ANN201
        """Queries for a command that only reads (works on a read-only data dir)."""
        from llmtray.core.queries import Queries

        return Queries(self.store(writes=False).conn, self.config.tz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtray",
        description="See what your LLM API calls cost, live, from the system tray. "
        "Without a command, starts the tray app.",
    )
    parser.add_argument("--version", action="version", version=f"llmtray {__version__}")
    parser.add_argument("--data-dir", metavar="DIR", help="keep everything in DIR (env: LLMTRAY_DATA_DIR)")
    parser.add_argument("--database", metavar="URL",
                        help="the store: postgresql://USER@HOST:PORT/DB?sslmode=… for a team's shared database, or "
                             "sqlite:///PATH (env: LLMTRAY_DATABASE_URL; config: [database] url; default: the data "
                             "dir's llmtray.db)")
    parser.add_argument("--demo", action="store_true", help="run on a separate demo database with live demo traffic")
    parser.add_argument("--screenshot", metavar="PATH", help="render the dashboard offscreen to a PNG and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _command_module(name)
        if module is not None:
            module.add_parser(sub)
    return parser


def _command_module(name: str):  # noqa: ANN202
    try:
        return importlib.import_module(f"llmtray.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"llmtray.commands.{name}":
            return None  # that command has not landed yet
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request's full URL at INFO: webhook URLs (secrets) and proxied URLs with
    # ?key= API keys must never reach a log, even with -v.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Everything this process creates (database and its journals, backups, config, exports) is
    # 0600 even in a pre-existing 0755 folder: feature names and spend are nobody else's business.
    os.umask(PRIVATE_UMASK)
    ctx = Context(paths.resolve(args.data_dir))
    try:
        if args.command is None:
            from llmtray.gui.app import run_app

            try:
                ctx.config  # noqa: B018 - a broken config.toml: the app shows what is wrong in a dialog
            except ConfigError:
                return run_app(ctx, demo=args.demo, screenshot=args.screenshot)
            return run_app(ctx.with_database(args.database), demo=args.demo, screenshot=args.screenshot)
        ctx = ctx.with_database(args.database)
        return int(args.run(args, ctx) or 0)
    except LLMTrayError as exc:
        print(f"llmtray: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `llmtray export | head`
        return 0
    except Exception as exc:
        from llmtray.core.damage import is_corruption, mark_damaged
        from llmtray.core.db import cannot_write, write_refused

        from llmtray.core.dburl import connection_failure

        if args.command is not None and cannot_write(exc):  # a read-only role, data dir or mount
            print(f"llmtray: error: {write_refused(ctx.paths.db, exc)}", file=sys.stderr)
            return 2
        if args.command is not None and (failure := connection_failure(exc)):  # the team database
            print(f"llmtray: error: {failure}", file=sys.stderr)
            return 2
        if not isinstance(exc, sqlite3.DatabaseError):
            raise
        if args.command is None or not is_corruption(exc):
            raise  # the app handles damage itself (and may be on the demo's database)
        mark_damaged(ctx.paths.db, exc)
        print(f"llmtray: error: the database {ctx.paths.db} is damaged ({exc}). Quit llmtray (or `llmtray "
              "serve`) if it is running, then start it: it sets the damaged file aside and salvages every event "
              "it can read.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        ctx.close()
