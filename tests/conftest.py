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


@pytest.fixture
def store(data_dir: Path):
    from llmtray.core.store import Store

    s = Store.open(data_dir / "llmtray.db")
    yield s
    s.close()
