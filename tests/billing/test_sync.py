"""Syncing each source from the local stub into the ledger: requests as documented, pagination,
exact money in each source's unit, a re-fetch that replaces, and every fault a clear state that
leaves the rows of earlier rounds as they were."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from llmtray.billing import ledger
from llmtray.billing.errors import AuthFailed, MalformedPage, NotConnected, RateLimited, Unavailable, WrongKeyClass
from llmtray.billing.sync import sync_source
from tests.billing.stub import (ANTHROPIC_KEY, OPENAI_KEY, Fault, anthropic_cost, anthropic_usage, openai_cost,
                                openai_usage, openrouter_row)

TODAY = date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 4, 30, tzinfo=UTC).timestamp()


def db(data_dir: Path) -> Path:
    return data_dir / "llmtray.db"


def rows(data_dir: Path, source: str) -> list[tuple]:
    conn = sqlite3.connect(db(data_dir))
    try:
        return conn.execute("SELECT day, kind, model, project, item, category, tier, amount_nanos, requests,"
                            " input_tokens, cache_read_tokens, cache_write_tokens, output_tokens FROM billing_row"
                            " WHERE source = ? ORDER BY day, kind, model, item", (source,)).fetchall()
    finally:
        conn.close()


def state(data_dir: Path, source: str) -> ledger.SourceState:
    conn = ledger.open_ledger(db(data_dir))
    try:
        return ledger.states(conn)[source]
    finally:
        conn.close()


def test_openai_backfill_exact_money_and_requests(data_dir, stub, keys, config):
    day = TODAY - timedelta(days=3)
    stub.data.openai_costs[day] = [
        openai_cost("0.0612345678901234567890123456789012345678", "gpt-4o-2024-08-06, input"),  # a live body
        openai_cost(0.02, "gpt-4o-2024-08-06, output"),  # the spec's number
        openai_cost("0E-6176", "gpt-4o-2024-08-06, cached input"),
        openai_cost("0.01", "web search tool calls"),
    ]
    stub.data.openai_usage[day] = [openai_usage("gpt-4o-2024-08-06", 10, 5000, 700, cached=1000)]
    result = sync_source(db(data_dir), config, "openai", now=NOW)
    assert result.window.days[0] == TODAY - timedelta(days=29) and result.window.end == TODAY + timedelta(days=1)
    # 0.06123…5678 rounds half-even to 61_234_568 nanos; 0.02 is 20_000_000; the tool line 10_000_000
    assert result.billed_nanos == 61_234_568 + 20_000_000 + 0 + 10_000_000
    got = rows(data_dir, "openai")
    assert (day.isoformat(), "cost", "gpt-4o-2024-08-06", "proj_abc", "gpt-4o-2024-08-06, input", "tokens", "",
            61_234_568, None, 0, 0, 0, 0) in got
    assert (day.isoformat(), "cost", "", "proj_abc", "web search tool calls", "tool", "", 10_000_000,
            None, 0, 0, 0, 0) in got
    assert (day.isoformat(), "usage", "gpt-4o-2024-08-06", "proj_abc", "", "tokens", "", None, 10, 5000, 1000, 0,
            700) in got
    # the request shape: whole UTC days, grouped as documented, the key only in a header
    path, query, headers = next(r for r in stub.requests if r[0] == "/v1/organization/costs")
    assert query["group_by"] == ["project_id", "line_item"] and query["bucket_width"] == ["1d"]
    assert int(query["start_time"][0]) == int(datetime(2026, 11, 8, tzinfo=UTC).timestamp())
    assert headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert all(OPENAI_KEY not in str(q) for _, q, _ in stub.requests)
    st = state(data_dir, "openai")
    assert (st.state, st.backfilled, st.last_success) == ("ok", True, NOW)


def test_anthropic_cents_are_not_dollars_and_pages_are_followed(data_dir, stub, keys, config):
    """The ×100 trap: "41280.000000" cents is $412.80, "123.45" is $1.2345. 40 days at Anthropic's
    31 buckets a page takes two pages of each report."""
    first = TODAY - timedelta(days=39)
    stub.data.anthropic_costs[first] = [anthropic_cost("41280.000000", "claude-opus-5", "Claude Opus 5 Usage - "
                                                                                      "Input Tokens")]
    stub.data.anthropic_costs[TODAY - timedelta(days=2)] = [
        anthropic_cost("123.45", "claude-opus-5", "Claude Opus 5 Usage - Output Tokens", token_type="output_tokens"),
        anthropic_cost("50", None, "Code Execution Usage", cost_type="code_execution", token_type=None)]
    stub.data.anthropic_usage[TODAY - timedelta(days=2)] = [
        anthropic_usage("claude-opus-5", uncached=100, output=50, cache_read=400, cache_5m=20, cache_1h=30)]
    result = sync_source(db(data_dir), config, "anthropic", since=first, now=NOW)
    assert result.billed_nanos == 412_800_000_000 + 1_234_500_000 + 500_000_000
    assert stub.paths().count("/v1/organizations/cost_report") == 2
    assert stub.paths().count("/v1/organizations/usage_report/messages") == 2
    got = {(r[0], r[4]): r for r in rows(data_dir, "anthropic")}
    assert got[(first.isoformat(), "Claude Opus 5 Usage - Input Tokens")][7] == 412_800_000_000
    assert got[((TODAY - timedelta(days=2)).isoformat(), "Code Execution Usage")][5] == "tool"
    usage = got[((TODAY - timedelta(days=2)).isoformat(), "")]
    # input = uncached + cache read + both cache writes, as observed events count it
    assert usage[8:] == (None, 100 + 400 + 20 + 30, 400, 50, 50)
    _, query, headers = stub.requests[0]
    assert headers["x-api-key"] == ANTHROPIC_KEY and headers["anthropic-version"] == "2023-06-01"
    assert query["group_by[]"] == ["workspace_id", "description"]
    assert query["starting_at"] == [f"{first.isoformat()}T00:00:00Z"]


def test_openrouter_completed_days_only_and_byok_apart(data_dir, stub, keys, config):
    yesterday = TODAY - timedelta(days=1)
    stub.data.openrouter_activity = [
        openrouter_row(yesterday, "openai/gpt-4o", 0.1234567, 3, 300, 30, byok=0.5),
        openrouter_row(TODAY - timedelta(days=45), "openai/gpt-4o", 9.0, 1, 1, 1),  # outside the window
    ]
    result = sync_source(db(data_dir), config, "openrouter", now=NOW)
    assert result.window.end == TODAY  # activity never has today
    assert result.billed_nanos == 123_456_700  # the float's literal digits, BYOK not counted
    got = rows(data_dir, "openrouter")
    assert [(r[5], r[7]) for r in got] == [("byok", 500_000_000), ("tokens", 123_456_700)]
    conn = ledger.open_ledger(db(data_dir))
    try:
        status = ledger.day_status(conn, TODAY - timedelta(days=3), TODAY)
    finally:
        conn.close()
    assert status[("openrouter", yesterday)][0] == "provisional"
    assert status[("openrouter", TODAY - timedelta(days=2))][0] == "settled"


def test_refetch_replaces_a_day_and_then_only_the_rolling_window(data_dir, stub, keys, config):
    day = TODAY - timedelta(days=1)
    stub.data.openai_costs[day] = [openai_cost("1.00", "gpt-4o, input"), openai_cost("2.00", "gpt-4o, output")]
    sync_source(db(data_dir), config, "openai", now=NOW)
    stub.data.openai_costs[day] = [openai_cost("1.50", "gpt-4o, input")]  # the provider settled the day
    stub.requests.clear()
    result = sync_source(db(data_dir), config, "openai", now=NOW)
    assert result.window.days == [TODAY - timedelta(days=2), day, TODAY]  # rolling once backfilled
    assert [(r[4], r[7]) for r in rows(data_dir, "openai")] == [("gpt-4o, input", 1_500_000_000)]
    conn = sqlite3.connect(db(data_dir))
    try:
        pages = conn.execute("SELECT endpoint, fetched_at, body FROM billing_page WHERE source = 'openai'"
                             " ORDER BY id").fetchall()
    finally:
        conn.close()
    # raw pages of both rounds kept as received, with their fetch time
    assert [p[0] for p in pages] == ["/v1/organization/costs", "/v1/organization/usage/completions"] * 2
    assert '"1.50"' in pages[2][2] and pages[0][1] <= pages[2][1]


def test_empty_org_is_a_synced_zero(data_dir, stub, keys, config):
    result = sync_source(db(data_dir), config, "anthropic", now=NOW)
    assert (result.rows, result.billed_nanos, len(result.window.days)) == (0, 0, 30)
    conn = ledger.open_ledger(db(data_dir))
    try:
        cov = ledger.coverage(conn, "anthropic")
    finally:
        conn.close()
    assert (cov.days, cov.billed_nanos, cov.provisional_days) == (30, 0, 2)


def _seed(data_dir, stub, config) -> list[tuple]:
    stub.data.openai_costs[TODAY - timedelta(days=1)] = [openai_cost("3.25", "gpt-4o, input")]
    sync_source(db(data_dir), config, "openai", now=NOW)
    return rows(data_dir, "openai")


@pytest.mark.parametrize(("fault", "error", "state_name", "words"), [
    (Fault(401, {"error": {"type": "insufficient_permissions", "message": "Missing scopes: api.usage.read"}}),
     WrongKeyClass, "needs_admin_key", "needs an admin"),
    (Fault(403, {"error": {"message": "You have insufficient permissions. Missing scopes: api.usage.read"}}),
     WrongKeyClass, "needs_admin_key", "Missing scopes"),
    (Fault(401, {"error": {"message": "Incorrect API key provided."}}), AuthFailed, "auth_failed", "revoked"),
    (Fault(500, {"error": {"message": "internal"}}), Unavailable, "unavailable", "server failed"),
    (Fault(404, {"error": {"message": "not found"}}), Unavailable, "unavailable", "unavailable (404)"),
    (Fault(429, {"error": {"message": "slow down"}}, {"Retry-After": "3600"}), RateLimited, "rate_limited",
     "rate-limited, retrying at"),
    (Fault(200, raw="<html>gateway</html>"), MalformedPage, "malformed", "not JSON"),
    (Fault(200, {"object": "page", "data": [{"start_time": 1, "results": []}], "has_more": False}),
     MalformedPage, "malformed", "not 00:00:00 UTC"),
])
def test_a_fault_is_a_state_and_loses_nothing(data_dir, stub, keys, config, fault, error, state_name, words):
    before = _seed(data_dir, stub, config)
    stub.faults["/v1/organization/costs"].append(fault)
    with pytest.raises(error) as info:
        sync_source(db(data_dir), config, "openai", now=NOW + 3600)
    assert words in str(info.value) and OPENAI_KEY not in str(info.value)
    st = state(data_dir, "openai")
    assert (st.state, st.message, st.last_success, st.last_attempt) == (state_name, str(info.value), NOW, NOW + 3600)
    assert rows(data_dir, "openai") == before
    if error is RateLimited:
        assert st.retry_at == pytest.approx(info.value.retry_at) and info.value.retry_at > NOW


def test_a_failure_on_a_later_page_writes_nothing_of_the_window(data_dir, stub, keys, config):
    """Usage's second page fails after costs and usage page 1 came in: no day is half-written."""
    before = _seed(data_dir, stub, config)
    stub.data.openai_costs[TODAY - timedelta(days=1)] = [openai_cost("9.99", "gpt-4o, input")]
    stub.faults["/v1/organization/usage/completions"] += [Fault(200, {"object": "page", "data": [],
                                                                      "has_more": True, "next_page": "cur_31"}),
                                                          Fault(503, {"error": {"message": "busy"}})]
    with pytest.raises(Unavailable):
        sync_source(db(data_dir), config, "openai", since=TODAY - timedelta(days=40), now=NOW)
    assert rows(data_dir, "openai") == before


