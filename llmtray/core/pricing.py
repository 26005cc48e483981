"""Cost of an event at ingest: genai-prices (pinned) + a corrections overlay + user overrides.

Why a fast path: genai-prices spends ~190 µs per `calc_price` decomposing usage through its unit
registry, too slow for million-row imports. For a given price set the cost is *linear* in the six
token counts (uncached input = input − cache reads − cache writes, and so on), so we ask
genai-prices once per price set for the cost of one token of each kind and then multiply with
exact Decimals. Tiered prices (> 200k-token contexts) are linear only below their first tier, so
above it we call genai-prices itself. A test checks both paths agree on random usage.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import genai_prices
from genai_prices import types as gp_types
from genai_prices.data_snapshot import get_snapshot

from llmtray.core.errors import ConfigError
from llmtray.core.trust import require_trusted
from llmtray.core.events import TOKEN_FIELDS, UsageEvent
from llmtray.core.money import NANOS_PER_USD, usd_to_nanos
from llmtray.core.usage import NO_USAGE, USAGE_TAG

log = logging.getLogger(__name__)

GENAI_PRICES_VERSION = f"genai-prices {genai_prices.__version__}"
CORRECTIONS_VERSION = "corrections 1"

# Our provider ids (DESIGN §3) where genai-prices spells them differently.
_PROVIDER_ALIASES = {"xai": "x-ai", "gemini": "google", "vertex": "google", "bedrock": "aws"}
# genai-prices price-variant context for each service tier.
_TIER_CONTEXT: dict[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}
_MTOK_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")


class Priced(NamedTuple):
    """How much an event cost and how we know: `cost_nanos` is None exactly when unpriced.

    A named tuple, not a frozen dataclass: one is made per stored event, and a frozen
    dataclass's field-by-field `object.__setattr__` cost more than the pricing itself."""

    cost_nanos: int | None
    cost_source: str  # reported | computed | unpriced
    pricing_version: str | None = None
    priced_model: str | None = None


# --- corrections overlay --------------------------------------------------------------------


@dataclass(frozen=True)
class PriceCorrection:
    """Replace some per-MTok prices of matched models between two instants (end exclusive)."""

    provider: str
    models: tuple[str, ...]  # genai-prices model ids
    start: datetime
    end: datetime | None
    prices: dict[str, Decimal]
    why: str

    def applies(self, provider: str, model_id: str, ts: datetime) -> bool:
        return (
            provider == self.provider
            and model_id in self.models
            and ts >= self.start
            and (self.end is None or ts < self.end)
        )


