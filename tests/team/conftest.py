"""Team mode's tests: machines sharing one real PostgreSQL (the session's, tests/postgres.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def team_url(pg_server):  # noqa: ANN001
    """A fresh, empty team database (llmtray creates its schema on first use)."""
    url = pg_server.new_database(schema=False)
    yield url
    pg_server.drop_database(url)
