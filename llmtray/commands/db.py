"""`llmtray db copy --to URL`: move a local history into a team's PostgreSQL (DESIGN §16)."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the database: copy a local history into the team database",
                       description="Operations on the store itself.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    c = dsub.add_parser("copy", help="copy every event into another database (again: adds nothing)",
                        description="Copy every event of this data dir's database (or --database) into URL, "
                                    "with its stored cost, through the target's idempotent write path: running it "
                                    "again, or after an interruption, adds nothing twice.")
    c.add_argument("--to", metavar="URL", required=True, help="postgresql://USER@HOST:PORT/DB or sqlite:///PATH")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.set_defaults(run=run_copy)
    pw = dsub.add_parser("password", help="store the team database's password in the keyring",
                         description="Ask for the team database's password and keep it in the keyring (service "
                                     "'llmtray', 'database_password'), so no URL or file holds it.")
    pw.add_argument("--clear", action="store_true", help="forget the stored password")
    pw.set_defaults(run=run_password)


def run_password(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001, ARG001
    import getpass

    import keyring
    import keyring.errors

    from llmtray.core.dburl import KEYRING_PASSWORD, KEYRING_SERVICE

    try:
        if args.clear:
            try:
                keyring.delete_password(KEYRING_SERVICE, KEYRING_PASSWORD)
            except keyring.errors.PasswordDeleteError:
                pass
            print("the team database password is no longer stored")
            return 0
        password = getpass.getpass("team database password: ")
        if not password:
            print("llmtray: error: an empty password was not stored", file=sys.stderr)
            return 2
        keyring.set_password(KEYRING_SERVICE, KEYRING_PASSWORD, password)
    except keyring.errors.KeyringError as exc:
        print(f"llmtray: error: the keyring can't keep it ({exc}); use PGPASSWORD instead", file=sys.stderr)
        return 2
    print("stored in the keyring (service 'llmtray', 'database_password')")
    return 0


def run_copy(args: argparse.Namespace, ctx) -> int:  # noqa: ANN001
    from llmtray.core import dburl
    from llmtray.team.copy import copy_events

    target = dburl.resolve(args.to, None, ctx.config.machine)
    assert target is not None
    source = ctx.paths.db
    if str(target) == str(source):
        print("llmtray: error: --to names the database being copied", file=sys.stderr)
        return 2
    started = time.monotonic()
    last = [0.0]

    def progress(result, total: int) -> None:  # noqa: ANN001
        now = time.monotonic()
        if args.quiet or (now - last[0] < 1.0 and result.read < total):
            return
        last[0] = now
        share = f" ({100 * result.read / total:.0f} %)" if total else ""
        print(f"copied {result.read:,} of {total:,} events{share}", file=sys.stderr, flush=True)

    result = copy_events(source, target, progress=progress)
    print(f"{result.copied:,} events copied to {target}, {result.already:,} already there "
          f"({time.monotonic() - started:.1f} s)")
    return 0
