"""`llmtray digest` and `llmtray serve` with [email]: a real server, exit codes, named errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from llmtray.core import periods
from tests.core.budget_kit import event, open_store
from tests.mail.smtp_kit import PASSWORD, USER


def llmtray(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def write_config(data: Path, port: int, extra: str = "") -> None:
    (data / "config.toml").write_text(
        f'[email]\nhost = "127.0.0.1"\nport = {port}\nfrom = "llmtray@example.com"\nto = ["me@example.com"]\n'
        f"{extra}", encoding="utf-8")


def yesterday_event(data: Path) -> None:
    store = open_store(data / "llmtray.db")
    day = periods.today(None) - timedelta(days=1)
    store.add([event(datetime.combine(day, datetime.min.time()).astimezone() + timedelta(hours=12), "2.5")], "hook")
    store.close()


def test_digest_prints_and_sends(data_dir, smtp_server, trust):
    server = smtp_server("starttls", auth=True)
    write_config(data_dir, server.port, f'security = "starttls"\nusername = "{USER}"\n')
    yesterday_event(data_dir)
    printed = llmtray(data_dir, "digest")
    assert printed.returncode == 0 and "$2.50" in printed.stdout and "Top models" in printed.stdout
    sent = llmtray(data_dir, "digest", "--send", env={"LLMTRAY_SMTP_PASSWORD": PASSWORD})
    assert sent.returncode == 0, sent.stderr
    assert "sent llmtray daily digest" in sent.stdout and "me@example.com" in sent.stdout
    [(_, msg)] = server.inbox.wait_for(1)
    assert msg["Subject"].endswith("$2.50") and msg.get_body(("plain",)).get_content() == printed.stdout.replace(
        "\n", "\r\n")


def test_digest_send_failures_exit_non_zero_with_the_reason(data_dir, smtp_server, trust):
    server = smtp_server("starttls", auth=True)
    write_config(data_dir, server.port, f'security = "starttls"\nusername = "{USER}"\n')
    wrong = llmtray(data_dir, "digest", "--send", env={"LLMTRAY_SMTP_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "(auth)" in wrong.stderr and "wrong SMTP username or password" in wrong.stderr
    mismatch = llmtray(data_dir, "digest", "--send", env={"LLMTRAY_SMTP_PASSWORD": PASSWORD})
    assert mismatch.returncode == 0  # the same settings work with the right password
    write_config(data_dir, server.port, f'security = "ssl"\nusername = "{USER}"\n')
    tls = llmtray(data_dir, "digest", "--send", env={"LLMTRAY_SMTP_PASSWORD": PASSWORD})
    assert tls.returncode == 1 and "(tls)" in tls.stderr and "TLS mismatch" in tls.stderr
    assert len(server.inbox.received) == 1


def test_bad_email_settings_are_named(data_dir):
    (data_dir / "config.toml").write_text('[email]\nto = ["not an address"]\n', encoding="utf-8")
    bad = llmtray(data_dir, "digest")
    assert bad.returncode == 2 and "email.to[0] must be a mail address" in bad.stderr
    (data_dir / "config.toml").write_text('[email]\nsecurity = "tls"\n', encoding="utf-8")
    bad = llmtray(data_dir, "digest", "--send")
    assert bad.returncode == 2 and "email.security must be one of starttls, ssl, none" in bad.stderr
    (data_dir / "config.toml").unlink()
    assert llmtray(data_dir, "digest", "--date", "2026-13-01").stderr.strip().endswith(
        "--date '2026-13-01': expected a date such as 2026-01-31")


def test_serve_mails_a_crossing(data_dir, smtp_server):
    server = smtp_server("plain")
    write_config(data_dir, server.port, 'alerts = true\nsecurity = "none"\n')
    assert llmtray(data_dir, "budgets", "add", "--name", "daily", "--limit", "1", "--period", "day").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        token = json.loads((data_dir / "ingest.json").read_text())["token"]
        r = httpx.post(f"{url}/v1/events", headers={"Authorization": f"Bearer {token}"},
                       json={"id": "e1", "provider": "openai", "model": "gpt-4o", "cost_usd": "1.20"})
        assert r.json() == {"accepted": 1, "duplicates": 0}
        [(_, msg)] = server.inbox.wait_for(1)
        assert msg["Subject"] == "[llmtray] Budget “daily” exceeded" and "$1.20 of $1.00" in msg.get_content()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        proc.stdout.close()
