"""A schema migration killed with SIGKILL keeps every event: the next start completes it.

A database of today's schema (`bench/migrate.py`'s builder: an OpenRouter import plus live
calls, with tags and rollups) is migrated by a child process, as the app does it, which is
killed at points spread over the migration's own duration, measured first by a run left to
finish. After each kill the database is opened again with `migrate` (as the next start would),
and every event must be there exactly as before, read through `event` and `event_tag` whatever
their layout, with rollups equal to their rebuild, at the newest schema. All the events were
committed before the migration began: each one is acknowledged.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from bench.migrate import FROM_VERSION, build, migration_process
from llmtray.core import db as dbmod
from tests.importers.conftest import assert_rollups_exact

pytestmark = pytest.mark.slow

ROWS = 20_000
# Dense days, as a heavy user's are: spread thin, the rollups (rebuilt to check them after each
# kill) would hold more rows than the events.
DAYS = 2
# Where the kills land, as fractions of the unkilled migration's duration.
FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
RETRIES = 4  # a kill that came after the child finished is tried again at half the delay

Snapshot = set[tuple]


def snapshot(path: Path) -> Snapshot:
    """Every event as (id, event_id, ts, model, provider, source, cost_nanos, input_tokens,
    output_tokens, latency_ms, its tags as sorted (key, value) pairs)."""
    with closing(sqlite3.connect(path)) as conn:
        tags: dict[int, list[tuple[str, str]]] = {}
        for event, key, value in conn.execute("SELECT event, key, value FROM event_tag ORDER BY event, key"):
            tags.setdefault(event, []).append((key, value))
        return {(*row, tuple(tags.pop(row[0], ()))) for row in conn.execute(
            "SELECT id, event_id, ts, model, provider, source, cost_nanos, input_tokens, output_tokens, latency_ms"
            " FROM event")} | ({("orphan tags", event, tuple(t)) for event, t in tags.items()})


def assert_same(path: Path, before: Snapshot, where: str) -> None:
    after = snapshot(path)
    lost, gained = sorted(before - after), sorted(after - before)
    assert not lost and not gained, (f"{where}: {len(lost)} events lost or changed (first {lost[:2]}), "
                                     f"{len(gained)} new or changed (first {gained[:2]})")


def assert_intact(path: Path, before: Snapshot, where: str) -> None:
    """`path`, migrated again, at the newest schema, every event and tag as `before`, rollups
    exact; and each backup the migrations left beside it (what a user would restore) complete."""
    assert dbmod.migrate(path) == dbmod.MIGRATIONS[-1].version, where
    assert_same(path, before, where)
    backups = sorted(path.parent.glob(f"{path.name}.*.bak"))
    assert backups or not any(m.backup for m in dbmod.MIGRATIONS if m.version > FROM_VERSION), where
    for backup in backups:
        assert_same(backup, before, f"{where}, {backup.name}")
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], where
        assert dbmod.schema_version(conn) == dbmod.MIGRATIONS[-1].version, where
        assert_rollups_exact(conn)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "llmtray.db"
    build(path, ROWS, days=DAYS)
    return path


@pytest.fixture(scope="module")
def before(source: Path) -> Snapshot:
    events = snapshot(source)
    assert len(events) == ROWS
    return events


@pytest.fixture(scope="module")
def unkilled(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A copy migrated by a child left to finish, and how long its `migrate` took."""
    work = tmp_path_factory.mktemp("unkilled") / "llmtray.db"
    shutil.copyfile(source, work)
    proc = migration_process(work)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return work, json.loads(out.strip().splitlines()[-1])["seconds"]


def kill_after(path: Path, delay: float) -> bool:
    """Start migrating `path` in a child and SIGKILL it `delay` s into `migrate`; whether the kill
    landed (the child was still running)."""
    proc = migration_process(path)
    time.sleep(delay)
    landed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return landed and proc.returncode == -signal.SIGKILL


def test_a_finished_migration_keeps_every_event(unkilled: tuple[Path, float], before: Snapshot, source: Path):
    work, _ = unkilled
    with closing(sqlite3.connect(source)) as conn:
        assert dbmod.schema_version(conn) < dbmod.MIGRATIONS[-1].version  # there was something to migrate
    assert_intact(work, before, "unkilled")


def test_a_migration_killed_anywhere_completes_on_the_next_start_with_every_event(
        source: Path, before: Snapshot, unkilled: tuple[Path, float], tmp_path: Path):
    _, seconds = unkilled
    interrupted = []  # (fraction, delay, schema version the kill left)
    for fraction in FRACTIONS:
        delay = fraction * seconds
        for attempt in range(RETRIES):
            work = tmp_path / f"kill-{fraction}-{attempt}" / "llmtray.db"
            work.parent.mkdir()
            shutil.copyfile(source, work)
            if kill_after(work, delay):
                break
            delay /= 2
        else:
            pytest.fail(f"the migration ({seconds:.2f} s unkilled) always finished before the kill at {fraction}")
        with closing(sqlite3.connect(work)) as conn:
            interrupted.append((fraction, round(delay, 3), dbmod.schema_version(conn)))
        assert_same(work, before, f"killed {delay:.3f} s into the migration, before the next start")
        assert_intact(work, before, f"killed {delay:.3f} s into the migration")
    # at least one kill left the migration unfinished (not all after its last commit)
    assert any(version < dbmod.MIGRATIONS[-1].version for *_, version in interrupted), interrupted
