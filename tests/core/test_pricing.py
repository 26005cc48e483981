"""Pricing against hand-computed costs from providers' published price lists.

Every expected value below is worked out by hand in its comment from the provider's list price
(USD per million tokens), not by calling genai-prices, so a data or logic regression shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtray.core import usage
from llmtray.core.errors import ConfigError
from llmtray.core.events import parse_event
from llmtray.core.money import usd_to_nanos
from llmtray.core.pricing import Pricer, load_overrides

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def cost(pricer: Pricer, **data) -> Decimal | None:
    p = pricer.price(parse_event(data, now=NOW))
    return None if p.cost_nanos is None else Decimal(p.cost_nanos) / 10**9


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


def test_openai_cached_input_and_reasoning(pricer):
    # gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out. prompt 1M incl. 200k cached; 500k out incl. 100k reasoning.
    # 800k × 0.15 + 200k × 0.075 + 500k × 0.60 = 0.12 + 0.015 + 0.30
    tokens = usage.openai_chat({
        "prompt_tokens": 1_000_000, "completion_tokens": 500_000,
        "prompt_tokens_details": {"cached_tokens": 200_000},
        "completion_tokens_details": {"reasoning_tokens": 100_000},
    })
    assert cost(pricer, provider="openai", model="gpt-4o-mini-2024-07-18", **tokens) == Decimal("0.435")


def test_anthropic_cache_read_and_5m_and_1h_writes(pricer):
    # Sonnet 4.5 ≤200k: $3 in, $0.30 cache read, $3.75 5m write, $6 1h write, $15 out.
    # Anthropic reports input 1,000 uncached; reads 50,000; writes 20,000 of which 5,000 are 1h.
    # 1000×3 + 50000×0.30 + 15000×3.75 + 5000×6 + 2000×15 = 0.003+0.015+0.05625+0.03+0.03
    tokens = usage.anthropic({
        "input_tokens": 1_000, "cache_read_input_tokens": 50_000, "cache_creation_input_tokens": 20_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 15_000, "ephemeral_1h_input_tokens": 5_000},
        "output_tokens": 2_000,
    })
    assert tokens["input_tokens"] == 71_000
    assert cost(pricer, provider="anthropic", model="claude-sonnet-4-5-20250929", **tokens) == Decimal("0.13425")


def test_long_context_tier_counts_cache_tokens(pricer):
    # 100k uncached + 150k cache read = 250k input > 200k: the long-context prices apply to the whole call:
    # $6 in, $0.60 cache read, $22.50 out → 100k×6 + 150k×0.60 + 1k×22.50 = 0.6 + 0.09 + 0.0225
    tokens = usage.anthropic({"input_tokens": 100_000, "cache_read_input_tokens": 150_000, "output_tokens": 1_000})
    assert cost(pricer, provider="anthropic", model="claude-sonnet-4-5", **tokens) == Decimal("0.7125")
    # just below the tier: 199,999 total input at base prices
    assert cost(pricer, provider="anthropic", model="claude-sonnet-4-5", input_tokens=199_999) == Decimal("0.599997")


def test_long_context_tier_is_judged_per_request_for_aggregates(pricer):
    # A daily row: 50 requests, 5M input in total = 100k each → base price $3/M for all of it.
    assert cost(pricer, provider="anthropic", model="claude-sonnet-4-5", input_tokens=5_000_000,
                requests=50) == Decimal(15)
    # 10 requests of 250k each are each above 200k → $6/M
    assert cost(pricer, provider="anthropic", model="claude-sonnet-4-5", input_tokens=2_500_000,
                requests=10) == Decimal(15)


def test_reasoning_is_billed_as_output(pricer):
    # o3 after the 2025-06-10 cut: $2 in, $8 out. 1,000 in; 10,000 out of which 8,000 reasoning.
    assert cost(pricer, provider="openai", model="o3", ts="2025-07-01T00:00:00Z",
                input_tokens=1_000, output_tokens=10_000, reasoning_tokens=8_000) == Decimal("0.082")


def test_historical_prices_before_and_after_a_cut(pricer):
    # o3 launched at $10 / $40; from 2025-06-10 $2 / $8. 1M in + 1M out.
    before = cost(pricer, provider="openai", model="o3", ts="2025-05-01T00:00:00Z", input_tokens=10**6, output_tokens=10**6)
    after = cost(pricer, provider="openai", model="o3", ts="2025-06-11T00:00:00Z", input_tokens=10**6, output_tokens=10**6)
    assert (before, after) == (Decimal(50), Decimal(10))


def test_o3_launch_cached_input_correction(pricer):
    # OpenAI's o3 launch price list: cached input $2.50 (genai-prices carries $0.50 back to launch).
    p = pricer.price(parse_event({"provider": "openai", "model": "o3", "ts": "2025-05-01T00:00:00Z",
                                  "input_tokens": 10**6, "cache_read_tokens": 10**6}, now=NOW))
    assert p.cost_nanos == usd_to_nanos("2.5") and "corrections" in p.pricing_version
    assert cost(pricer, provider="openai", model="o3", ts="2025-06-10T00:00:00Z",
                input_tokens=10**6, cache_read_tokens=10**6) == Decimal("0.5")


def test_batch_half_price_before_the_data_has_batch_variants(pricer):
    # gpt-4o $2.50 / $10; OpenAI Batch API: 50 % off → 1M in + 1M out = 6.25 instead of 12.50.
    assert cost(pricer, provider="openai", model="gpt-4o", ts="2025-05-01T00:00:00Z", service_tier="batch",
                input_tokens=10**6, output_tokens=10**6) == Decimal("6.25")
    # Anthropic Message Batches: 50 % — Haiku 3.5 $0.80/$4 → 2.40
    assert cost(pricer, provider="anthropic", model="claude-3-5-haiku-latest", ts="2025-05-01T00:00:00Z",
                service_tier="batch", input_tokens=10**6, output_tokens=10**6) == Decimal("2.4")
    # OpenAI flex (o3 after the cut: $2/$8) is billed at batch rates: 5.00
    assert cost(pricer, provider="openai", model="o3", ts="2025-08-01T00:00:00Z", service_tier="flex",
                input_tokens=10**6, output_tokens=10**6) == Decimal("5")


def test_batch_uses_data_variant_once_it_exists(pricer):
    # From 2026-10-14 genai-prices has its own batch variant for o3 ($1 / $4); no double discount.
    assert cost(pricer, provider="openai", model="o3", ts="2026-10-20T00:00:00Z", service_tier="batch",
                input_tokens=10**6, output_tokens=10**6) == Decimal("5")


@pytest.mark.parametrize(("ts", "expected"), [
    # 1M cache-miss input + 1M cache-hit input + 1M output
    ("2025-09-10T00:00:00Z", Decimal("0.56") + Decimal("0.07") + Decimal("1.68")),  # V3.1, 2025-09-05 16:00 UTC
    ("2025-10-01T00:00:00Z", Decimal("0.28") + Decimal("0.028") + Decimal("0.42")),  # V3.2-Exp, 2025-09-29
])
def test_deepseek_september_2025_prices(pricer, ts, expected):
    for model in ("deepseek-chat", "deepseek-reasoner"):
        assert cost(pricer, provider="deepseek", model=model, ts=ts, input_tokens=2 * 10**6,
                    cache_read_tokens=10**6, output_tokens=10**6) == expected


def test_retired_model_still_priced(pricer):
    # GPT-4 (8k, 2023): $30 in / $60 out
    assert cost(pricer, provider="openai", model="gpt-4", ts="2023-06-01T00:00:00Z",
                input_tokens=1_000, output_tokens=1_000) == Decimal("0.09")


def test_openrouter_slug(pricer):
    # anthropic/claude-3.5-sonnet on OpenRouter: $3 / $15
    assert cost(pricer, provider="openrouter", model="anthropic/claude-3.5-sonnet",
                input_tokens=10_000, output_tokens=1_000) == Decimal("0.045")


def test_unknown_model_is_unpriced_never_zero(pricer):
    p = pricer.price(parse_event({"provider": "openai", "model": "gpt-9-turbo", "input_tokens": 5}, now=NOW))
    assert (p.cost_nanos, p.cost_source) == (None, "unpriced")
    p = pricer.price(parse_event({"provider": "my-vllm", "model": "llama3", "input_tokens": 5}, now=NOW))
    assert (p.cost_nanos, p.cost_source) == (None, "unpriced")


def test_reported_cost_wins(pricer):
    p = pricer.price(parse_event({"provider": "openrouter", "model": "anthropic/claude-3.5-sonnet",
                                  "input_tokens": 10_000, "cost_usd": "0.0123456789"}, now=NOW))
    assert (p.cost_nanos, p.cost_source) == (12_345_679, "reported")


def test_matched_model_and_version_are_kept(pricer):
    p = pricer.price(parse_event({"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "input_tokens": 1}, now=NOW))
    assert p.priced_model == "gpt-4o-mini"
    assert p.pricing_version == f"genai-prices {genai_prices.__version__}"


# --- agreement of the fast path with genai-prices itself --------------------------------------

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-3-5-haiku-latest"), ("google", "gemini-2.5-pro"), ("google", "gemini-2.5-flash"),
          ("openai", "o3-mini"), ("mistral", "mistral-large-latest")]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.integers(0, 400_000), st.integers(0, 100_000), st.integers(0, 100_000), st.integers(0, 100_000),
    st.integers(0, 100_000), st.datetimes(datetime(2025, 7, 1), datetime(2026, 9, 1), timezones=st.just(UTC)),
)
def test_fast_path_equals_genai_prices(model, inp, cr, cw, cw1h, out, ts):
    provider, name = model
    cr, cw = min(cr, inp), min(cw, max(inp - cr, 0))
    cw1h = min(cw1h, cw)
    tokens = {"input_tokens": inp, "cache_read_tokens": cr, "cache_write_tokens": cw,
              "cache_write_1h_tokens": cw1h, "output_tokens": out}
    ours = Pricer().price(parse_event({"provider": provider, "model": name, "ts": ts.isoformat(), **tokens}, now=NOW))
    theirs = genai_prices.calc_price(genai_prices.Usage(**{k: v for k, v in tokens.items() if v}), name,
                                     provider_id=provider, genai_request_timestamp=ts).total_price
    assert ours.cost_nanos == usd_to_nanos(theirs)


# --- user overrides ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pricing.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_self_hosted_model_at_zero_and_discount(tmp_path):
    path = write(tmp_path, """
