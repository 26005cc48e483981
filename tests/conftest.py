"""Suite-wide setup: Qt offscreen, a throwaway keyring, and a fresh data dir per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"  # tests never touch a real keyring
os.environ.pop("LLMTRAY_DATA_DIR", None)
os.environ.pop("LLMTRAY_URL", None)
os.environ.pop("LLMTRAY_TOKEN", None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d




BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`db_backend` is "sqlite", and also "postgresql" for tests marked `both_backends` (the
    store, query, budget and import suites: one parametrised suite for both storages)."""
    if "db_backend" in metafunc.fixturenames:
        both = (metafunc.definition.get_closest_marker("both_backends") is not None
                and metafunc.definition.get_closest_marker("sqlite_only") is None)
        metafunc.parametrize("db_backend", BACKENDS if both else BACKENDS[:1])


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL for the session (tests/postgres.py), or a skip saying why there is none."""
    from tests import postgres

    server = postgres.start()
    if isinstance(server, str):
        pytest.skip(f"PostgreSQL half skipped: {server}")
    yield server
    server.stop()


@pytest.fixture
def database(request: pytest.FixtureRequest, db_backend: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Where the test's events live: the data dir's SQLite file, or a fresh PostgreSQL database
    (then `LLMTRAY_DATABASE_URL` names it, so the CLI and `serve` in the test use it too)."""
    if db_backend == "sqlite":
        yield data_dir / "llmtray.db"
        return
    from llmtray.core import dburl

    server = request.getfixturevalue("pg_server")
    url = server.new_database()
    monkeypatch.setenv("LLMTRAY_DATABASE_URL", url)
    monkeypatch.setenv("LLMTRAY_MACHINE", "test-machine")
    yield dburl.parse(url)  # no machine name: the store's suites compare exact tags on both backends
    server.drop_database(url)


@pytest.fixture
def store(database):
    from llmtray.core.store import Store

    s = Store.open(database)
    yield s
    s.close()
