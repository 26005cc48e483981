"""`llmtray billing …` and `llmtray reconcile` as a user runs them: a subprocess against the
stub, keys in the environment, the real database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.billing.stub import KEYS, BillingStub, Fault, anthropic_cost, openai_cost

ZERO = {"input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0}
ENVS = {"openai": "LLMTRAY_OPENAI_ADMIN_KEY", "anthropic": "LLMTRAY_ANTHROPIC_ADMIN_KEY",
        "openrouter": "LLMTRAY_OPENROUTER_MANAGEMENT_KEY"}


def point_at(data_dir: Path, stub: BillingStub) -> None:
    (data_dir / "config.toml").write_text("[billing]\ninterval = \"1h\"\n" + "".join(
        f"[billing.{s}]\nbase_url = \"{stub.url}\"\n" for s in ENVS), encoding="utf-8")


def run(data_dir: Path, *args: str, keys: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENVS.values()}
    env.update({ENVS[s]: k for s, k in (keys or {}).items()})
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_sync_status_and_reconcile_json(data_dir, stub):
    point_at(data_dir, stub)
    today = datetime.now(UTC).date()
    day = today - timedelta(days=3)
    stub.data.openai_costs[day] = [openai_cost("1.25", "gpt-4o-2024-08-06, input")]
    stub.data.anthropic_costs[day] = [anthropic_cost("250.00", "claude-opus-5", "Claude Opus 5 Usage - Input Tokens")]
    ok = run(data_dir, "billing", "sync", keys=KEYS)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == f"openai: 30 days fetched ({today - timedelta(days=29)} … {today}), billed $1.25"
    assert lines[1].startswith("anthropic: 30 days fetched") and lines[1].endswith("billed $2.50")  # cents → dollars
    assert lines[2] == f"openrouter: 30 days fetched ({today - timedelta(days=30)} … {today - timedelta(days=1)}), " \
                       "billed $0.00"
    status = json.loads(run(data_dir, "billing", "status", "--json", keys=KEYS).stdout)["sources"]
    assert [(s["source"], s["connected"], s["state"], s["days"], s["billed_usd"]) for s in status] == [
        ("openai", True, "ok", 30, "1.25"), ("anthropic", True, "ok", 30, "2.5"), ("openrouter", True, "ok", 30, "0")]
    rec = run(data_dir, "reconcile", "--json", "--since", "7d")
    assert rec.returncode == 0, rec.stderr
    body = json.loads(rec.stdout)
    assert body["rows"] == [
        {"day": day.isoformat(), "provider": "anthropic", "model": "claude-opus-5", "project": None, "source": "anthropic",
         "observed_usd": "0", "billed_usd": "2.5", "delta_usd": "2.5", "delta_pct": "100.0", "status": "billed_only",
         "cause": "unexplained", "derived": False, "observed_requests": 0, "billed_requests": None,
         "failed_requests": 0, "quantities": {"observed": ZERO, "billed": None}, "notes": []},
        {"day": day.isoformat(), "provider": "openai", "model": "gpt-4o-2024-08-06", "project": None, "source": "openai",
         "observed_usd": "0", "billed_usd": "1.25", "delta_usd": "1.25", "delta_pct": "100.0", "status": "billed_only",
         "cause": "unexplained", "derived": True, "observed_requests": 0, "billed_requests": None,
         "failed_requests": 0, "quantities": {"observed": ZERO, "billed": None},
         "notes": ["per-model dollars derived from OpenAI line items"]}]
    assert body["totals"]["billed_usd"] == "3.75" and body["totals"]["observed_usd"] == "0"
    table = run(data_dir, "reconcile", "--since", "7d").stdout
    assert "gpt-4o-2024-08-06" in table and "billed_only" in table and "never added together" in table


def test_sync_failure_exits_1_with_the_reason_and_keeps_going(data_dir, stub):
    point_at(data_dir, stub)
    stub.faults["/v1/organization/costs"].append(Fault(403, {"error": {"message": "Missing scopes: api.usage.read"}}))
    proc = run(data_dir, "billing", "sync", keys=KEYS)
    assert proc.returncode == 1
    assert "openai: needs an admin/management key" in proc.stderr and "Missing scopes" in proc.stderr
    assert KEYS["openai"] not in proc.stderr + proc.stdout
    assert "anthropic: 30 days fetched" in proc.stdout  # the other sources still synced
    status = json.loads(run(data_dir, "billing", "status", "--json", keys=KEYS).stdout)["sources"]
    assert (status[0]["state"], status[0]["days"]) == ("needs_admin_key", 0)


def test_nothing_connected_is_a_clear_error(data_dir, stub):
    point_at(data_dir, stub)
    proc = run(data_dir, "billing", "sync")
    assert proc.returncode == 1 and "no billing source is connected" in proc.stderr


def test_connect_checks_the_class_and_the_key_with_one_call(data_dir, stub):
    point_at(data_dir, stub)
    wrong = run(data_dir, "billing", "connect", "openai", "--stdin", stdin="sk-proj-abc\n")
    assert wrong.returncode == 1 and "this is a project key" in wrong.stderr and stub.requests == []
    refused = run(data_dir, "billing", "connect", "openrouter", "--stdin", stdin="sk-or-v1-plain\n")
    assert refused.returncode == 1 and "Only management keys" in refused.stderr
    # the tests' keyring is the null backend: a good key is checked, then the keyring's refusal is named
    good = run(data_dir, "billing", "connect", "anthropic", "--stdin", stdin=KEYS["anthropic"] + "\n")
    assert good.returncode == 2 and "the key works, but no keyring could store it" in good.stderr
    assert "LLMTRAY_ANTHROPIC_ADMIN_KEY" in good.stderr and KEYS["anthropic"] not in good.stderr
    assert stub.paths() == ["/api/v1/activity", "/v1/organizations/cost_report"]  # one call per connect
