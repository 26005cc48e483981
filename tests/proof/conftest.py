"""The proof suite: DESIGN's promises under load, faults and hostile input, against the real
server (an `IngestService` on an ephemeral port, or `llmtray serve` as a subprocess), real
SQLite files and real hook processes.

Two modes. Short (the default, what CI runs): a couple of hundred fuzz examples, three SIGKILLs
of `serve`, two of a hook process, a 20-second soak. Long: ten times the fuzz examples, 20 kills
each, a soak of several minutes through `bench/soak.py`:

    pytest tests/proof -q                       # short
    pytest tests/proof -q --long                # long (or LLMTRAY_PROOF=long pytest tests/proof)

`--long` is known only when tests/proof is named on the command line (pytest reads options
from the conftests of the paths it is given); the environment variable works from anywhere.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import strategies as st

from llmtray.ingest.service import IngestService
from llmtray.ingest.messages import Limits
from llmtray.paths import Paths
from tests.proxy.conftest import stub_config
from tests.proxy.stub import StubUpstream

PROOF_ENV = "LLMTRAY_PROOF"
# Short waits, so a slow or broken client is cut off within a fuzz example's time.
LIMITS = Limits(header_timeout=5.0, body_timeout=5.0, shutdown_grace=2.0, linger=0.5)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help=f"run the proof suite's long mode (same as {PROOF_ENV}=long)")


@dataclass(frozen=True)
class Mode:
    """How hard to push: `pick(short, long)` chooses the figure for this run."""

    long: bool

    def pick(self, short: int | float, long: int | float) -> int | float:
        return long if self.long else short


def mode_of(config: pytest.Config) -> Mode:
    return Mode(bool(config.getoption("--long", default=False)) or os.environ.get(PROOF_ENV, "").lower() == "long")


@pytest.fixture(scope="session")
def mode(pytestconfig: pytest.Config) -> Mode:
    return mode_of(pytestconfig)


def llmtray_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("llmtray-") and t.is_alive()}


@contextmanager
def threads_stopped() -> Iterator[None]:
    """No llmtray thread started inside the block outlives it (for servers shared by a module)."""
    before = llmtray_threads()
    yield
    leaked = sorted(t.name for t in llmtray_threads() - before)
    assert not leaked, f"threads left running: {leaked}"


@contextmanager
def proxying_service(data: Path) -> Iterator[tuple[IngestService, StubUpstream]]:
    """The real service with every proxy upstream pointed at a local stub upstream."""
    with threads_stopped():
        stub = StubUpstream()
        service = IngestService(Paths(data, data, data), stub_config(stub), port=0, limits=LIMITS)
        try:
            service.start()
            assert service.wait_ready(30)
            yield service, stub
        finally:
            service.stop()  # before the stub: the proxy's pooled connections go first
            stub.close()


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws (Hypothesis' own integers lean on boundary values)."""
    return draw(st.randoms(use_true_random=True)).random() * one_in < 1


def row_count(db: Path, where: str = "", *args: object) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM event {where}", args).fetchone()[0]
    finally:
        conn.close()


def id_counts(db: Path, prefix: str) -> dict[str, int]:
    """How many rows carry each event id starting with `prefix` (exactly-once checks)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT event_id, count(*) FROM event WHERE event_id LIKE ? || '%' GROUP BY event_id",
                            (prefix,))
        return dict(rows.fetchall())
    finally:
        conn.close()


# A traceback, a frame, an exception's repr, an object's address: never meant for a client.
TRACEBACK_MARKERS = ("Traceback", 'File "', ".py\", line", "Error(", "Exception(", "object at 0x", "<built-in")


def assert_no_traceback(text: str) -> None:
    """No Python internals in what a client or a log reader sees."""
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"{marker!r} in {text[:500]!r}"
