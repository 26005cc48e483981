"""Deterministic, realistic demo traffic for `llmtray --demo`, the benches and the tests.

A seeded generator rather than a fixture file, because the same code has to make 90 days for the
demo window, 10 million events for the benches and a quiet trickle for budget tests — and each of
those must look like a real team's usage: features on their own models and schedules, a weekly and
a daily rhythm, growth, prompt caching, reasoning tokens, one unpriced self-hosted model, a runaway
agent loop one afternoon and a couple of provider error bursts. No Qt here: benches use it headless.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from llmtray.core import periods
from llmtray.core.events import UsageEvent
from llmtray.core.store import Batch, Store

DEFAULT_PER_DAY = 1500
RUNAWAY_DAYS_AGO = 18  # the afternoon an agent loop ran away
ERROR_BURSTS = ((37, 10, "anthropic", "overloaded_error: Overloaded"),  # (days ago, local hour, provider, error)
                (9, 15, "openai", "rate_limit_exceeded: Rate limit reached for requests"))


@dataclass(frozen=True)
class Model:
    """A model as a provider reports it, with a latency profile (ms) for realistic timings."""

    provider: str
    name: str
    base_ms: float  # median latency of a short answer
    ms_per_output: float  # generation time per output token
    reasoning: float = 0.0  # share of output spent on reasoning tokens
    embeddings: bool = False


SONNET = Model("anthropic", "claude-sonnet-4-20250514", 1400, 14)
HAIKU = Model("anthropic", "claude-3-5-haiku-20241022", 600, 6)
GPT4O = Model("openai", "gpt-4o-2024-08-06", 900, 11)
GPT4O_MINI = Model("openai", "gpt-4o-mini-2024-07-18", 450, 6)
O3_MINI = Model("openai", "o3-mini-2025-01-31", 2500, 9, reasoning=0.7)
EMBED = Model("openai", "text-embedding-3-small", 120, 0, embeddings=True)
FLASH = Model("google", "gemini-2.5-flash", 500, 4, reasoning=0.3)
PRO = Model("google", "gemini-2.5-pro", 2200, 12, reasoning=0.5)
OR_SONNET = Model("openrouter", "anthropic/claude-sonnet-4", 1700, 14)
OR_LLAMA = Model("openrouter", "meta-llama/llama-3.3-70b-instruct", 800, 9)
OR_DEEPSEEK = Model("openrouter", "deepseek/deepseek-chat-v3-0324", 1100, 12)
CUSTOM = Model("vllm", "acme-support-ft-v2", 350, 5)  # self-hosted fine-tune: no public price → unpriced


@dataclass(frozen=True)
class Feature:
    """One part of the demo team's product: who calls which models, how big, when, and how it's sent."""

    name: str
    project: str
    source: str  # how the events reach llmtray: hook, proxy, import:<format>
    share: float  # of an average day's events
    models: tuple[tuple[Model, float], ...]
    input_tokens: tuple[float, float]  # lognormal median and sigma
    output_tokens: tuple[float, float]
    cached_prefix: int = 0  # tokens of a cached system prompt (Anthropic/OpenAI/Gemini caching)
    users: tuple[str, ...] = ()
    tag: tuple[str, tuple[str, ...]] | None = None
    stream: bool = False
    hours: tuple[int, ...] = ()  # fixed local hours (batch jobs); empty = the office rhythm
    weekend: float = 0.3  # weekend volume relative to a weekday
    tier: str | None = None


_CUSTOMERS = tuple(f"u{n:03d}" for n in range(1, 41))
_DEVELOPERS = ("alice", "bruno", "chen", "dana", "emeka", "farah", "gus")
FEATURES: tuple[Feature, ...] = (
    Feature("chat-assistant", "webapp", "hook", 0.34, ((SONNET, 0.5), (GPT4O, 0.3), (FLASH, 0.2)),
            (7000, 0.5), (420, 0.6), cached_prefix=4096, users=_CUSTOMERS,
            tag=("plan", ("free", "free", "pro", "pro", "pro", "team")), stream=True),
    Feature("summarize", "webapp", "hook", 0.2, ((GPT4O_MINI, 0.8), (HAIKU, 0.2)),
            (6000, 0.7), (260, 0.4), users=_CUSTOMERS, tag=("plan", ("free", "pro", "team"))),
    Feature("rag-search", "webapp", "hook", 0.16, ((EMBED, 0.55), (FLASH, 0.45)),
            (2500, 0.6), (300, 0.5), users=_CUSTOMERS, tag=("index", ("docs", "tickets", "wiki"))),
    Feature("support-bot", "support", "proxy", 0.12, ((CUSTOM, 0.45), (HAIKU, 0.55)),
            (3000, 0.5), (220, 0.5), cached_prefix=2048, stream=True, weekend=0.8),
    Feature("code-review", "devtools", "proxy", 0.08, ((O3_MINI, 0.5), (SONNET, 0.5)),
            (14000, 0.6), (1800, 0.5), cached_prefix=8192, users=_DEVELOPERS,
            tag=("repo", ("api", "web", "infra")), weekend=0.1),
    Feature("agent", "devtools", "hook", 0.05, ((PRO, 0.5), (SONNET, 0.5)),
            (18000, 0.5), (900, 0.6), cached_prefix=6144, users=_DEVELOPERS, weekend=0.15),
    Feature("eval-batch", "research", "import:openrouter", 0.03, ((OR_SONNET, 0.3), (OR_LLAMA, 0.4), (OR_DEEPSEEK, 0.3)),
            (3500, 0.4), (600, 0.4), tag=("suite", ("regression", "safety")), hours=(2, 3), weekend=1.0),
    Feature("extract", "backoffice", "hook", 0.02, ((GPT4O_MINI, 1.0),),
            (9000, 0.5), (700, 0.3), hours=(1,), weekend=1.0, tier="batch"),
)
_BY_NAME = {f.name: f for f in FEATURES}
SOURCES = tuple(sorted({f.source for f in FEATURES}))
# Office rhythm by local hour: quiet nights, a morning ramp, a lunch dip, an evening tail.
_OFFICE_HOURS = (1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 19, 17, 12, 15, 18, 18, 16, 12, 8, 6, 5, 4, 3, 2)


def _cumulative(weights: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


_OFFICE_CUM = _cumulative(_OFFICE_HOURS)


def _lognormal(rng: random.Random, median: float, sigma: float) -> int:
    return max(1, int(median * math.exp(sigma * rng.gauss(0.0, 1.0))))


def _event(rng: random.Random, feature: Feature, ts: datetime, *, error: str | None = None,
           model: Model | None = None, user: str | None = None) -> UsageEvent:
    """One call of `feature` at `ts`: tokens, caching, timings and attribution that fit together."""
    if model is None:
        r, model = rng.random(), feature.models[-1][0]
        for candidate, p in feature.models:
            r -= p
            if r < 0:
                model = candidate
                break
    env = "staging" if rng.random() < 0.05 else ("ci" if feature.hours else "prod")
    tags = {feature.tag[0]: rng.choice(feature.tag[1])} if feature.tag else {}
    user = user or (rng.choice(feature.users) if feature.users else None)
    common = dict(provider=model.provider, model=model.name, ts=ts, feature=feature.name, project=feature.project,
                  env=env, user=user, tags=tags, service_tier=feature.tier)
    if error is not None:
        return UsageEvent(**common, status="error", error=error, latency_ms=float(rng.randint(80, 900)))
    if model.embeddings:
        inp = _lognormal(rng, *feature.input_tokens) // 4 + 1
        return UsageEvent(**common, operation="embeddings", input_tokens=inp,
                          latency_ms=round(model.base_ms * math.exp(0.3 * rng.gauss(0, 1)), 1))
    inp = _lognormal(rng, *feature.input_tokens) + feature.cached_prefix
    out = _lognormal(rng, *feature.output_tokens)
    reasoning = int(out * model.reasoning * rng.uniform(0.6, 1.2)) if model.reasoning else 0
    out = max(out, reasoning)
    cache_read = cache_write = cache_1h = 0
    if feature.cached_prefix and model.provider in ("anthropic", "openai", "google"):
        if rng.random() < 0.88:
            cache_read = feature.cached_prefix
        elif model.provider == "anthropic":  # a cache miss writes the prefix again (Anthropic bills writes)
            cache_write = feature.cached_prefix
            cache_1h = cache_write if feature.name == "agent" else 0
    latency = (model.base_ms + out * model.ms_per_output) * math.exp(0.35 * rng.gauss(0, 1))
    ttft = None
    if feature.stream:
        ttft = round(min(latency, (model.base_ms * 0.4 + reasoning * model.ms_per_output) * rng.uniform(0.6, 1.6)), 1)
    return UsageEvent(**common, input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read,
                      cache_write_tokens=cache_write, cache_write_1h_tokens=cache_1h, reasoning_tokens=reasoning,
                      latency_ms=round(latency, 1), ttft_ms=ttft, stream=feature.stream or None)


def _day_factor(rng: random.Random, day_index: int, days: int) -> float:
    """Growth over the period (the product is taking off; 1.0 on average) times day-to-day noise."""
    growth = 0.7 + 0.6 * (day_index / max(days - 1, 1))
    return growth * rng.uniform(0.85, 1.15)


def _week_factor(feature: Feature, weekday: bool) -> float:
    """A weekday's or a weekend day's volume such that the week averages to 1.0."""
    norm = 7 / (5 + 2 * feature.weekend)
    return norm if weekday else norm * feature.weekend


def _instants(rng: random.Random, day_start_us: int, hours: Sequence[int], count: int,
              weekday: bool) -> list[int]:
    """`count` local instants (UTC µs) in one day, by the feature's hours or the office rhythm."""
    out = []
    for _ in range(count):
        if hours:
            hour = rng.choice(hours)
        else:
            hour = rng.choices(range(24), cum_weights=_OFFICE_CUM)[0] if weekday else rng.randint(8, 22)
        out.append(day_start_us + hour * 3_600_000_000 + rng.randrange(3_600_000_000))
    return out