def _utc(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


CORRECTIONS: tuple[PriceCorrection, ...] = (
    PriceCorrection(
        "openai", ("o3",), _utc(2025, 4, 16), _utc(2025, 6, 10),
        {"cache_read_mtok": Decimal("2.5")},
        "o3 launched at $10 / $2.50 cached / $40; genai-prices carries the post-cut $0.50 cached price back",
    ),
    PriceCorrection(
        "deepseek", ("deepseek-chat", "deepseek-reasoner"), _utc(2025, 9, 5, 16), _utc(2025, 9, 29),
        {"input_mtok": Decimal("0.56"), "cache_read_mtok": Decimal("0.07"), "output_mtok": Decimal("1.68")},
        "V3.1 pricing from 2025-09-05 16:00 UTC: one price for chat and reasoner, off-peak discount ended",
    ),
    PriceCorrection(
        "deepseek", ("deepseek-chat", "deepseek-reasoner"), _utc(2025, 9, 29), None,
        {"input_mtok": Decimal("0.28"), "cache_read_mtok": Decimal("0.028"), "output_mtok": Decimal("0.42")},
        "V3.2-Exp price cut of 2025-09-29 (cache miss $0.28, hit $0.028, output $0.42)",
    ),
)
# Providers that billed batch (and OpenAI flex) at a flat 50 % long before genai-prices' variants.
BATCH_HALF_PRICE_PROVIDERS = frozenset({"openai", "anthropic", "google", "mistral"})
FLEX_HALF_PRICE_PROVIDERS = frozenset({"openai"})


# --- user overrides -------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceOverride:
    """A user's rule from pricing.toml: explicit per-MTok prices, or a discount factor."""

    provider: str  # glob
    model: str  # glob
    prices: dict[str, Decimal] | None
    discount: Decimal | None

    def matches(self, provider: str, model: str) -> bool:
        return fnmatch.fnmatchcase(provider, self.provider) and fnmatch.fnmatchcase(model.lower(), self.model.lower())


def load_overrides(path: Path) -> list[PriceOverride]:
    """Read `pricing.toml`; a missing file means no overrides, a wrong one names entry and key."""
    if not path.exists():
        return []
    require_trusted(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    unknown = set(data) - {"model"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}; expected [[model]] tables")
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: 'model' must be an array of tables ([[model]])")
    return [_parse_override(path, i, entry) for i, entry in enumerate(entries, start=1)]


def _parse_override(path: Path, n: int, entry: Any) -> PriceOverride:
    where = f"{path}: [[model]] #{n}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    allowed = {"provider", "model", "discount", *_MTOK_KEYS}
    for key in entry:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    for key in ("provider", "model"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(f"{where}: {key!r} is required (a name or a glob such as 'gpt-4o*')")

    def amount(key: str) -> Decimal:
        value = entry[key]
        try:
            d = Decimal(str(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        except InvalidOperation:
            d = None
        if d is None or not d.is_finite() or d < 0:
            raise ConfigError(f"{where}: {key!r} must be a number ≥ 0, got {value!r}")
        return d

    prices = {k: amount(k) for k in _MTOK_KEYS if k in entry}
    discount = amount("discount") if "discount" in entry else None
    if prices and discount is not None:
        raise ConfigError(f"{where}: give either prices or 'discount', not both")
    if not prices and discount is None:
        raise ConfigError(f"{where}: give prices (input_mtok, output_mtok, …) or a 'discount' factor")
    if prices and ("input_mtok" not in prices or "output_mtok" not in prices):
        raise ConfigError(f"{where}: explicit prices need at least input_mtok and output_mtok")
    return PriceOverride(entry["provider"].lower(), entry["model"], prices or None, discount)


# --- the pricer -----------------------------------------------------------------------------


def _usage_kwargs(event: UsageEvent) -> dict[str, int]:
    return {name: getattr(event, name) for name in TOKEN_FIELDS if name != "reasoning_tokens" and getattr(event, name)}


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything needed to price events of one (provider, model, tier, half hour): the price set
    in force, its per-token coefficients, and how the result is labelled. Prices only change on
    whole or half hours (dates, DeepSeek's off-peak windows, our corrections), so a plan per
    half hour is exact, and a batch of live events reuses one plan."""

    price: gp_types.ModelPrice
    factor: Decimal
    # `coefficients` × `factor` in nano-dollars, as integers over one common `denominator`: the
    # exact cost is an integer sum, rounded once (half-even, as `usd_to_nanos`) — no Decimal
    # arithmetic per event.
    nano_coefficients: tuple[int, ...]
    denominator: int
    tier_start: int | None  # input tokens per request from which a long-context tier applies
    version: str
    priced_model: str


_UNPRICED = Priced(None, "unpriced")
_PLAN_CACHE_LIMIT = 100_000  # ~20 MB at most; cleared, not grown, past it


class Pricer:
    """Prices events; cheap to call from the writer thread (a cached plan per price situation)."""

    def __init__(self, overrides: Iterable[PriceOverride] = ()):
        self._overrides = tuple(overrides)
        self._snapshot = get_snapshot()
        self._models: dict[tuple[str, str], tuple[gp_types.Provider, gp_types.ModelInfo] | None] = {}
        self._coefficients: dict[Any, tuple[Decimal, ...]] = {}
        self._plans: dict[tuple[str, str, str | None, int], _Plan | None] = {}

    def price(self, event: UsageEvent) -> Priced:
        if event.cost_usd is not None:
            return Priced(usd_to_nanos(event.cost_usd), "reported")
        if (event.status != "error" and event.tags.get(USAGE_TAG) in NO_USAGE
                and not any(getattr(event, f) for f in TOKEN_FIELDS)):
            return _UNPRICED  # the provider did not say what was used: unknown, not $0
        key = (event.provider, event.model, event.service_tier, int(event.ts.timestamp()) // 1800)
        try:
            plan = self._plans[key]
        except KeyError:
            if len(self._plans) >= _PLAN_CACHE_LIMIT:
                self._plans.clear()
            plan = self._plans[key] = self._plan(event)
        if plan is None:
            if event.status == "error" and not any(getattr(event, f) for f in TOKEN_FIELDS):
                return Priced(0, "computed")  # a failed call that used nothing cost nothing
            return _UNPRICED
        # A long-context tier applies per request: an imported daily row of 50 requests with 5M
        # input tokens in total is 100k per request, i.e. base prices on all of it.
        if plan.tier_start is not None and event.input_tokens // max(event.requests, 1) >= plan.tier_start:
            cost = plan.price.calc_price(genai_prices.Usage(**_usage_kwargs(event)))["total_price"]
            return Priced(usd_to_nanos(cost * plan.factor), "computed", plan.version, plan.priced_model)
        c = plan.nano_coefficients
        scaled = (c[0] * event.requests + c[1] * event.input_tokens + c[2] * event.cache_read_tokens
                  + c[3] * event.cache_write_tokens + c[4] * event.cache_write_1h_tokens
                  + c[5] * event.output_tokens)
        return Priced(_round_half_even(scaled, plan.denominator), "computed", plan.version, plan.priced_model)

    def _plan(self, event: UsageEvent) -> _Plan | None:
        override = next((o for o in self._overrides if o.matches(event.provider, event.model)), None)
        if override is not None and override.prices is not None:
            price = gp_types.ModelPrice(**override.prices)
            return _Plan(price, Decimal(1), *_in_nanos(self._coefficients_for(price), Decimal(1)), None,
                         "user override", f"override:{event.model}")
        found = self._lookup(event.provider, event.model)
        if found is None:
            return None
        provider, model = found
        price, factor, corrected = self._price_set(provider.id, model, event)
        version = GENAI_PRICES_VERSION + (f" + {CORRECTIONS_VERSION}" if corrected else "")
        if override is not None and override.discount is not None:
            factor *= override.discount
            version += " + user discount"
        tiers = [v for v in price.__dict__.values() if isinstance(v, gp_types.TieredPrices) and v.tiers]
        tier_start = min(t.tiers[0].start for t in tiers) if tiers else None
        return _Plan(price, factor, *_in_nanos(self._coefficients_for(price), factor), tier_start, version, model.id)

    def _lookup(self, provider: str, model: str) -> tuple[gp_types.Provider, gp_types.ModelInfo] | None:
        key = (provider, model)
        if key not in self._models:
            try:
                self._models[key] = self._snapshot.find_provider_model(
                    model, None, _PROVIDER_ALIASES.get(provider, provider), None
                )
            except LookupError:
                self._models[key] = None
        return self._models[key]

    def _price_set(
        self, provider_id: str, model: gp_types.ModelInfo, event: UsageEvent
    ) -> tuple[gp_types.ModelPrice, Decimal, bool]:
        """Prices in force at the event's time and tier, with our corrections; plus a factor."""
        tier = event.service_tier
        context = _TIER_CONTEXT.get(tier or "")
        price = model.get_prices(event.ts, context)
        factor, corrected = Decimal(1), False
        for correction in CORRECTIONS:
            if correction.applies(provider_id, model.id, event.ts):
                price = gp_types.ModelPrice(**{**price.__dict__, **correction.prices})
                corrected = True
        if tier in ("batch", "flex") and context is not None and not _variant_active(model, context, event.ts):
            half_price = BATCH_HALF_PRICE_PROVIDERS if tier == "batch" else FLEX_HALF_PRICE_PROVIDERS
            if provider_id in half_price:
                factor, corrected = Decimal("0.5"), True
        return price, factor, corrected

    def _coefficients_for(self, price: gp_types.ModelPrice) -> tuple[Decimal, ...]:
        key = tuple(sorted((k, v if isinstance(v, Decimal) else id(v)) for k, v in price.__dict__.items() if v is not None))
        cached = self._coefficients.get(key)
        if cached is None:
            cached = self._coefficients[key] = _linear_coefficients(price)
        return cached


def _variant_active(model: gp_types.ModelInfo, context: dict[str, str], ts: datetime) -> bool:
    return any(
        v.when == context and (v.constraint is None or v.constraint.active(ts)) for v in model.price_variants or ()
    )


def _linear_coefficients(price: gp_types.ModelPrice) -> tuple[Decimal, ...]:
    """Marginal cost of one request and of one token of each kind (in the order request, input,
    cache read, cache write, 1h cache write, output), each *on top of* the totals it belongs to,
    asked of genai-prices."""

    def cost(**usage: int) -> Decimal:
        return price.calc_price(genai_prices.Usage(**usage))["total_price"]

    fixed = cost()  # a per-request fee, if the price set has one
    base_in = cost(input_tokens=1) - fixed
    cache_read = cost(input_tokens=1, cache_read_tokens=1) - base_in
    cache_write = cost(input_tokens=1, cache_write_tokens=1) - base_in
    write_1h = cost(input_tokens=1, cache_write_tokens=1, cache_write_1h_tokens=1) - fixed - base_in - cache_write
    output = cost(output_tokens=1) - fixed
    return fixed, base_in, cache_read, cache_write, write_1h, output


def _in_nanos(coefficients: tuple[Decimal, ...], factor: Decimal) -> tuple[tuple[int, ...], int]:
    """Dollar coefficients × factor as nano-dollar integers over a common denominator (exact:
    every Decimal is a fraction with a power-of-ten denominator)."""
    ratios = [(Fraction(c) * Fraction(factor) * NANOS_PER_USD).as_integer_ratio() for c in coefficients]
    denominator = math.lcm(*(d for _, d in ratios))
    return tuple(n * (denominator // d) for n, d in ratios), denominator


def _round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, ties to even (`usd_to_nanos`'s rule)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def data_cutoff() -> date:
    """The newest price date genai-prices knows about; shown in Settings so users see staleness."""
    newest = date(2000, 1, 1)
    for provider in get_snapshot().providers:
        for model in provider.models:
            for p in model.prices if isinstance(model.prices, list) else ():
                if isinstance(p.constraint, gp_types.StartDateConstraint):
                    newest = max(newest, p.constraint.start_date)
    return newest


class PricingFile:
    """The prices in `pricing.toml` as the file is now, for the process that prices new events
    (the ingest writer): one `stat` per use, rebuilt when the file changed, so an edit applies
    without a restart. Built lazily (a `Pricer` takes ~0.5 s: not on a GUI thread). A broken file
    at the first use raises, as at start before; a broken *edit* keeps the last good prices and
    says why once — half-saved files are common while an editor writes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._pricer: Pricer | None = None
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> Pricer:
        with self._lock:
            stamp = self._stat()
            if self._pricer is None:
                self._stamp, self._pricer = stamp, Pricer(load_overrides(self.path))
            elif stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._pricer = Pricer(load_overrides(self.path))
                except (ConfigError, OSError) as exc:
                    log.error("%s — keeping the prices loaded before", exc)
                else:
                    log.info("%s changed: new events are priced with it (`llmtray reprice` updates stored ones)",
                             self.path)
            return self._pricer
