"""The embeddable service: discovery file, single owner per data dir, port conflicts, bind policy."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from llmtray.config import Config
from llmtray.core.errors import ConfigError
from llmtray.ingest import discovery
from llmtray.ingest.service import AlreadyRunningError, PortInUseError, RemoteBindRefused, resolve_port
from tests.ingest.conftest import build_service, make_service, started


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ingest_json_is_private_and_removed_on_stop(data_dir):
    service = make_service(data_dir)
    path = data_dir / "ingest.json"
    try:
        data = json.loads(path.read_text())
        assert data == {"url": service.url, "token": service.token, "pid": os.getpid()}
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        service.stop()
    assert not path.exists()
    service.stop()  # idempotent


@pytest.mark.parametrize("pid", ["dead", "alive-but-not-serving"])
def test_a_stale_ingest_json_is_replaced(data_dir, pid):
    owner = dead_pid() if pid == "dead" else os.getpid()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        gone_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    discovery.write(data_dir / "ingest.json", gone_url, "old-token", pid=owner)
    service = make_service(data_dir)
    try:
        assert discovery.read(data_dir / "ingest.json") == discovery.Discovery(service.url, service.token, os.getpid())
    finally:
        service.stop()


def test_a_live_llmtray_on_the_same_data_dir_is_not_replaced(data_dir):
    first = make_service(data_dir)
    try:
        second = build_service(data_dir)
        with pytest.raises(AlreadyRunningError, match=r"already serves this data folder at http://127\.0\.0\.1"):
            second.start()
        second.stop()
        assert discovery.read(data_dir / "ingest.json").url == first.url
    finally:
        first.stop()


def test_port_taken_by_another_llmtray(tmp_path):
    first = make_service(tmp_path / "a")
    try:
        port = int(first.url.rsplit(":", 1)[1])
        second = build_service(tmp_path / "b")
        second.port = port
        with pytest.raises(PortInUseError) as info:
            second.start()
        second.stop()
        assert info.value.by_llmtray and f"port {port}" in str(info.value) and "llmtray" in str(info.value)
    finally:
        first.stop()


def test_port_taken_by_another_program(data_dir):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        service = build_service(data_dir)
        service.port = other.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            service.start()
        service.stop()
    assert not info.value.by_llmtray and "another program (not llmtray)" in str(info.value)
    assert not (data_dir / "ingest.json").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_non_loopback_needs_allow_remote(data_dir, host):
    service = build_service(data_dir, host=host)
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        service.start()
    service.stop()


def test_port_precedence(monkeypatch):
    config = Config(port=9001)
    monkeypatch.delenv("LLMTRAY_PORT", raising=False)
    assert resolve_port(Config()) == 8787
    assert resolve_port(config) == 9001
    monkeypatch.setenv("LLMTRAY_PORT", "9002")
    assert resolve_port(config) == 9002
    assert resolve_port(config, 9003) == 9003
    monkeypatch.setenv("LLMTRAY_PORT", "eighty")
    with pytest.raises(ConfigError, match="LLMTRAY_PORT must be a port number"):
        resolve_port(config)


# --- discovery, as the hooks read it ------------------------------------------------------------


def test_discover_prefers_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "ingest.json"
    discovery.write(path, "http://127.0.0.1:1234/", "file-token", pid=42)
    assert discovery.discover(path) == discovery.Discovery("http://127.0.0.1:1234", "file-token", 42)
    monkeypatch.setenv("LLMTRAY_TOKEN", "env-token")
    assert discovery.discover(path) == discovery.Discovery("http://127.0.0.1:1234", "env-token", 42)
    monkeypatch.setenv("LLMTRAY_URL", "http://127.0.0.1:5678")
    assert discovery.discover(path) == discovery.Discovery("http://127.0.0.1:5678", "env-token", None)
    assert discovery.discover(tmp_path / "missing.json") == discovery.Discovery("http://127.0.0.1:5678", "env-token")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"url": 5}', '{"url": "  "}', "\xff"])
def test_unreadable_discovery_files_are_none(tmp_path, text):
    path = tmp_path / "ingest.json"
    path.write_text(text, encoding="latin-1")
    assert discovery.read(path) is None


def test_remove_leaves_another_owners_file(tmp_path):
    path = tmp_path / "ingest.json"
    discovery.write(path, "http://127.0.0.1:1", "t", pid=os.getpid() + 1)
    assert not discovery.remove(path) and path.exists()
    discovery.write(path, "http://127.0.0.1:1", "t")
    assert discovery.remove(path) and not path.exists()


def test_discovery_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import llmtray.ingest.discovery; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "third = sorted(m for m in new if m != 'llmtray' and m not in sys.stdlib_module_names); "
            "print(','.join(third)); sys.exit(1 if third else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pid_alive():
    assert discovery.pid_alive(os.getpid())
    assert not discovery.pid_alive(dead_pid())


def test_the_service_imports_no_qt():
    code = ("import sys, llmtray.ingest.service, llmtray.commands.serve; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')); "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_when_ready_reports_success_and_failure(tmp_path):
    outcomes: list[BaseException | None] = []
    service = build_service(tmp_path / "ok")
    service.when_ready(outcomes.append)
    started(service)
    service.when_ready(outcomes.append)  # after the fact: called at once
    service.stop()
    assert outcomes == [None, None]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "llmtray.db").mkdir()  # can't be opened, and is not damage to repair (a damaged file is: test_recovery)
    service = build_service(bad)
    service.when_ready(outcomes.append)
    service.start()
    with pytest.raises(Exception, match="unable to open database file"):
        service.wait_ready(30)
    service.stop()
    assert "unable to open database file" in str(outcomes[-1])
    assert not (bad / "ingest.json").exists() and service.recovered is None


def test_a_pricing_toml_edit_applies_to_the_next_events_without_a_restart(data_dir, client, service, caplog):
    """#17 item 16: prices for a self-hosted model added while the server runs price the next
    call; an edit that doesn't parse keeps the last good prices and says why."""
    import sqlite3

    def cost_of(event_id: str):  # noqa: ANN202
        conn = sqlite3.connect(data_dir / "llmtray.db")
        try:
            return conn.execute("SELECT cost_nanos, cost_source FROM event WHERE event_id = ?", (event_id,)).fetchone()
        finally:
            conn.close()

    house = {"provider": "vllm", "model": "house-ft", "input_tokens": 1_000_000, "output_tokens": 0}
    assert client.post("/v1/events", json={"id": "a", **house}).status_code == 200
    assert cost_of("a") == (None, "unpriced")
    pricing = data_dir / "pricing.toml"
    pricing.write_text('[[model]]\nprovider = "vllm"\nmodel = "house-ft"\ninput_mtok = 2\noutput_mtok = 4\n')
    assert client.post("/v1/events", json={"id": "b", **house}).status_code == 200
    assert cost_of("b") == (2_000_000_000, "computed")
    pricing.write_text('[[model]]\nprovider = "vllm"\nmodel = "house-ft"\ninput_mtok = "two"\n')
    assert client.post("/v1/events", json={"id": "c", **house}).status_code == 200
    assert cost_of("c") == (2_000_000_000, "computed")  # the last good prices
    assert "keeping the prices loaded before" in caplog.text and "input_mtok" in caplog.text
    assert cost_of("a") == (None, "unpriced")  # stored events change only through `llmtray reprice`