def test_a_malformed_amount_names_its_place(data_dir, stub, keys, config):
    stub.data.openai_costs[TODAY - timedelta(days=2)] = [openai_cost("1.0", "gpt-4o, input"),
                                                         openai_cost("12,5", "gpt-4o, output")]
    with pytest.raises(MalformedPage, match=r"costs page 1, bucket 28, result 2: amount.value: not a decimal"):
        sync_source(db(data_dir), config, "openai", now=NOW)
    assert rows(data_dir, "openai") == []


def test_a_repeating_page_stops_the_round(data_dir, stub, keys, config):
    stub.repeat_page.add("/v1/organizations/usage_report/messages")
    stub.data.anthropic_usage[TODAY - timedelta(days=35)] = [anthropic_usage("claude-opus-5", 1, 1)]
    with pytest.raises(MalformedPage, match="page 2 repeats page 1"):
        sync_source(db(data_dir), config, "anthropic", since=TODAY - timedelta(days=40), now=NOW)
    assert rows(data_dir, "anthropic") == []
    assert state(data_dir, "anthropic").state == "malformed"


def test_a_short_retry_after_is_waited_out(data_dir, stub, keys, config):
    stub.faults["/api/v1/activity"].append(Fault(429, {"error": {"code": 429, "message": "rate"}},
                                                 {"Retry-After": "1"}))
    waits: list[float] = []
    result = sync_source(db(data_dir), config, "openrouter", now=NOW, sleep=lambda s: waits.append(s) or True)
    assert waits == [1.0] and stub.paths().count("/api/v1/activity") == 2
    assert state(data_dir, "openrouter").state == "ok" and result.rows == 0


