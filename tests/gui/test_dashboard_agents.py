"""Coding agents on the dashboard: their sources reach the filter at once, and spend breaks down
by project and by session (the `session` tag every agent call carries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.core.commits import Committed
from llmtray.core.events import parse_event
from llmtray.core.queries import Filters, Queries
from llmtray.core.store import Store, to_us
from tests.agents.kit import make_home, scan


def test_agent_calls_show_by_source_project_and_session(qtbot, make_dashboard, tmp_path: Path):
    db = tmp_path / "data" / "llmtray.db"
    store = Store.open(db)
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "input_tokens": 10})], "hook")
    window = make_dashboard(db)
    picker = window.filter_bar.pickers["source"]
    assert picker.findData("hook") > 0 and picker.findData("claude-code") < 0
    reports = scan(store, make_home(tmp_path, "claude", "codex"))
    window.on_committed(Committed(sum(r.added for r in reports.values()), 0, None, None,
                                  frozenset({"claude-code", "codex"})))
    # a new source refreshes the pickers now, not at the next 5-minute options round
    qtbot.waitUntil(lambda: picker.findData("claude-code") > 0 and picker.findData("codex") > 0, timeout=10_000)
    queries = Queries(store.conn, None)
    window.filter_bar.select("range", "90d")
    chart = window.breakdown_chart
    for dim in ("project", "tag:session"):
        qtbot.waitUntil(lambda: chart.picker.findData(dim) >= 0, timeout=10_000)
        with qtbot.waitSignal(window.settled, timeout=20_000):
            chart.picker.setCurrentIndex(chart.picker.findData(dim))
        names = {name for name, _ in chart.plotted()}
        recent = Filters(start_us=to_us(datetime.now(UTC) - timedelta(days=89)))  # inside "last 90 days"
        expected = {n or "(none)" for n, t in queries.by(dim, recent) if t.cost_nanos}
        assert expected <= names | {"other"}, (dim, names)
    assert {"shop-api", "billing"} <= {n for n, _ in queries.by("project", Filters())}
    with qtbot.waitSignal(window.settled, timeout=20_000):
        picker.setCurrentIndex(picker.findData("claude-code"))
    window.resize(1400, 900)
    window.grab().save(str(tmp_path / "dashboard-agents.png"))
    store.close()


def test_subscription_usage_is_shown_beside_spend_not_in_it(qtbot, make_dashboard, tmp_path: Path):
    from llmtray.agents.settings import AgentsConfig, AgentSettings

    db = tmp_path / "data" / "llmtray.db"
    store = Store.open(db)
    config = AgentsConfig(agents={"codex": AgentSettings(billing="subscription")})
    scan(store, make_home(tmp_path, "claude", "codex"), config)
    window = make_dashboard(db)
    with qtbot.waitSignal(window.settled, timeout=20_000):
        window.filter_bar.select("range", "90d")
    # the five priced Codex calls of tests/agents/test_codex.py: $0.054 at API prices, shown as $0.05
    assert window.subscription.isVisibleTo(window)
    assert window.subscription.text().startswith("Coding agents on a subscription: $0.05 at API prices")
    claude_only = sum(t.cost_nanos for _, t in Queries(store.conn, None).by("source", Filters()) if _ == "claude-code")
    codex_spend = [t.cost_nanos for s, t in Queries(store.conn, None).by("source", Filters()) if s == "codex"]
    assert codex_spend == [0] and claude_only > 0
    window.resize(1400, 900)
    window.grab().save(str(tmp_path / "dashboard-subscription.png"))
    picker = window.filter_bar.pickers["source"]
    with qtbot.waitSignal(window.settled, timeout=20_000):
        picker.setCurrentIndex(picker.findData("claude-code"))
    assert not window.subscription.isVisibleTo(window)  # none of Claude Code's calls are on the plan
    store.close()
