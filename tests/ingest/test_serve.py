"""`llmtray serve` as a real subprocess: startup, clean SIGTERM under load, kill -9 under load, port errors."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from llmtray.cli import build_parser
from llmtray.commands import serve as serve_cmd
from llmtray.ingest import discovery
from tests.ingest.conftest import event, make_service, stored_ids

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start_serve(data: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """`python -m llmtray serve` on a free port; returns (process, url, token) once /v1/health answers."""
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = discovery.read(data / "ingest.json")
        if found is not None and found.pid == proc.pid:
            try:
                if httpx.get(f"{found.url}/v1/health", timeout=2).status_code == 200:
                    return proc, found.url, found.token or ""
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.communicate()}")


class Load:
    """Client threads posting batches of unique ids over keep-alive connections until the server
    goes away; `acked` holds every id the server acknowledged."""

    def __init__(self, url: str, token: str, clients: int = 4, batch: int = 25, prefix: str = ""):
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self._prefix = prefix
        self._lock = threading.Lock()
        self._stop = threading.Event()
        host, port = url.split("://")[1].split(":")
        self._threads = [threading.Thread(target=self._client, args=(host, int(port), token, c, batch))
                         for c in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self, host: str, port: int, token: str, client: int, batch: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        n = 0
        try:
            while not self._stop.is_set():
                ids = [f"{self._prefix}c{client}-{n + i}" for i in range(batch)]
                n += batch
                with self._lock:
                    self.sent.update(ids)
                body = json.dumps([event(0, id=i) for i in ids])
                try:
                    conn.request("POST", "/v1/events", body, headers)
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    return  # the server is gone: what was acknowledged is what counts
                if response.status == 200:
                    with self._lock:
                        self.acked.update(ids)
        finally:
            conn.close()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= count

    def finish(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_serve_prints_where_things_are_and_stops_cleanly_on_sigterm_under_load(data_dir):
    proc, url, token = start_serve(data_dir)
    load = Load(url, token)
    try:
        load.wait_for(300)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        load.finish()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"ingest API on {url}" in out and "token: file" in out and str(data_dir / "ingest.json") in out
    assert "SIGTERM received" in err and "Traceback" not in err
    assert load.acked <= stored_ids(data_dir / "llmtray.db")  # every acknowledged event is there
    assert integrity(data_dir / "llmtray.db") == "ok"
    assert not (data_dir / "ingest.json").exists()


def test_kill_9_under_load_loses_no_acknowledged_event(data_dir):
    proc, url, token = start_serve(data_dir)
    load = Load(url, token)
    try:
        load.wait_for(300)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        load.finish()
    db = data_dir / "llmtray.db"
    assert integrity(db) == "ok"
    assert load.acked <= stored_ids(db)
    assert (data_dir / "ingest.json").exists()  # stale: its pid is dead
    proc2, url2, token2 = start_serve(data_dir)  # the stale announcement is replaced
    try:
        assert token2 == token  # the token survives restarts
        assert discovery.read(data_dir / "ingest.json").pid == proc2.pid
        assert load.acked <= stored_ids(db)
    finally:
        proc2.send_signal(signal.SIGINT)
        proc2.communicate(timeout=60)
    assert proc2.returncode == 0


def _serve_error(data: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", *args],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_port_in_use_says_by_whom(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        taken = other.getsockname()[1]
        code, err = _serve_error(tmp_path / "a", "--port", str(taken))
    assert code == 2 and f"port {taken}" in err and "another program" in err
    assert "Traceback" not in err
    running = make_service(tmp_path / "b")
    try:
        port = running.url.rsplit(":", 1)[1]
        code, err = _serve_error(tmp_path / "c", "--port", port)
    finally:
        running.stop()
    assert code == 2 and f"port {port}" in err and "in use by llmtray" in err


def test_remote_bind_is_refused_without_the_flag(data_dir):
    code, err = _serve_error(data_dir, "--host", "0.0.0.0")
    assert code == 2 and "--allow-remote" in err and "Traceback" not in err


def test_activity_is_logged_once_per_interval(data_dir, monkeypatch, caplog):
    monkeypatch.setattr(serve_cmd, "ACTIVITY_INTERVAL_S", 0.2)
    service = make_service(data_dir)
    stop = threading.Event()
    logger = threading.Thread(target=serve_cmd._log_activity, args=(service, stop))
    caplog.set_level(logging.INFO, logger="llmtray.serve")
    logger.start()
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {service.token}"}) as c:
            c.post(f"{service.url}/v1/events", json=[event(1), event(2), event(2)])
            c.post(f"{service.url}/v1/events", json={"provider": "openai"})
        deadline = time.monotonic() + 10
        while "last minute" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        logger.join(10)
        service.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "llmtray.serve"]
    assert lines == ["last minute: 2 events stored, 1 duplicates, 2 requests (1 rejected, 0 failed); backlog 0"]


def test_serve_help_documents_the_flags(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--port", "--host", "--allow-remote", "LLMTRAY_PORT"):
        assert flag in out
