"""The team database's schema: SQLite's translated, created once, kept in step with SQLite's."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from llmtray.core import db as dbmod, dburl, pg
from llmtray.core.errors import SchemaTooNewError


def test_every_sqlite_migration_has_its_postgresql_step():
    """A new SQLite migration must come with a PostgreSQL upgrade (`pg.UPGRADES`), or team
    databases would stay behind the code that reads them."""
    assert pg.SCHEMA_VERSION == dbmod.MIGRATIONS[-1].version


def test_machines_starting_together_create_the_schema_once(team_url):
    url = dburl.parse(team_url)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            dbmod.migrate(url)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = pg.connect(url)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (pg.SCHEMA_VERSION,)
        assert conn.execute("SELECT count(*) FROM llmtray_schema").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        sqlite_tables = {name for kind, name, _ in pg._sqlite_schema()[0] if kind == "table"}
        assert sqlite_tables <= tables
    finally:
        conn.close()


def test_a_team_database_from_a_newer_llmtray_is_refused(team_url):
    url = dburl.parse(team_url)
    dbmod.migrate(url)
    conn = pg.connect(url)
    conn.execute("UPDATE llmtray_schema SET version = 999")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="schema version 999"):
        dbmod.migrate(url)


def test_sql_dialect_differences_are_translated_once_and_exactly():
    t = pg.translate
    assert t("SELECT user, e.user FROM event e WHERE user = ? AND x LIKE '%user?'") == \
        "SELECT \"user\", e.user FROM event e WHERE \"user\" = %s AND x LIKE '%%user?'"
    assert t("INSERT OR IGNORE INTO name (text) VALUES (?)") == "INSERT INTO name (text) VALUES (%s) ON CONFLICT DO NOTHING"
    assert t("SELECT 1 FROM event WHERE 1") == "SELECT 1 FROM event WHERE true"
    assert t("SELECT (cost_nanos IS NULL) * requests FROM event WHERE dataset_id IS NOT 3") == \
        "SELECT (cost_nanos IS NULL)::int * requests FROM event WHERE dataset_id IS DISTINCT FROM 3"
    assert t("INSERT INTO rollup_day (day, events) SELECT 1, 1 WHERE true ON CONFLICT DO UPDATE SET"
             " events = events + excluded.events").endswith(
        "ON CONFLICT (day, provider, model, feature, project, env, source, status) DO UPDATE SET"
        " events = rollup_day.events + excluded.events")
    assert t("SELECT model GLOB ? FROM x -- a comment's quote\n") == "SELECT llmtray_glob(model, %s) FROM x \n"
    with pytest.raises(sqlite3.Error):  # errors arrive as the sqlite3 classes callers catch
        raise pg._as_sqlite(pg.pg_errors.UniqueViolation("duplicate key"))
