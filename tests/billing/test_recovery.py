"""A repaired database keeps the synced bill: the ledger is copied like budgets and alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmtray.billing import ledger
from llmtray.billing.errors import WrongKeyClass
from llmtray.billing.sync import sync_source
from llmtray.core.damage import damage_marker
from llmtray.core.recovery import ensure_usable
from tests.billing.stub import Fault, openai_cost
from tests.billing.test_sync import NOW, TODAY, rows
from tests.core.test_recovery import damage, fill


def test_the_bill_survives_a_repair(data_dir, stub, keys, config):
    path = data_dir / "llmtray.db"
    fill(path)
    stub.data.openai_costs[TODAY - timedelta(days=3)] = [openai_cost("0.0612345678901234567890", "gpt-4o, input")]
    sync_source(path, config, "openai", now=NOW)
    stub.faults["/api/v1/activity"].append(Fault(403, {"error": {"message": "Only management keys"}}))
    with pytest.raises(WrongKeyClass):  # a failed source's state is kept too
        sync_source(path, config, "openrouter", now=NOW)
    before = rows(data_dir, "openai")
    conn = ledger.open_ledger(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        states_before, pages_before = ledger.states(conn), conn.execute("SELECT count(*) FROM billing_page").fetchone()
    finally:
        conn.close()
    damage(path, "event_row")
    damage_marker(path).write_text("test\n")
    recovered = ensure_usable(path)
    assert recovered is not None and recovered.lost == ()
    assert rows(data_dir, "openai") == before
    conn = ledger.open_ledger(path)
    try:
        assert ledger.states(conn) == states_before
        assert conn.execute("SELECT count(*) FROM billing_page").fetchone() == pages_before
        assert ledger.coverage(conn, "openai").days == 30
    finally:
        conn.close()