@pytest.mark.parametrize(("source", "key", "words"), [
    ("openai", "sk-proj-abc123", "this is a project key"),
    ("anthropic", "sk-ant-api03-xyz", "this is a workspace API key"),
])
def test_a_wrong_key_class_is_named_before_anything_is_sent(data_dir, stub, config, monkeypatch, source, key, words):
    from llmtray.billing.keys import SPECS

    monkeypatch.setenv(SPECS[source].env, key)
    with pytest.raises(WrongKeyClass, match=words):
        sync_source(db(data_dir), config, source, now=NOW)
    assert stub.requests == []
    assert state(data_dir, source).state == "needs_admin_key"


def test_openrouter_normal_key_is_told_it_needs_a_management_key(data_dir, stub, config, monkeypatch):
    monkeypatch.setenv("LLMTRAY_OPENROUTER_MANAGEMENT_KEY", "sk-or-v1-plainkey")
    with pytest.raises(WrongKeyClass, match="needs an admin/management key.*Only management keys"):
        sync_source(db(data_dir), config, "openrouter", now=NOW)


def test_not_connected(data_dir, stub, config, monkeypatch):
    monkeypatch.delenv("LLMTRAY_OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(NotConnected, match="billing connect openai"):
        sync_source(db(data_dir), config, "openai", now=NOW)


def test_a_timeout_is_unavailable(data_dir, stub, keys, config):
    from llmtray.billing.sources import OpenRouter
    from llmtray.billing.transport import Transport

    stub.faults["/api/v1/activity"].append(Fault(200, {"data": []}, delay=1.5))
    with Transport("openrouter", stub.url, OpenRouter().headers("k"), timeout=0.3) as transport:
        with pytest.raises(Unavailable, match="no answer from 127.0.0.1 within 0.3 s"):
            transport.get("/api/v1/activity", {})


def test_no_key_reaches_a_log(data_dir, stub, keys, config, caplog):
    caplog.set_level(logging.DEBUG)
    sync_source(db(data_dir), config, "openai", now=NOW)
    stub.faults["/v1/organization/costs"].append(Fault(500, {"error": {"message": "x"}}))
    with pytest.raises(Unavailable):
        sync_source(db(data_dir), config, "openai", now=NOW)
    assert OPENAI_KEY not in caplog.text


def test_a_short_first_sync_is_not_the_backfill(data_dir, stub, keys, config):
    """`billing sync --since 3d` first: the next round still backfills 30 days."""
    sync_source(db(data_dir), config, "anthropic", since=TODAY - timedelta(days=2), now=NOW)
    assert state(data_dir, "anthropic").backfilled is False
    result = sync_source(db(data_dir), config, "anthropic", now=NOW)
    assert len(result.window.days) == 30 and state(data_dir, "anthropic").backfilled is True
    assert len(sync_source(db(data_dir), config, "anthropic", now=NOW).window.days) == 3


def test_the_scheduler_waits_out_a_rate_limit_and_skips_unconnected(data_dir, stub, config, monkeypatch):
    from llmtray.billing.sync import BillingScheduler

    monkeypatch.setenv("LLMTRAY_OPENAI_ADMIN_KEY", OPENAI_KEY)
    for env in ("LLMTRAY_ANTHROPIC_ADMIN_KEY", "LLMTRAY_OPENROUTER_MANAGEMENT_KEY"):
        monkeypatch.delenv(env, raising=False)
    stub.faults["/v1/organization/costs"].append(Fault(429, {"error": {"message": "slow"}}, {"Retry-After": "600"}))
    scheduler = BillingScheduler(db(data_dir), config)
    assert scheduler.round(now=NOW) == []
    retry_at = state(data_dir, "openai").retry_at
    assert state(data_dir, "openai").state == "rate_limited" and retry_at > NOW
    assert state(data_dir, "anthropic").state == "not_connected"
    stub.requests.clear()
    assert scheduler.round(now=NOW + 60) == [] and stub.requests == []  # Retry-After not over: not asked
    (result,) = scheduler.round(now=retry_at + 1)
    assert result.source == "openai" and state(data_dir, "openai").state == "ok"
