"""`IngestService`: the ingest server, its writer and its discovery file, as one thing to embed.

The tray app and `llmtray serve` both use it. `start()` returns within milliseconds: it binds
the port on the caller's thread (so "port taken" is an immediate, clear `PortInUseError`) and
does the slow parts — the keyring (which may sit on an unlock prompt), opening and migrating the
database — on a startup thread; `wait_ready()` reports how that went. Connections that arrive
meanwhile wait in the listen backlog. `stop()` finishes in-flight requests, commits what was
accepted, checkpoints the WAL and removes `ingest.json`.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import json
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from llmtray.billing.sync import BillingScheduler
from llmtray.config import Config
from llmtray.core.backups import FIRST_AFTER_S, BackupScheduler
from llmtray.core.db import cannot_write, write_refused
from llmtray.core.errors import ConfigError, LLMTrayError
from llmtray.core.pricing import PricingFile
from llmtray.core.recovery import Recovered, ensure_usable
from llmtray.core.status import BudgetEntries
from llmtray.hooks.endpoint import Endpoint
from llmtray.ingest import credentials, discovery
from llmtray.ingest.api import IngestAPI
from llmtray.ingest.auth import Guard, is_loopback
from llmtray.ingest.portowner import listener_uid
from llmtray.ingest.proxy import Proxy
from llmtray.ingest.server import Handler, IngestServer
from llmtray.ingest.messages import Limits
from llmtray.ingest.spool_drain import SpoolDrain
from llmtray.ingest.writer import Listener, Writer
from llmtray.paths import Paths
from llmtray.team.spool import SPOOL_NAME

log = logging.getLogger(__name__)

PORT_ENV = "LLMTRAY_PORT"
PROBE_TIMEOUT = 1.0


class PortInUseError(LLMTrayError):
    """The port is taken; `by_llmtray` tells an llmtray already running from another program,
    `foreign_uid` a program of another user (whatever it answers: maybe a squatter)."""

    def __init__(self, host: str, port: int, by_llmtray: bool, version: str | None = None,
                 foreign_uid: int | None = None):
        self.port, self.by_llmtray, self.foreign_uid = port, by_llmtray, foreign_uid
        if foreign_uid is not None:
            message = (f"another user's program (uid {foreign_uid}) holds port {port} on {host} — your proxy "
                       "clients would send it their API keys. Pick another port with --port or LLMTRAY_PORT "
                       "(and point your clients there), and ask who runs it")
        elif by_llmtray:
            message = (f"port {port} on {host} is in use by llmtray {version or ''}".rstrip()
                       + " already running (its /v1/health answers); use that one, stop it, "
                       "or pick another port with --port or LLMTRAY_PORT")
        else:
            message = (f"port {port} on {host} is in use by another program (not llmtray); "
                       "stop it or pick another port with --port or LLMTRAY_PORT")
        super().__init__(message)


class AlreadyRunningError(LLMTrayError):
    """Another live llmtray serves this data dir (its ingest.json names a process that answers)."""


class RemoteBindRefused(LLMTrayError):
    """A non-loopback address without `allow_remote`."""


def resolve_port(config: Config, explicit: int | None = None) -> int:
    """`explicit` (--port), then `LLMTRAY_PORT`, then config.toml's ingest.port (default 8787)."""
    if explicit is not None:
        port = explicit
    elif (env := os.environ.get(PORT_ENV, "").strip()):
        if not env.isdigit() or int(env) > 65535:
            raise ConfigError(f"{PORT_ENV} must be a port number 0–65535, got {env!r}")
        port = int(env)
    else:
        port = config.port
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0–65535, got {port}")
    return port