def generate(days: int = 90, seed: int = 1, per_day: int = DEFAULT_PER_DAY, now: datetime | None = None,
             tz: tzinfo | None = None) -> Iterator[UsageEvent]:
    """`days` local days of traffic ending at `now`, in time order within each day.

    Same arguments, same events. `per_day` is the average events per day; weekends are quieter,
    the last days busier. Nothing is later than `now`, so every event passes validation.
    """
    now = now or datetime.now(UTC)
    now_us = int(now.timestamp() * 1_000_000)
    rng = random.Random(seed)
    last = periods.today(tz, now)
    for i in range(days):
        day = last - timedelta(days=days - 1 - i)
        start_us = periods.midnight_us(day, tz)
        weekday = day.weekday() < 5
        factor = _day_factor(rng, i, days)
        stamped: list[tuple[int, Feature]] = []
        for feature in FEATURES:
            count = round(per_day * feature.share * factor * _week_factor(feature, weekday))
            stamped.extend((us, feature) for us in _instants(rng, start_us, feature.hours, count, weekday))
        days_ago = days - 1 - i
        if days_ago == RUNAWAY_DAYS_AGO:
            stamped.extend(_runaway(rng, start_us, per_day))
        stamped.sort(key=lambda x: x[0])
        burst = [(h, p, msg) for d, h, p, msg in ERROR_BURSTS if d == days_ago]
        for us, feature in stamped:
            if us > now_us:
                break
            ts = datetime.fromtimestamp(us / 1_000_000, UTC)
            yield _maybe_failed(rng, feature, ts, us - start_us, burst)


