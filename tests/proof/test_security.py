"""Who may talk to llmtray, and what it leaves lying around (DESIGN §5, §7).

- Binding: loopback only unless `--allow-remote`; with it, a request from another address
  reaches the API (token still needed) but never the proxy, which takes no token.
- Browsers: a page's `Origin` / `Sec-Fetch-Site: cross-site` and a rebinding `Host` are 403 on
  every route, API and proxy alike, before anything is forwarded; no CORS header ever.
- Tokens: 401 without the right bearer token on every route that needs one.
- Files: the token file, `ingest.json`, spool and dead-letter files are private even under
  `umask 0`; a group/world-readable token file is tightened; a planted `ingest.json` symlink is
  replaced, not followed.
- Logs: the bearer token, the webhook URL and provider API keys never appear in `serve`'s
  stderr or in the database, also while requests fail.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtray.config import Config
from llmtray.ingest.service import IngestService, RemoteBindRefused
from llmtray.paths import Paths
from tests.ingest.conftest import event, make_service, stored_ids
from tests.ingest.test_serve import start_serve
from tests.proof.conftest import LIMITS, proxying_service
from tests.proof.rawhttp import Exchange, exchange
from tests.proxy.conftest import stub_config
from tests.proxy.stub import StubUpstream

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and signals")


def local_address() -> str | None:
    """This machine's own non-loopback IPv4 address (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IngestService, StubUpstream]]:
    """The real service (proxy to a stub upstream) for the browser, Host and token checks."""
    with proxying_service(tmp_path_factory.mktemp("guarded")) as served:
        yield served