def probe_health(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The version of the llmtray answering at `url`, or None if what answers (if anything) isn't one."""
    host_port = url.split("://", 1)[-1].rstrip("/")
    conn = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        conn.request("GET", "/v1/health")
        response = conn.getresponse()
        data = json.loads(response.read(4096))
        if response.status == 200 and data.get("status") == "ok":
            return str(data.get("version", ""))
    except (OSError, ValueError, http.client.HTTPException, AttributeError):
        return None
    finally:
        conn.close()
    return None


def _url(host: str, port: int) -> str:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if addr.is_unspecified:  # bound to every interface: local clients use loopback
        addr = ipaddress.ip_address("::1" if addr.version == 6 else "127.0.0.1")
    return f"http://[{addr}]:{port}" if addr.version == 6 else f"http://{addr}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or `PortInUseError` saying who holds the port."""
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise LLMTrayError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # reuse a port in TIME_WAIT; never shares a live listener on POSIX
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: forbid port stealing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        sock.bind(sockaddr)
        sock.listen(512)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            uid = listener_uid(port)
            if uid is not None and uid != os.geteuid():  # never trust its /v1/health: anyone can answer it
                raise PortInUseError(host, port, False, foreign_uid=uid) from None
            version = probe_health(_url(host, port))
            raise PortInUseError(host, port, version is not None, version) from None
        if exc.errno == errno.EACCES:
            raise LLMTrayError(f"not allowed to listen on port {port} (ports below 1024 need privileges)") from None
        raise LLMTrayError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class IngestService:
    """The ingest API, writer and discovery file. Not restartable: make a new one."""

    def __init__(self, paths: Paths, config: Config, *, host: str = "127.0.0.1", port: int | None = None,
                 allow_remote: bool = False, budget_entries: BudgetEntries | None = None,
                 limits: Limits | None = None, keyring_timeout: float = credentials.KEYRING_TIMEOUT,
                 backup_after: float = FIRST_AFTER_S, repair_database: bool = True, sync_bills: bool = True,
                 watch_agents: bool = False):
        self.paths, self.config = paths, config
        self.host, self.port = host, resolve_port(config, port)
        self.allow_remote = allow_remote
        self._keyring_timeout = keyring_timeout
        # pricing.toml edits apply to the next commit, no restart (#17 item 16)
        # team mode: events recorded while the team database is unreachable wait in the data dir
        spool = paths.data / SPOOL_NAME if paths.team else None
        self.writer = Writer(paths.db, current_pricer=PricingFile(paths.pricing_file).current, spool=spool)
        # whoever owns the database file backs it up (a team's server is backed up by its operator)
        self.backups = BackupScheduler(paths.db, first_after=backup_after) if isinstance(paths.db, Path) else None
        # the provider's bill on [billing] interval (DESIGN §13); off for the demo's database
        self.billing = BillingScheduler(paths.db, config) if sync_bills else None
        self.api = IngestAPI(self.writer, paths.db, config, budget_entries)
        self.server = IngestServer(self.api, limits)
        self.proxy = Proxy.install(self)  # /proxy/<upstream>/…: the metering proxy (DESIGN §5)
        self._sock: socket.socket | None = None
        self._url: str | None = None
        self._token: credentials.Token | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._startup: threading.Thread | None = None
        self._stopped = False
        self._announced = False
        self._drain: SpoolDrain | None = None  # delivers the hooks' spool (started once serving)
        # Set on the startup thread before it reports ready: what `ensure_usable` did with a
        # damaged database (None: nothing to repair), for the app or `serve` to tell the user.
        self.recovered: Recovered | None = None
        self._repair_database = repair_database  # off in the tray app, which repairs before it opens anything
        self._ready_callbacks: list[Callable[[BaseException | None], None]] = []
        self._ready_lock = threading.Lock()
        # Coding agents' logs (DESIGN §11), read live by whoever owns the database (app, serve).
        self.agents = None
        if watch_agents and config.agents.enabled:
            from llmtray.agents.watcher import AgentWatcher

            self.agents = AgentWatcher(paths.db, self.writer, config.agents,  # subscription value: same prices as spend
                                       make_pricer=PricingFile(paths.pricing_file).current,
                                       local_db=paths.local_db if paths.team else None)

    # --- configuration before start ------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Called on the writer thread with a `Committed` after each commit; must be quick."""
        self.writer.add_listener(listener)

    def mount(self, prefix: str, handler: Handler, *, token_required: bool = False,
              max_body_bytes: int | None = None, stream_body: bool = False,
              on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve `prefix` with `handler` (the metering proxy's seam; see `llmtray.ingest.server`)."""
        self.server.mount(prefix, handler, token_required=token_required, max_body_bytes=max_body_bytes,
                          stream_body=stream_body, on_close=on_close)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind now; start the rest on a startup thread. Raises `RemoteBindRefused`,
        `AlreadyRunningError` or `PortInUseError` right away."""
        if self._startup is not None:
            raise RuntimeError("an IngestService starts once")
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise RemoteBindRefused(
                    f"refusing to listen on {self.host}: not a loopback address. The ingest API accepts "
                    "usage data from anyone with the token; pass --allow-remote to expose it anyway")
            log.warning("listening on %s, reachable from other machines: anyone who has the token can post "
                        "events (traffic is not encrypted)", self.host)
        self._refuse_if_running()
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._url = _url(self._sock.getsockname()[0] if self.host in ("localhost", "") else self.host, self.port)
        self._startup = threading.Thread(target=self._start_rest, name="llmtray-ingest-startup", daemon=True)
        self._startup.start()

    def _refuse_if_running(self) -> None:
        found = discovery.live_owner(self.paths.ingest_file)
        if found is None:
            return  # none, or stale (its process is gone): ours will replace it
        version = probe_health(found.url)
        if version is not None:
            raise AlreadyRunningError(
                f"llmtray {version} (pid {found.pid}) already serves this data folder at {found.url}; "
                "stop it first, or use another --data-dir")

    def _start_rest(self) -> None:
        try:
            self._token = credentials.load_or_create(self.paths.token_file, timeout=self._keyring_timeout)
            if self._repair_database and isinstance(self.paths.db, Path):  # a damaged file is set aside
                self.recovered = ensure_usable(self.paths.db)
            self.writer.start()
            if self.agents is not None:
                self.agents.start()
            if self.backups is not None:
                self.backups.start()
            if self.billing is not None:
                self.billing.start()
            assert self._sock is not None and self._url is not None
            # announced before the first connection is answered: a script that waits for
            # /v1/health and then reads the token from ingest.json must find it (#17 item 14);
            # connections made meanwhile wait in the listen backlog
            discovery.write(self.paths.ingest_file, self._url, self._token.value)
            self._announced = True
            self.server.start(self._sock, Guard(self._token.value, allow_remote=self.allow_remote))
            self._drain = SpoolDrain(self.paths.spool_dir, self._own_endpoint)
            self._drain.start()
            log.info("ingest API listening on %s", self._url)
        except BaseException as exc:  # noqa: BLE001 - reported by wait_ready()
            # a read-only data dir: say which file and what to do, not SQLite's "unable to open"
            self._error = exc = write_refused(self.paths.db, exc) if cannot_write(exc) else exc
            if self._announced:  # announced, then serving failed: don't point clients at nothing
                discovery.remove(self.paths.ingest_file)
                self._announced = False
            log.error("the ingest service could not start: %s", exc)
        finally:
            with self._ready_lock:
                self._ready.set()
                callbacks, self._ready_callbacks = self._ready_callbacks, []
            for callback in callbacks:
                callback(self._error)

    def when_ready(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call `callback(None)` once serving, or `callback(error)` if starting failed — on the
        startup thread, or at once if that already happened. Lets a GUI show "not recording:
        <why>" without waiting on its own thread (emit a signal from the callback)."""
        with self._ready_lock:
            if not self._ready.is_set():
                self._ready_callbacks.append(callback)
                return
        callback(self._error)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until started (True), the timeout passed (False), or raise why starting failed.
        Don't call it on a GUI thread with a long timeout: the keyring may be waiting for the user."""
        if self._startup is None:
            raise RuntimeError("start() was not called")
        if not self._ready.wait(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True

    def stop(self) -> None:
        """Finish in-flight requests, commit, checkpoint, remove ingest.json. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._startup is not None:
            self._startup.join()
        if self._drain is not None:
            self._drain.stop()  # it posts to this server: stopped first
        self.server.stop()
        if self.backups is not None:
            self.backups.stop()
        if self.billing is not None:
            self.billing.stop()
        if self.agents is not None:
            self.agents.stop()
        self.writer.stop()
        if self._announced:
            discovery.remove(self.paths.ingest_file)
        if self._sock is not None:
            self._sock.close()

    def _own_endpoint(self) -> Endpoint:
        assert self._url is not None and self._token is not None
        return Endpoint(self._url, self._token.value)

    # --- what clients need ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL (e.g. http://127.0.0.1:8787), known as soon as `start()` returned."""
        if self._url is None:
            raise RuntimeError("start() was not called")
        return self._url

    @property
    def token(self) -> str:
        """The bearer token; waits for startup (keyring access) — not for a GUI thread."""
        return self.token_info.value

    @property
    def token_info(self) -> credentials.Token:
        """The token with where it is kept and any warning (e.g. plain-text file fallback)."""
        self.wait_ready()
        assert self._token is not None
        return self._token
