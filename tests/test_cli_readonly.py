"""#17 item 4: a read-only data dir. Commands that only read work on it (no migration needed →
opened read-only); one that needs a migration says so in one sentence; writers say what is
wrong — never a `sqlite3.OperationalError` traceback — and nothing in the folder changes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmtray.core import db as dbmod

ROOT = os.geteuid() == 0


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    return subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def set_read_only(folder: Path, on: bool) -> None:
    """chmod for a normal user; root ignores modes, so the immutable attribute (ext4/xfs) there."""
    paths = [folder, *folder.iterdir()]
    if ROOT:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        flag = "+i" if on else "-i"
        proc = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True)
        if proc.returncode and on:
            pytest.skip(f"chattr +i not supported here: {proc.stderr.strip()}")
    else:
        for p in paths:
            p.chmod((0o555 if p.is_dir() else 0o444) if on else (0o755 if p.is_dir() else 0o644))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    made: list[Path] = []

    def make(folder: Path) -> Path:
        set_read_only(folder, True)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        set_read_only(folder, False)


def test_read_only_commands_work_and_writers_say_why(tmp_path: Path, read_only):
    data = tmp_path / "data"
    assert cli(data, "budgets", "add", "--name", "team", "--limit", "5", "--period", "day").returncode == 0
    before = snapshot(data)
    read_only(data)
    status = cli(data, "status")
    assert status.returncode == 0, status.stderr
    assert "team" in status.stdout
    for args in (["report"], ["budgets", "list"], ["export", "--format", "csv"], ["import", "--list"]):
        proc = cli(data, *args)
        assert proc.returncode == 0 and proc.stderr == "", (args, proc.stderr)
    for args in (["budgets", "add", "--name", "more", "--limit", "1", "--period", "day"], ["reprice"],
                 ["serve", "--port", "0"]):
        proc = cli(data, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"cannot write to {data / 'llmtray.db'}" in proc.stderr and "read-only" in proc.stderr
    assert snapshot(data) == before  # nothing changed, nothing lost


def test_a_read_only_database_that_needs_a_migration_says_so_in_one_sentence(tmp_path: Path, read_only):
    data = tmp_path / "data"
    data.mkdir()
    dbmod.migrate(data / "llmtray.db", upto=dbmod.MIGRATIONS[-1].version - 1)  # written by an older llmtray
    before = snapshot(data)
    read_only(data)
    proc = cli(data, "status")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "is read-only and was written by an older llmtray" in line and "make the data folder writable" in line
    assert snapshot(data) == before