[[model]]
provider = "ollama"
model = "*"
input_mtok = 0
output_mtok = 0

[[model]]
provider = "openai"
model = "gpt-4o*"
discount = 0.8

[[model]]
provider = "acme"
model = "acme-large"
input_mtok = 2
output_mtok = "6.5"
cache_read_mtok = 0.5
""")
    pricer = Pricer(load_overrides(path))
    p = pricer.price(parse_event({"provider": "ollama", "model": "llama3.1:8b", "input_tokens": 10**6}, now=NOW))
    assert (p.cost_nanos, p.cost_source, p.priced_model) == (0, "computed", "override:llama3.1:8b")
    # gpt-4o $2.50/M × 1M × 0.8
    assert cost(pricer, provider="openai", model="gpt-4o", input_tokens=10**6) == Decimal("2")
    # custom: 1M in incl. 400k cached, 1M out → 600k×2 + 400k×0.5 + 1M×6.5 = 1.2 + 0.2 + 6.5
    assert cost(pricer, provider="acme", model="acme-large", input_tokens=10**6, cache_read_tokens=400_000,
                output_tokens=10**6) == Decimal("7.9")


@pytest.mark.parametrize(("text", "message"), [
    ("[[model]]\nprovider = 'x'\nmodel = 'y'\ninput_mtok = -1\noutput_mtok = 1\n", "[[model]] #1: 'input_mtok' must be a number ≥ 0, got -1"),
    ("[[model]]\nprovider = 'x'\nmodel = 'y'\ninput_mtok = 1\n", "[[model]] #1: explicit prices need at least input_mtok and output_mtok"),
    ("[[model]]\nprovider = 'x'\nmodel = 'y'\n", "[[model]] #1: give prices (input_mtok, output_mtok, …) or a 'discount' factor"),
    ("[[model]]\nprovider = 'x'\nmodel = 'y'\ndiscount = 0.5\ninput_price = 1\n", "[[model]] #1: unknown key 'input_price'"),
    ("[[model]]\nmodel = 'y'\ndiscount = 0.5\n", "[[model]] #1: 'provider' is required"),
    ("[[model]]\nprovider = 'x'\nmodel = 'y'\ndiscount = 'cheap'\n", "[[model]] #1: 'discount' must be a number ≥ 0, got 'cheap'"),
    ("[models]\n", "unknown top-level key 'models'"),
    ("[[model]\n", "line 1"),
])
def test_bad_overrides_file_names_entry_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_overrides(write(tmp_path, text))
    assert message in str(info.value)


def test_missing_overrides_file_means_none(tmp_path):
    assert load_overrides(tmp_path / "nope.toml") == []
