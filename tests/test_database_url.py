"""Choosing the database: `--database`, `LLMTRAY_DATABASE_URL`, `[database] url` (DESIGN §16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtray.cli import main
from llmtray.core import dburl
from llmtray.core.errors import ConfigError


def test_urls_parse_to_a_file_or_a_team_database_and_never_show_the_password(tmp_path: Path):
    assert dburl.parse(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert dburl.parse(f"sqlite:////{tmp_path}/x.db") == tmp_path / "x.db"
    assert dburl.parse(str(tmp_path / "y.db")) == tmp_path / "y.db"  # a plain path is a SQLite file
    url = dburl.parse("postgresql://ana:p%40ss@db.example.com:5433/llm?sslmode=verify-full")
    assert isinstance(url, dburl.PostgresUrl) and url.password == "p@ss"
    assert str(url) == "postgresql://ana@db.example.com:5433/llm?sslmode=verify-full" and "p@ss" not in repr(url)
    params = url.conninfo()
    assert (params["password"], params["sslmode"], params["port"]) == ("p@ss", "verify-full", "5433")
    assert params["keepalives"] == "1"
    for bad, says in (("mysql://a@b/c", "unknown database URL scheme 'mysql'"), ("sqlite://x.db", "three slashes"),
                      ("postgresql://me@host", "names no database"), ("", "empty database URL")):
        with pytest.raises(ConfigError, match=says):
            dburl.parse(bad)


def test_the_option_wins_over_the_environment_which_wins_over_the_config(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LLMTRAY_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    assert dburl.resolve(f"sqlite:///{tmp_path}/opt.db", f"sqlite:///{tmp_path}/cfg.db") == tmp_path / "opt.db"
    assert dburl.resolve(None, f"sqlite:///{tmp_path}/cfg.db") == tmp_path / "env.db"
    monkeypatch.delenv("LLMTRAY_DATABASE_URL")
    assert dburl.resolve(None, f"sqlite:///{tmp_path}/cfg.db") == tmp_path / "cfg.db"
    assert dburl.resolve(None, None) is None
    monkeypatch.setenv("LLMTRAY_MACHINE", "ci-7")
    assert dburl.resolve("postgresql://u@h/db", None, "configured").machine == "ci-7"


def test_a_sqlite_file_elsewhere_holds_the_events_and_the_data_dir_the_rest(data_dir: Path, tmp_path: Path, capsys):
    elsewhere = tmp_path / "shared" / "spend.db"
    elsewhere.parent.mkdir()
    (data_dir / "config.toml").write_text(f'[database]\nurl = "sqlite:///{elsewhere}"\n')
    assert main(["--data-dir", str(data_dir), "budgets", "add", "--name", "b", "--limit", "5", "--period", "day"]) == 0
    assert elsewhere.exists() and not (data_dir / "llmtray.db").exists()
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "budgets", "list"]) == 0
    assert "b" in capsys.readouterr().out
