"""A real PostgreSQL server for the test session: `initdb` into a temp dir, on a free port.

The team-mode half of the suite runs against it. It comes from the Debian `postgresql` package
(`.ci/run` installs it); where that can't be had, those tests skip and say why. Set
`LLMTRAY_TEST_POSTGRES_URL` (a superuser's URL) to use a server of your own instead.

Each test gets a database of its own, cloned from a template that already holds llmtray's
schema (a clone costs a few milliseconds; creating the schema, a few hundred).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-test-pw"  # the superuser's: tests check it never reaches a log or a message
TEMPLATE = "llmtray_template"


@dataclass
class PgServer:
    base: str  # postgresql://postgres:PASSWORD@127.0.0.1:PORT
    data: Path | None = None  # None: a server we didn't start
    binaries: Path | None = None
    options: str = ""
    _counter: itertools.count = itertools.count()

    def url(self, db: str) -> str:
        return f"{self.base}/{db}"

    def admin(self):  # noqa: ANN201
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True)

    def prepare_template(self) -> None:
        from llmtray.core import dburl, db as dbmod

        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        dbmod.migrate(dburl.parse(self.url(TEMPLATE)))

    def new_database(self, *, schema: bool = True) -> str:
        """A fresh database's URL (with llmtray's schema, or empty)."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE} STRATEGY file_copy" if schema else ""))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def halt(self) -> None:
        """Stop the server as a crash would (`-m immediate`), keeping its data: "unreachable"."""
        assert self.data is not None and self.binaries is not None
        _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], self.data)

    def resume(self) -> None:
        """Start a halted server again, on the same port."""
        assert self.data is not None and self.binaries is not None
        _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-o", self.options, "-l",
                   str(self.data.parent / "log"), "-w", "start"], self.data)

    def stop(self) -> None:
        if self.data is not None and self.binaries is not None:
            _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], self.data,
                      check=False)
            shutil.rmtree(self.data.parent, ignore_errors=True)


def _binaries() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _as_owner(cmd: list[str], data: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd=data.parent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tls: tuple[bytes, bytes] | None = None) -> PgServer | str:
    """A running server, or why there can't be one (the reason a skipped test gives). Its files
    live in a folder of its own under the system temp dir: as root, pytest's temp folders are
    closed to the `postgres` user the server runs as. `tls`: (certificate, key) PEM — the server
    then speaks TLS and refuses connections without it."""
    given = os.environ.get("LLMTRAY_TEST_POSTGRES_URL")
    if given:
        server = PgServer(given.rstrip("/").rsplit("/", 1)[0])
        server.prepare_template()
        return server
    binaries = _binaries()
    if binaries is None:
        return "no PostgreSQL server binaries (apt install postgresql, or set LLMTRAY_TEST_POSTGRES_URL)"
    if os.geteuid() == 0:
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    tmp = Path(tempfile.mkdtemp(prefix="llmtray-pg-"))
    data = tmp / "pgdata"
    pwfile = tmp / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    init = _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"], data, check=False)
    if init.returncode != 0:
        return f"initdb failed: {init.stderr.strip()[-300:]}"
    port = _free_port()
    # fsync off (a test's data needn't survive a power cut), but every commit still reaches the
    # WAL before it returns: the spool and kill -9 tests stop the server as a crash would
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off " \
           "-c full_page_writes=off -c max_connections=200"
    if tls is not None:
        for name, pem in zip(("server.crt", "server.key"), tls):
            (data / name).write_bytes(pem)
            (data / name).chmod(0o600)
            if os.geteuid() == 0:
                os.chown(data / name, owner.pw_uid, owner.pw_gid)
        hba = data / "pg_hba.conf"
        hba.write_text(hba.read_text().replace("\nhost ", "\nhostssl "))
        opts += " -c ssl=on"
    run = _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                    data, check=False)
    if run.returncode != 0:
        log = (tmp / "log").read_text(errors="replace")[-500:] if (tmp / "log").exists() else run.stderr
        return f"PostgreSQL didn't start: {log.strip()}"
    server = PgServer(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}", data, binaries, opts)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.admin().close()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                return "PostgreSQL started but takes no connections"
            time.sleep(0.1)
    server.prepare_template()
    return server
