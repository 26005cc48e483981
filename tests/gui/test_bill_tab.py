"""The Bill tab on a real database: demo traffic observed, a bill synced from the stub that
matches most days and differs on one; the table, chart and KPI cards show what the
reconciliation says, and the dashboard carries the tab."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from llmtray.billing.keys import SPECS
from llmtray.billing.sources import utc_today
from llmtray.billing.sync import sync_source
from llmtray.config import Config
from llmtray.core.money import format_usd, nanos_to_str
from llmtray.core.queries import Filters, Queries
from llmtray.core.store import Store
from tests.billing.stub import KEYS, BillingStub, openai_cost, openai_usage


def bill_like_observed(db, stub: BillingStub, drift_day) -> None:  # noqa: ANN001
    """The stub bills what the demo observed for OpenAI per UTC day and model, 30 % more on `drift_day`."""
    store = Store.open(db)
    try:
        q = Queries(store.conn)
        today = utc_today()
        f = Filters(provider=("openai",))
        for day, (model,), t in q.per_utc_day(f, ("model",)):
            if day > today - timedelta(days=1) or not t.cost_nanos:
                continue
            usd = Decimal(nanos_to_str(t.cost_nanos)) * (Decimal("1.3") if day == drift_day else 1)
            stub.data.openai_costs.setdefault(day, []).append(openai_cost(str(usd), f"{model}, input"))
            stub.data.openai_usage.setdefault(day, []).append(
                openai_usage(model, t.requests, t.input_tokens, t.output_tokens, cached=t.cache_read_tokens))
    finally:
        store.close()


def test_bill_tab_shows_billed_vs_observed(qtbot, demo_db, monkeypatch):
    from llmtray.gui import theme
    from llmtray.gui.bill_tab import COLUMNS, BillTab

    theme.configure_pyqtgraph()

    monkeypatch.setenv(SPECS["openai"].env, KEYS["openai"])
    drift_day = utc_today() - timedelta(days=4)
    with BillingStub() as stub:
        bill_like_observed(demo_db, stub, drift_day)
        sync_source(demo_db, Config(billing_urls={"openai": stub.url}), "openai")
    tab = BillTab(demo_db)
    tab.setStyleSheet(theme.STYLESHEET)
    qtbot.addWidget(tab)
    tab.resize(1300, 820)
    with qtbot.waitSignal(tab.loaded, timeout=20_000):
        tab.show()
    view = tab.view
    assert view is not None
    statuses = {(line.day, line.status) for line in view.result.lines if line.provider == "openai"}
    assert (drift_day, "drift") in statuses
    assert all(st in ("match", "provisional", "drift") for _, st in statuses)
    assert {line.provider for line in view.result.lines} == {"openai"}  # only what has a bill
    assert tab.cards["billed"].value.text() == format_usd(view.month_billed_nanos)
    assert tab.cards["billed"].sub.text().startswith("as of ")
    assert tab.cards["drift"].value.text() == "1" == str(view.drift_days)  # one day, three models off
    assert "openai: synced" in tab.sources.text() and "anthropic: not connected" in tab.sources.text()
    # the table's drift row names its cause; the chart drew billed and observed for each day
    rows = [[tab.table.item(r, c).text() for c in range(len(COLUMNS))] for r in range(tab.table.rowCount())]
    drift_rows = [r for r in rows if r[0] == drift_day.isoformat() and r[7] == "drift"]
    assert drift_rows and all(r[8] == "price data" for r in drift_rows)  # same quantities, 30 % more dollars
    drawn = tab.chart.plotted()
    assert len(drawn["observed"]) == 31 and sum(drawn["billed"]) > 0
    qtbot.wait(100)  # let the layout take the new texts before the picture
    assert tab.chart.note.width() >= tab.chart.note.sizeHint().width()  # "30 of 31 days billed", not clipped
    tab.grab().save("/tmp/bill_tab.png")
    tab.shutdown()


def test_dashboard_has_the_bill_tab(qtbot, make_dashboard, demo_db, monkeypatch):
    for spec in SPECS.values():
        monkeypatch.delenv(spec.env, raising=False)
    window = make_dashboard(demo_db)
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert "Bill" in names
    with qtbot.waitSignal(window.bill.loaded, timeout=20_000):
        window.tabs.setCurrentWidget(window.bill)
    assert window.bill.cards["billed"].value.text() == "—"  # nothing connected on this database
    assert "Connect a source in Settings → Bills" in window.bill.sources.text()
    qtbot.wait(100)
    window.grab().save("/tmp/dashboard_bill.png")
