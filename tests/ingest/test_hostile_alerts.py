"""Issue #26 item 2, the attack as reported: a local process with no token and no API key names a
feature `<!channel> … <https://evil.example/login|open llmtray>` on proxied calls. Calls to an
unreachable upstream (502s) must not raise a runaway alert at all; calls a provider answered do,
and the webhook text carries the name escaped, never as a Slack mention or link. Real `llmtray
serve` subprocess, real sockets, a real local webhook receiver, the URL in a real file keyring."""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest
from keyrings.alt.file import PlaintextKeyring

from tests.core.test_budgets_alerts import Receiver
from tests.ingest.test_serve import start_serve
from tests.proxy.stub import StubUpstream

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

HOSTILE = "<!channel> budget reset required: <https://evil.example/login|open llmtray>"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alerts(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT kind, severity, title FROM alert ORDER BY id").fetchall()
    finally:
        conn.close()


def call(url: str, upstream: str) -> int:
    return httpx.post(f"{url}/proxy/{upstream}/v1/chat/completions", headers={"X-LLMTray-Feature": HOSTILE},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                      timeout=30).status_code


def test_unanswered_calls_raise_no_alert_and_answered_ones_reach_slack_escaped(data_dir, tmp_path, monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    PlaintextKeyring().set_password("llmtray", "webhook_url", receiver.url)  # reads XDG_DATA_HOME now
    stub = StubUpstream()
    (data_dir / "config.toml").write_text(
        f'[proxy.upstreams]\nopenai = "{stub.url}"\ndead = "http://127.0.0.1:{closed_port()}"\n')
    proc, url, _ = start_serve(data_dir)
    try:
        assert [call(url, "dead") for _ in range(12)] == [502] * 12  # the reported attack, verbatim
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _stored(data_dir) < 12:
            time.sleep(0.1)
        assert _stored(data_dir) == 12  # still recorded as error events: nothing is hidden
        time.sleep(2)  # the monitor runs after each commit; give it time to (wrongly) fire
        assert alerts(data_dir / "llmtray.db") == []
        assert receiver.requests == []

        assert [call(url, "openai") for _ in range(12)] == [200] * 12  # a real loop the provider answered
        assert receiver.wait_requests(1)
        text = json.loads(receiver.requests[0][2])["text"]
        assert "<!channel>" not in text and "<https://" not in text
        assert "&lt;!channel&gt; budget reset required: &lt;https://evil.example/login|open llmtray&gt;" in text
        # 12 calls costing fractions of a cent: a warning, not a sticky critical (#17 item 13)
        assert alerts(data_dir / "llmtray.db") == [("runaway", "warning", f"Runaway calls: feature “{HOSTILE}”")]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        stub.close()
        receiver.server.shutdown()
        receiver.server.server_close()


def _stored(data: Path) -> int:
    conn = sqlite3.connect(data / "llmtray.db")
    try:
        return conn.execute("SELECT count(*) FROM event").fetchone()[0]
    finally:
        conn.close()
