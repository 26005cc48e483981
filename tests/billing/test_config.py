"""`[billing]` in config.toml: interval and per-source base_url, every mistake named by key."""

from __future__ import annotations

import pytest

from llmtray.config import parse
from llmtray.core.errors import ConfigError


def test_defaults_and_values():
    assert parse({}).billing_interval_s == 3600
    c = parse({"billing": {"interval": "15m", "openai": {"base_url": "http://127.0.0.1:9/"}}})
    assert (c.billing_interval_s, c.billing_urls) == (900, {"openai": "http://127.0.0.1:9"})


@pytest.mark.parametrize(("billing", "words"), [
    ({"interval": "30s"}, "billing.interval must be a duration of at least 1m"),
    ({"interval": 3600}, "billing.interval must be a duration"),
    ({"interval": "1 hour"}, "billing.interval must be a duration"),
    ({"openai": {"base_url": "ftp://x"}}, r"billing.openai.base_url must be an http\(s\) URL"),
    ({"anthropic": {"url": "http://x"}}, r"\[billing.anthropic\] takes only base_url"),
    ({"gemini": {"base_url": "http://x"}}, "unknown key billing.gemini"),
])
def test_mistakes_are_named(billing, words):
    with pytest.raises(ConfigError, match=words):
        parse({"billing": billing})
