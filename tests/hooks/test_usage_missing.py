"""#17 item 9: an OpenAI stream without `include_usage` reports no usage. Its cost is unknown, so
it is unpriced like a model without a price — out of the totals, counted, and named with the
reason in `report` and the dashboard's warning strip — never "ok, $0.00". Real SDK, stub
upstream, the real ingest service and SQLite file, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai

import llmtray.hooks as lt
from tests.hooks.conftest import delivered
from tests.hooks.helpers import CHAT_COST

HELLO = [{"role": "user", "content": "Say hello"}]


def report(data: Path, *args: str) -> str:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    proc = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), "report", "--by", "model", *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_stream_without_usage_is_unpriced_and_named(hook_env: Path, tray, upstream):
    client = openai.OpenAI(api_key="k", base_url=upstream.url + "/v1", max_retries=0)
    with lt.instrument(client) as client:
        for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True):
            pass  # no stream_options: the provider sends no usage
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # a priced call beside it
    events = delivered(hook_env)
    missing = [e for e in events if e.get("tags") == {"llmtray.usage": "missing"}]
    assert len(missing) == 1 and missing[0]["cost_source"] == "unpriced" and missing[0].get("cost_usd") is None

    data = json.loads(report(hook_env, "--format", "json"))
    assert data["total"]["requests"] == 2 and data["total"]["unpriced_requests"] == 1
    assert data["total"]["cost_usd"] == CHAT_COST  # only the priced call
    assert data["usage_missing"] == [{"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "requests": 1}]
    text = report(hook_env)
    assert "1 of the unpriced requests have no usage" in text and "openai/gpt-4o-mini-2024-07-18 (1)" in text
    assert "include_usage" in text
