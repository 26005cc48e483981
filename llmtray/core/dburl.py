"""Where the events live: the embedded SQLite file (the default) or a team's PostgreSQL database.

A `Path` stands for SQLite everywhere in llmtray; `PostgresUrl` is the other kind of location
(DESIGN §16). It prints without its password, so a log line or error message that names the
database (`cannot open %s`) never leaks one, and it finds the password the way the user gave
it: in the URL, in `PGPASSWORD` (libpq's own variable), or in the keyring.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmtray.core.errors import ConfigError

KEYRING_SERVICE = "llmtray"
KEYRING_PASSWORD = "database_password"
SCHEMES = ("sqlite", "postgresql", "postgres")
MACHINE_TAG = "machine"  # the tag every event written in team mode carries (DESIGN §16)


@dataclass(frozen=True)
class PostgresUrl:
    """A `postgresql://USER@HOST:PORT/DB?sslmode=…` URL. `password` is never shown."""

    url: str  # as given, without the password
    password: str | None = field(default=None, repr=False, compare=False)
    machine: str = ""  # who writes through this location: the `machine` tag of its events

    def __str__(self) -> str:
        return self.url

    def conninfo(self) -> dict[str, str]:
        """libpq connection parameters: the URL's, then the password from where it was given
        (the URL, else `PGPASSWORD` — libpq reads that itself — else the keyring)."""
        from psycopg.conninfo import conninfo_to_dict

        params = {k: str(v) for k, v in conninfo_to_dict(self.url).items()}
        password = self.password or (None if os.environ.get("PGPASSWORD") else _keyring_password())
        if password:
            params["password"] = password
        params.setdefault("connect_timeout", "10")
        params.setdefault("application_name", "llmtray")
        # a network that drops without a reset (a laptop's Wi-Fi, a NAT forgetting the flow) is
        # noticed within ~25 s instead of hanging a reader until the kernel gives up (hours)
        for key, value in (("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"),
                           ("keepalives_count", "3")):
            params.setdefault(key, value)
        return params


Database = Path | PostgresUrl  # every function that opens "the database" takes one of these


def parse(text: str, where: str = "--database") -> Database:
    """A database location from a URL (`sqlite:///PATH`, `postgresql://…`) or a plain file path;
    a malformed one is a `ConfigError` that says where it came from and what is wrong."""
    text = text.strip()
    if "://" not in text:
        if not text:
            raise ConfigError(f"{where}: empty database URL")
        return Path(text).expanduser().resolve()
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{where}: unknown database URL scheme {scheme!r} in {_redact(text)!r} "
                          "(use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)")
    parts = urlsplit(text)
    if scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path or path == "/":
            raise ConfigError(f"{where}: a SQLite URL is sqlite:///PATH (three slashes, then the file), "
                              f"got {text!r}")
        return Path(path if not path.startswith("//") else path[1:]).expanduser().resolve()
    password = unquote(parts.password) if parts.password else None
    clean = _redact(text, keep=False)
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(clean)
    except ProgrammingError as exc:
        raise ConfigError(f"{where}: not a valid PostgreSQL URL {clean!r}: {exc}") from None
    if not params.get("dbname"):
        raise ConfigError(f"{where}: the PostgreSQL URL {clean!r} names no database (…/DBNAME at its end)")
    return PostgresUrl("postgresql://" + clean.split("://", 1)[1], password)


def _redact(text: str, *, keep: bool = True) -> str:
    """`text` with the password of its user-info part replaced (`keep`) or removed."""
    head, sep, rest = text.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not at or ":" not in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{head}{sep}{user}{':***' if keep else ''}@{hostpart}"


def _keyring_password() -> str | None:
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, KEYRING_PASSWORD)
    except Exception:  # no backend, a locked keyring: libpq then says the password is missing
        return None


def has_password(text: str) -> bool:
    return urlsplit(text.strip()).password is not None if "://" in text else False


def resolve(explicit: str | None, configured: str | None, machine: str | None = None) -> Database | None:
    """The database chosen by `--database`, else `LLMTRAY_DATABASE_URL`, else `[database] url`
    (None: the data dir's own SQLite file); a team database knows this machine's name."""
    for text, where in ((explicit, "--database"), (os.environ.get("LLMTRAY_DATABASE_URL"), "LLMTRAY_DATABASE_URL"),
                        (configured, "config.toml: database.url")):
        if text:
            found = parse(text, where)
            if isinstance(found, PostgresUrl):
                found = replace(found, machine=machine_name(machine))
            return found
    return None


def machine_name(configured: str | None = None) -> str:
    """This machine's name on team events: `LLMTRAY_MACHINE`, `[database] machine`, the host name."""
    return (os.environ.get("LLMTRAY_MACHINE") or configured or socket.gethostname() or "unknown").strip()


# SQLSTATEs that mean the connection itself is gone: class 08 (connection exception) and the
# server shutting down or starting up (57P01..57P03); a client-side failure has no SQLSTATE.
_LOST_STATES = ("08", "57P01", "57P02", "57P03")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from, and so on (drivers' errors travel wrapped)."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the team database can't be reached or
    dropped the connection — not a bad query, a timeout or a permission (those stay errors).
    The writer spools on it, the GUI's workers reconnect on it. psycopg is only looked at when
    something imported it: a SQLite-only run never pays for it."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    for seen in causes(exc):
        if isinstance(seen, psycopg.InterfaceError):  # "the connection is closed"
            return True
        if isinstance(seen, psycopg.OperationalError):
            state = getattr(seen, "sqlstate", None)
            return state is None or state.startswith(_LOST_STATES)
    return False


def connection_failure(exc: BaseException) -> str | None:
    """What went wrong, when `exc` is the team database refusing or failing a connection
    (refused, timed out, bad password, TLS); None for anything else (the CLI's one-line error)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and any(isinstance(s, (psycopg.OperationalError, psycopg.InterfaceError))
                                   for s in causes(exc)):
        return " ".join(str(exc).split())
    return None


def is_team(database: Database) -> bool:
    return isinstance(database, PostgresUrl)
