"""Issue #26 item 8: files llmtray creates are 0600 even in a pre-existing 0755 folder, and
settings or a token that another user could have written are refused, loudly, by the real CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from llmtray import config as config_mod
from llmtray.core.pricing import load_overrides
from llmtray.core.store import Store
from llmtray.core.trust import UntrustedFile
from tests.ingest.test_serve import start_serve

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")

ATTACKER = 'openai = "http://127.0.0.1:9/steal"'


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_folder(tmp_path: Path) -> Path:
    """A data folder that already exists as 0755, in a process whose umask is the usual 022."""
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    old = os.umask(0o022)
    yield folder
    os.umask(old)


def serve(folder: Path) -> subprocess.CompletedProcess[str]:
    """`llmtray serve` expected to refuse to start (it is killed if it starts anyway)."""
    cmd = [sys.executable, "-m", "llmtray", "--data-dir", str(folder), "serve", "--port", "0"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("serve started with a file another user could have written") from None


def test_serve_creates_every_file_0600_in_an_existing_0755_folder(open_folder):
    proc, _, _ = start_serve(open_folder)
    try:
        for name in ("llmtray.db", "llmtray.db-wal", "llmtray.db-shm", "ingest.json", "token"):
            assert mode(open_folder / name) == 0o600, name
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_library_makes_the_database_0600_and_tightens_an_old_0644_one(open_folder):
    store = Store.open(open_folder / "llmtray.db")
    assert {mode(open_folder / f"llmtray.db{s}") for s in ("", "-wal", "-shm")} == {0o600}
    store.close()
    (open_folder / "llmtray.db").chmod(0o644)  # as an older llmtray left it
    Store.open(open_folder / "llmtray.db").close()
    assert mode(open_folder / "llmtray.db") == 0o600


def test_a_saved_config_is_0600(open_folder):
    config_mod.save(open_folder / "config.toml", {"alerts": {"spike_factor": 5}})
    assert mode(open_folder / "config.toml") == 0o600


def test_a_config_in_a_folder_others_can_write_is_refused(open_folder):
    (open_folder / "config.toml").write_text(f"[proxy.upstreams]\n{ATTACKER}\n")
    open_folder.chmod(0o777)
    done = serve(open_folder)
    assert done.returncode == 2
    assert (f"not loading config.toml: {open_folder} is writable by everyone (mode 0777; fix: chmod go-w "
            f"{open_folder})") in done.stderr
    open_folder.chmod(0o700)
    assert config_mod.load(open_folder / "config.toml").upstreams == {"openai": "http://127.0.0.1:9/steal"}


def test_a_group_writable_pricing_file_is_refused(open_folder):
    path = open_folder / "pricing.toml"
    path.write_text('[[model]]\nprovider = "openai"\nmodel = "gpt-4o"\ninput_mtok = 0\n')
    path.chmod(0o664)
    with pytest.raises(UntrustedFile, match=r"pricing.toml is writable by its group \(mode 0664; fix: chmod go-w "):
        load_overrides(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_token_owned_by_another_user_is_refused_and_left_alone(open_folder):
    token = open_folder / "token"
    token.write_text("planted-token\n")
    os.chown(token, 65534, 65534)
    done = serve(open_folder)
    assert done.returncode == 2
    assert f"not loading token: {token} is owned by another user (uid 65534)" in done.stderr
    assert token.read_text() == "planted-token\n" and token.stat().st_uid == 65534
    assert not (open_folder / "ingest.json").exists()


def test_the_app_warns_about_a_data_folder_others_can_write(open_folder, tmp_path):
    """Also shown as a notice in the window (a launcher user has no stderr)."""
    open_folder.chmod(0o777)
    done = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(open_folder), "--screenshot",
                           str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert (f"{open_folder} is writable by everyone (mode 0777; fix: chmod go-w {open_folder}): another user "
            "could replace llmtray's database and settings") in done.stderr
