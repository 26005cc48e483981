"""The tray tells subscription usage (coding agents on a flat plan) apart from spend."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmtray.agents.settings import AgentsConfig, AgentSettings
from llmtray.agents.status import with_subscription_value
from llmtray.core.events import parse_event
from llmtray.core.status import summary
from llmtray.core.store import Store
from llmtray.gui.tray import SummaryWorker, Tray, TrayActions
from tests.agents.kit import make_home, scan


def test_plan_value_shown_beside_spend_in_tooltip_and_menu(qtbot, data_dir: Path, tmp_path: Path):
    store = Store.open(data_dir / "llmtray.db")
    now = datetime.now(UTC)
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "cost_usd": "2", "ts": now.isoformat()})], "api")
    home = make_home(tmp_path, "claude")
    log = next((home / ".claude" / "projects").rglob("7f3c2a9e-*.jsonl"))
    recent = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # this month's calls, whatever the day
    log.write_text(re.sub(r'"timestamp":"[^"]+"', f'"timestamp":"{recent}"', log.read_text()))
    scan(store, home, AgentsConfig(agents={"claude-code": AgentSettings(billing="subscription")}))
    store.close()
    actions = TrayActions(*(lambda *a: None for _ in fields(TrayActions)))
    tray = Tray(actions, SummaryWorker(data_dir / "llmtray.db", UTC,
                                       lambda q, at: with_subscription_value(summary(q, at), q, at)))
    try:
        tray.request_refresh()
        qtbot.waitUntil(lambda: "subscription_month_usd" in tray.summary, timeout=5000)
        # 0.014394 + 0.008805 + 0.0226 at API prices (the gateway model is unpriced): not in spend
        assert tray.summary["subscription_month_usd"] == "0.045799"
        assert tray.summary["month_usd"] == "2"
        assert tray.icon.toolTip() == "llmtray — today $2.00 · month $2.00 · plan value $0.05"
        texts = [a.text() for a in tray.menu.actions() if a.text()]
        assert texts[2] == "Agents on a subscription: $0.05 at API prices this month (not spend)"
    finally:
        tray.close()