def _runaway(rng: random.Random, start_us: int, per_day: int) -> list[tuple[int, Feature]]:
    """An agent stuck retrying a tool call from 14:00 to 17:30: ~1.5 days of spend in one afternoon."""
    agent = _BY_NAME["agent"]
    count = int(per_day * 0.35)
    span = int(3.5 * 3_600_000_000)
    return [(start_us + 14 * 3_600_000_000 + rng.randrange(span), agent) for _ in range(count)]


def _maybe_failed(rng: random.Random, feature: Feature, ts: datetime, offset_us: int,
                  bursts: list[tuple[int, str, str]]) -> UsageEvent:
    """Inside an error burst (the hour it starts), most calls to that provider fail."""
    event = _event(rng, feature, ts)
    for hour, provider, message in bursts:
        if event.provider == provider and 0 <= offset_us - hour * 3_600_000_000 < 3_600_000_000 and rng.random() < 0.85:
            return _event(rng, feature, ts, error=message, model=_model_of(event), user=event.user)
    return event


def _model_of(event: UsageEvent) -> Model:
    return next(m for f in FEATURES for m, _ in f.models if m.name == event.model)


def source_for(event: UsageEvent) -> str:
    """How a demo event reaches llmtray (its feature decides: SDK hook, proxy or an import)."""
    feature = _BY_NAME.get(event.feature or "")
    return feature.source if feature else "hook"


def live_events(rng: random.Random, now: datetime | None = None) -> list[UsageEvent]:
    """A few calls that "just happened" (0–4, mostly 1–2), for the demo's live trickle."""
    now = now or datetime.now(UTC)
    count = rng.choices((0, 1, 2, 3, 4), weights=(1, 4, 3, 2, 1))[0]
    live = [f for f in FEATURES if not f.hours]
    picked = rng.choices(live, weights=[f.share for f in live], k=count)
    return [_event(rng, f, now - timedelta(milliseconds=rng.randrange(2000))) for f in picked]


DEMO_BUDGETS = (
    ("Monthly total", "1200", "month", {}),
    ("Agent loop guard", "15", "day", {"feature": "agent"}),
    ("Code review", "400", "month", {"feature": "code-review"}),
)


def add_budgets(store: Store) -> None:
    """Sample budgets for the demo database, so the tray gauge, the KPI strip and the alerts have
    something to show (they are created once, with the history)."""
    from llmtray.core.budgets import Budget, BudgetBook, Scope, parse_limit

    book = BudgetBook(store.db)
    existing = {b.name for b in book.list()}
    for name, limit, period, scope in DEMO_BUDGETS:
        if name not in existing:
            book.add(Budget(name, parse_limit(limit), period, Scope(**scope)))


def fill(store: Store, *, days: int = 90, seed: int = 1, per_day: int = DEFAULT_PER_DAY,
         now: datetime | None = None, tz: tzinfo | None = None, chunk: int = 20_000,
         progress=None) -> int:  # noqa: ANN001 - progress: Callable[[int], None] | None
    """Write generated history into `store` in chunks (one transaction each); returns events stored."""
    stored = 0
    pending: list[UsageEvent] = []

    def flush() -> None:
        nonlocal stored
        result = store.add_many([Batch(pending, "hook", sources=[source_for(e) for e in pending])])[0]
        if isinstance(result, Exception):
            raise result
        stored += result.accepted
        pending.clear()
        if progress is not None:
            progress(stored)

    for event in generate(days, seed, per_day, now, tz):
        pending.append(event)
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return stored

