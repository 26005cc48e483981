"""#17 item 4 in the window: a read-only data dir still shows its numbers (opened read-only), and
when it can't be read (it needs an upgrade that can't be written) the KPIs say so instead of
"…" forever, with the reason in the status corner."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from llmtray.core import db as dbmod
from llmtray.core.events import parse_event
from llmtray.core.store import Store
from tests.test_cli_readonly import read_only  # noqa: F401 - the fixture


def test_the_window_reads_a_read_only_data_dir(make_dashboard, tmp_path: Path, read_only):  # noqa: F811
    data = tmp_path / "data"
    store = Store.open(data / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "2.5",
                            "ts": datetime.now(UTC).isoformat()})], "api")
    store.close()
    read_only(data)
    window = make_dashboard(data / "llmtray.db")
    assert window.kpis.cards["today"].value.text() == "$2.50"
    assert not window.status.text().startswith("refresh failed")


def test_kpis_say_why_when_nothing_can_be_read(make_dashboard, tmp_path: Path, read_only):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    dbmod.migrate(data / "llmtray.db", upto=dbmod.MIGRATIONS[-1].version - 1)
    read_only(data)
    window = make_dashboard(data / "llmtray.db")
    card = window.kpis.cards["today"]
    assert (card.value.text(), card.sub.text()) == ("—", "not available")
    assert "is read-only and was written by an older llmtray" in card.sub.toolTip()
    assert window.kpis.isVisibleTo(window) and window.notice.isVisibleTo(window)
    assert "is read-only and was written by an older llmtray" in window.notice.text()
    assert window.status.text() == "refresh failed: the data can't be read (see above)"
