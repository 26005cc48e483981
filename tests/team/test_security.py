"""Team mode's credentials and roles: the password is never shown, a viewer's read-only role
reads everything and is told clearly that it can't write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtray.core import dburl
from llmtray.core.errors import ConfigError
from llmtray.core.store import Store
from tests.postgres import PASSWORD


def run(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmtray", "-v", "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LLMTRAY_MACHINE": "m", **(env or {})})


def seeded(team_url: str) -> None:
    from llmtray.core.events import parse_event

    store = Store.open(dburl.parse(team_url))
    store.add([parse_event({"id": f"s{i}", "ts": "2026-12-01T10:00:00Z", "provider": "openai", "model": "gpt-4o",
                            "input_tokens": 1000, "output_tokens": 100, "feature": "chat"}) for i in range(3)], "hook")
    store.close()


def test_the_password_never_reaches_output_or_logs(data_dir, team_url):
    seeded(team_url)
    ok = run(data_dir, "--database", team_url, "status")
    assert ok.returncode == 0, ok.stderr
    wrong = team_url.replace(PASSWORD, "not-the-password")
    bad = run(data_dir, "--database", wrong, "status")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "llmtray: error: cannot connect to postgresql://postgres@127.0.0.1" in bad.stderr
    assert "password authentication failed" in bad.stderr
    for result in (ok, bad):
        assert PASSWORD not in result.stdout + result.stderr
        assert "not-the-password" not in result.stdout + result.stderr
    assert repr(dburl.parse(team_url)).count(PASSWORD) == 0 and PASSWORD not in str(dburl.parse(team_url))


def test_the_password_from_pgpassword_works(data_dir, team_url):
    seeded(team_url)
    without = team_url.replace(f":{PASSWORD}@", "@")
    assert run(data_dir, "--database", without, "status", env={"PGPASSWORD": PASSWORD}).returncode == 0
    refused = run(data_dir, "--database", without, "status", env={"PGPASSWORD": ""})
    assert refused.returncode != 0 and "password" in refused.stderr


def test_a_password_in_config_toml_is_refused_with_the_key_named(data_dir, team_url):
    (data_dir / "config.toml").write_text(f'[database]\nurl = "{team_url}"\n')
    result = run(data_dir, "status")
    assert result.returncode == 2
    assert "database.url must not hold the password" in result.stderr and PASSWORD not in result.stderr
    with pytest.raises(ConfigError, match="unknown database URL scheme"):
        dburl.parse("mongodb://x/y")


def test_a_read_only_role_reads_everything_and_writes_are_refused_clearly(data_dir, team_url, pg_server):
    seeded(team_url)
    with pg_server.admin() as admin:
        admin.execute("DROP ROLE IF EXISTS viewer")
        admin.execute("CREATE ROLE viewer LOGIN PASSWORD 'view-only'")
    import psycopg

    with psycopg.connect(team_url, autocommit=True) as owner:
        owner.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewer")
    viewer = team_url.replace(f"postgres:{PASSWORD}@", "viewer:view-only@")
    status = run(data_dir, "--database", viewer, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["today_usd"] is not None
    report = run(data_dir, "--database", viewer, "report", "--by", "feature", "--since", "2026-11-01")
    assert report.returncode == 0 and "chat" in report.stdout
    refused = run(data_dir, "--database", viewer, "budgets", "add", "--name", "x", "--limit", "5", "--period", "day")
    assert refused.returncode == 2
    assert "read-only" in refused.stderr and "Traceback" not in refused.stderr
    store = Store.open(dburl.parse(team_url))  # nothing changed
    assert store.conn.execute("SELECT count(*) FROM budget").fetchone() == (0,)
    store.close()


def test_the_password_from_the_keyring_works_and_can_be_forgotten(data_dir, team_url, tmp_path, monkeypatch):
    seeded(team_url)
    keyring_env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                   "XDG_DATA_HOME": str(tmp_path / "xdg")}
    stored = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "db", "password"],
                            input=f"{PASSWORD}\n", capture_output=True, text=True, timeout=60,
                            env={**os.environ, **keyring_env})
    assert stored.returncode == 0, stored.stderr
    assert "stored in the keyring" in stored.stdout and PASSWORD not in stored.stdout + stored.stderr
    without = team_url.replace(f":{PASSWORD}@", "@")
    env = {**keyring_env, "PGPASSWORD": ""}
    assert run(data_dir, "--database", without, "status", env=env).returncode == 0
    assert run(data_dir, "db", "password", "--clear", env=keyring_env).returncode == 0
    assert run(data_dir, "--database", without, "status", env=env).returncode != 0