def request(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    if body:
        headers = [*headers, ("Content-Type", "application/json")]
    return Exchange(method, target, "HTTP/1.1", headers, body).encode()


ROUTES = [("GET", "/v1/health", b""), ("GET", "/v1/summary", b""), ("GET", "/v1/enforce?provider=openai&model=m", b""),
          ("POST", "/v1/events", json.dumps(event(1)).encode()),
          ("POST", "/proxy/openai/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": []}'),
          ("GET", "/proxy/anthropic/v1/models", b""), ("OPTIONS", "/v1/events", b"")]
BROWSER = [[("Origin", "https://evil.example")], [("Origin", "null")],
           [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")],
           [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "no-cors")], [("Sec-Fetch-Site", "same-site")]]
REBINDING = ["evil.example:8787", "evil.example", "127.0.0.1.evil.example", "localhost.evil.example:8787",
             "0.0.0.0:8787", "2130706433", "[::ffff:7f00:1]:8787", "attacker.localhost.evil.example"]


@pytest.mark.parametrize("extra", BROWSER, ids=lambda h: "+".join(f"{k}:{v}" for k, v in h))
def test_browser_requests_are_refused_on_every_route(guarded, extra):
    service, stub = guarded
    forwarded = len(stub.received)
    for method, target, body in ROUTES:
        headers = [("Host", f"127.0.0.1:{service.port}"), ("Authorization", f"Bearer {service.token}"), *extra]
        reply, _ = exchange(service.port, request(method, target, headers, body))
        assert reply.status == 403, (method, target, reply)
        assert "refused" in reply.json()["error"]
        assert not any(k.startswith("access-control-") for k in reply.headers)
    assert len(stub.received) == forwarded  # nothing reached the upstream
    assert stored_ids(service.paths.db) == set()


@pytest.mark.parametrize("host", REBINDING)
def test_a_rebinding_host_is_refused_on_every_route(guarded, host):
    service, stub = guarded
    forwarded = len(stub.received)
    for method, target, body in ROUTES:
        reply, _ = exchange(service.port, request(method, target, [("Host", host), ("Authorization",
                                                                                   f"Bearer {service.token}")], body))
        assert reply.status == 403 and "DNS rebinding" in reply.json()["error"], (method, target, reply)
    assert len(stub.received) == forwarded
    assert stored_ids(service.paths.db) == set()


def test_loopback_hosts_and_a_typed_url_are_served(guarded):
    """The other side of the Host/Origin rules: what a local client or a typed URL sends works."""
    service, _ = guarded
    for host in (f"127.0.0.1:{service.port}", "localhost", f"[::1]:{service.port}", "LocalHost", "app.localhost"):
        for extra in ([], [("Sec-Fetch-Site", "none")], [("Sec-Fetch-Site", "same-origin")]):
            reply, _ = exchange(service.port, request("GET", "/v1/health", [("Host", host), *extra]))
            assert reply.status == 200, (host, extra, reply)


TOKENS = [None, "", "Bearer", "Bearer ", "Bearer {t}x", "Bearer {short}", "Bearer {upper}", "Basic {t}",
          "Token {t}", "{t}", "Bearer {t},{t}"]


@pytest.mark.parametrize("auth", TOKENS)
def test_every_route_that_needs_the_token_answers_401_without_it(guarded, auth):
    service, _ = guarded
    token = service.token
    for method, target, body in ROUTES[1:4]:
        headers = [("Host", "127.0.0.1")]
        if auth is not None:
            headers.append(("Authorization", auth.format(t=token, short=token[:-1], upper=token.upper())))
        reply, _ = exchange(service.port, request(method, target, headers, body))
        assert reply.status == 401, (method, target, reply)
        assert reply.headers["www-authenticate"] == 'Bearer realm="llmtray"'
        assert token not in reply.body.decode()
    assert stored_ids(service.paths.db) == set()


# --- binding and remote peers -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "0", "192.0.2.2", "10.200.0.1"])
def test_a_non_loopback_bind_is_refused_without_allow_remote(data_dir, host):
    service = IngestService(Paths(data_dir, data_dir, data_dir), Config(), host=host, port=0)
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        service.start()
    assert not (data_dir / "ingest.json").exists()


def test_other_loopback_addresses_need_no_flag(data_dir):
    service = make_service(data_dir, LIMITS, host="127.0.0.2")
    try:
        reply, _ = exchange(service.port, request("GET", "/v1/health", [("Host", f"127.0.0.2:{service.port}")]),
                            host="127.0.0.2")
        assert reply.status == 200
        with pytest.raises(OSError):  # bound to 127.0.0.2 only
            socket.create_connection(("127.0.0.1", service.port), timeout=2).close()
    finally:
        service.stop()


@pytest.fixture
def remote_address() -> str:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from (no network namespace "
                    "is created here: that would need CAP_NET_ADMIN)")
    return address


def test_the_default_bind_is_unreachable_from_another_address(data_dir, remote_address):
    service = make_service(data_dir, LIMITS)
    try:
        with pytest.raises(OSError):
            socket.create_connection((remote_address, service.port), timeout=2).close()
    finally:
        service.stop()


def test_allow_remote_serves_the_api_with_its_token_but_never_the_proxy(data_dir, remote_address, caplog):
    stub = StubUpstream()
    service = IngestService(Paths(data_dir, data_dir, data_dir), stub_config(stub), host="0.0.0.0", port=0,
                            allow_remote=True, limits=LIMITS)
    caplog.set_level(logging.WARNING, logger="llmtray.ingest.service")
    try:
        service.start()
        assert service.wait_ready(30)
        assert "reachable from other machines" in caplog.text  # --allow-remote warns
        port, token = service.port, service.token
        host = [("Host", f"{remote_address}:{port}")]

        def send(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> Any:
            return exchange(port, request(method, target, headers, body), host=remote_address,
                            source=remote_address)[0]

        assert send("GET", "/v1/health", host).status == 200
        assert send("POST", "/v1/events", host, json.dumps(event(1)).encode()).status == 401
        ok = send("POST", "/v1/events", [*host, ("Authorization", f"Bearer {token}")], json.dumps(event(1)).encode())
        assert ok.status == 200 and ok.json() == {"accepted": 1, "duplicates": 0}
        origin = [*host, ("Authorization", f"Bearer {token}"), ("Origin", "https://evil.example")]
        assert send("POST", "/v1/events", origin, json.dumps(event(2)).encode()).status == 403
        proxied = send("POST", "/proxy/openai/v1/chat/completions", host, b'{"model": "gpt-4o-mini"}')
        assert proxied.status == 403 and "this machine only" in proxied.body.decode()
        assert stub.received == []
        assert stored_ids(service.paths.db) == {"ev-1"}
    finally:
        service.stop()
        stub.close()


# --- files ------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@POSIX
def test_secrets_on_disk_are_private_even_under_umask_0(tmp_path: Path):
    data = tmp_path / "data"  # created by llmtray itself
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours\n")
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0)
    try:
        deadline = time.monotonic() + 60
        while not (data / "ingest.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        assert _mode(data) == 0o700
        assert _mode(data / "token") == 0o600
        assert _mode(data / "ingest.json") == 0o600
        assert not list(data.glob(".ingest-*"))  # no temporary copy left behind
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    # a planted symlink is replaced, not written through; a loose token file is tightened
    (data / "ingest.json").symlink_to(victim)
    (data / "token").chmod(0o644)
    proc, _, token = start_serve(data)
    try:
        assert (data / "ingest.json").is_file() and not (data / "ingest.json").is_symlink()
        assert _mode(data / "ingest.json") == 0o600 and victim.read_text() == "not yours\n"
        assert _mode(data / "token") == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "restricting it to mode 0600" in err and token not in err


@POSIX
def test_the_spool_and_dead_letters_are_private_even_under_umask_0(tmp_path: Path):
    code = ("import llmtray.hooks as lt\n"
            "lt.record(provider='openai', model='gpt-4o-mini', input_tokens=1, user='u-secret')\n"
            "lt.record(provider='openai', model='gpt-4o-mini', input_tokens=-1)\n"  # refused: dead letter
            "lt.flush(0.5)\n")
    env = {**os.environ, "LLMTRAY_DATA_DIR": str(tmp_path / "data")}
    env.pop("LLMTRAY_URL", None)
    env.pop("LLMTRAY_TOKEN", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, umask=0)
    assert done.returncode == 0, done.stderr
    spool = tmp_path / "data" / "spool"
    files = list(spool.glob("hook-*.jsonl"))
    assert files and (spool / "dead-letter.jsonl").exists()
    assert _mode(spool) == 0o700
    assert all(_mode(f) == 0o600 for f in [*files, spool / "dead-letter.jsonl"])


# --- secrets in logs --------------------------------------------------------------------------


class WebhookReceiver:
    """A webhook endpoint that refuses everything (404): the failure path is the one that logs."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"no_hook\r\n")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="proof-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRET_KEY = "sk-proof-0123456789abcdefSECRET"
GEMINI_KEY = "AIzaProofSecretKey0123456789"


def _secrets_run(tmp_path: Path, verbose: bool) -> tuple[str, list[str], bytes]:
    """Run `serve` with a real (file) keyring holding the token and a webhook URL, post with the
    token and with wrong ones, cross a budget so the webhook fires (and fails), and send proxy
    calls carrying API keys to an upstream that fails; returns (stderr, secrets, database bytes)."""
    data = tmp_path / "data"
    data.mkdir()
    receiver, stub = WebhookReceiver(), StubUpstream()
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(tmp_path / "xdg"), "LLMTRAY_DATA_DIR": str(data)}
    webhook = f"{receiver.url}/services/T0PROOF/B0PROOF/w3bh00kS3cretPath"
    (data / "config.toml").write_text(f'[proxy.upstreams]\nopenai = "http://127.0.0.1:{_closed_port()}"\n'
                                      f'google = "{stub.url}"\n')
    setup = ("from llmtray.core.alerts import save_webhook_url; import sys; save_webhook_url(sys.argv[1])")
    subprocess.run([sys.executable, "-c", setup, webhook], env=env, check=True, timeout=60)
    subprocess.run([sys.executable, "-m", "llmtray", "budgets", "add", "--name", "proof", "--limit", "0.01",
                    "--period", "day"], env=env, check=True, capture_output=True, timeout=60)
    args = [sys.executable, "-m", "llmtray", *(["-v"] if verbose else []), "serve", "--port", "0"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = line.rsplit(" ", 1)[1].strip()
        token = json.loads((data / "ingest.json").read_text())["token"]
        assert "keyring" in proc.stdout.readline()  # type: ignore[union-attr]
        with httpx.Client(base_url=url, timeout=30) as http:
            now = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cost_usd": "1.00"}
            for auth in (f"Bearer {token}", f"Bearer {token}x", f"Bearer {token[:-1]}", token):
                http.post("/v1/events", json=[event(1, **now)], headers={"Authorization": auth})
            http.post("/v1/events", json=[event(2, **now, bogus=token)], headers={"Authorization": f"Bearer {token}"})
            http.get("/v1/summary", headers={"Authorization": f"Bearer {token}"})
            http.post("/proxy/openai/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                      headers={"Authorization": f"Bearer {SECRET_KEY}"})
            http.post(f"/proxy/google/v1beta/models/fail-500:generateContent?key={GEMINI_KEY}", json={},
                      headers={"x-goog-api-key": GEMINI_KEY})
        deadline = time.monotonic() + 60
        while not receiver.paths and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.paths, "the webhook never fired"
        time.sleep(0.5)  # its failure is logged right after the 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        proc.stdout.close()  # type: ignore[union-attr]
        receiver.close()
        stub.close()
    db = b"".join(p.read_bytes() for p in data.glob("llmtray.db*"))
    return err, [token, "w3bh00kS3cretPath", SECRET_KEY, GEMINI_KEY], db


@POSIX
def test_no_secret_in_the_log_or_the_database(tmp_path: Path):
    err, secrets, db = _secrets_run(tmp_path, verbose=False)
    assert "webhook delivery" in err and "failed" in err  # the failure path ran and was logged
    for secret in secrets:
        assert secret not in err, f"{secret[:12]}… in serve's stderr"
        assert secret.encode() not in db, f"{secret[:12]}… in the database"
    assert "Traceback" not in err


@POSIX
def test_no_secret_in_the_verbose_log(tmp_path: Path):
    err, secrets, _ = _secrets_run(tmp_path, verbose=True)
    assert "DEBUG" in err
    for secret in secrets:
        assert secret not in err, f"{secret[:12]}… in serve's -v stderr"


def test_an_empty_token_file_left_by_a_crash_still_gives_a_stable_token(data_dir: Path, caplog):
    (data_dir / "token").touch(mode=0o600)
    tokens = []
    for _ in range(2):
        service = make_service(data_dir, LIMITS)
        tokens.append(service.token)
        service.stop()
    assert tokens[0] == tokens[1]
    assert "keyring failed" not in caplog.text
