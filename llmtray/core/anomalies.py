"""Anomaly detectors: a sudden spending spike, and one feature calling far more often than usual.

Both are reads through `Queries` at a given instant, so they run the same on live traffic, in
tests and over a replayed history. Their baselines (the previous day's spend, each feature's
busiest quarter-hour of the past week) come from the 15-minute rollups and are cached per
15-minute bucket — they can't change inside one except through a backfill, which may wait.

Spike: the last 15 minutes cost at least `factor` × what an average hour cost over the previous
24 h, and at least a dollar floor — both from config (`[alerts] spike_factor`,
`spike_floor_usd`). Comparing a quarter-hour with a whole hour is deliberate: on 90 days of
realistic traffic, comparing rates instead fired every Monday morning (the Sunday before is the
baseline); this form stays silent there and still catches a runaway afternoon.

Runaway: one feature's calls in the last 5 minutes, per minute, at least `factor` × its busiest
15-minute bucket of the previous 7 days (per minute), and at least `min_calls` calls — an agent
stuck in a loop, a retry storm. Each feature is measured against its own history, so a nightly
batch job is not a runaway but the same burst from an interactive feature is. It is critical
(a sticky notification) only when those calls cost at least `runaway_floor_usd`; a loop of
near-free calls is worth a warning, not a red alert.

Calls the proxy got no answer for (the provider unreachable or silent: tag `llmtray.upstream =
no answer`) count toward neither: they cost nothing, and any local process can make them without
a token or an API key — twelve 502s must not put an attacker's feature name in a webhook.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction

from llmtray.config import Config
from llmtray.core.db import BUCKET_US
from llmtray.core.money import format_usd, usd_to_nanos
from llmtray.core.queries import Filters, Queries, Totals

# The tag the proxy puts on a call that got no answer from its provider (never reached it or
# timed out before a response began); written by `ingest.meter.build_event`.
NO_ANSWER_TAG = ("llmtray.upstream", "no answer")

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US


@dataclass(frozen=True)
class Finding:
    """A detected anomaly; `key` is what a cool-down is kept per (`spike`, `runaway:<feature>`)."""

    kind: str
    key: str
    severity: str
    title: str
    body: str
    feature: str | None = None  # the feature a notification offers to block (none: nothing to offer)


@dataclass(frozen=True)
class SpikeRule:
    factor: Decimal = Decimal(4)
    floor_nanos: int = usd_to_nanos(1)
    window_us: int = 15 * MINUTE_US
    baseline_us: int = DAY_US

    @classmethod
    def from_config(cls, config: Config) -> SpikeRule:
        return cls(factor=config.spike_factor, floor_nanos=usd_to_nanos(config.spike_floor_usd))


@dataclass(frozen=True)
class RunawayRule:
    factor: int = 5
    min_calls: int = 10
    window_us: int = 5 * MINUTE_US
    history_us: int = 7 * DAY_US
    critical_nanos: int = usd_to_nanos(1)  # below this spend in the window: a warning

    @classmethod
    def from_config(cls, config: Config) -> RunawayRule:
        return cls(critical_nanos=usd_to_nanos(config.runaway_floor_usd))


@dataclass
class Detectors:
    """Spike and runaway detection with per-bucket baseline caches (one instance per thread)."""

    spike_rule: SpikeRule = field(default_factory=SpikeRule)
    runaway_rule: RunawayRule = field(default_factory=RunawayRule)
    _baseline: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _peaks: dict[tuple[int, str], int] = field(default_factory=dict, init=False, repr=False)

    def run(self, queries: Queries, now_us: int) -> list[Finding]:
        spike = self.spike(queries, now_us)
        return ([spike] if spike else []) + self.runaways(queries, now_us)

    def spike(self, queries: Queries, now_us: int) -> Finding | None:
        rule = self.spike_rule
        window = _window(now_us, rule.window_us)
        spent = queries.totals(window).cost_nanos
        if spent < rule.floor_nanos:
            return None
        edge = _bucket_floor(now_us - rule.window_us)
        if edge not in self._baseline:
            self._baseline = {edge: queries.totals(Filters(start_us=edge - rule.baseline_us, end_us=edge)).cost_nanos}
        hourly = Fraction(self._baseline[edge] * HOUR_US, rule.baseline_us)
        factor = Fraction(rule.factor)
        if spent < factor * hourly:
            return None
        minutes = rule.window_us // MINUTE_US
        if hourly:
            ratio = f"{float(spent / hourly):.0f}× an average hour over the past day ({format_usd(round(hourly))}/h)"
        else:
            ratio = "nothing was spent in the day before"
        features = [(k, t) for k, t in queries.by("feature", window) if k and t.cost_nanos]  # not a free 502's name
        return Finding("spike", "spike", "warning", f"Spending spike: {format_usd(spent)} in {minutes} min",
                       f"{ratio}. {_top(queries, window, features)}.", features[0][0] if features else None)

    def runaways(self, queries: Queries, now_us: int) -> list[Finding]:
        rule = self.runaway_rule
        window = _window(now_us, rule.window_us)
        edge = _bucket_floor(now_us - rule.window_us)
        if any(k[0] != edge for k in self._peaks):
            self._peaks = {}
        out = []
        minutes = rule.window_us // MINUTE_US
        unanswered = dict(queries.by("feature", replace(window, tags=(NO_ANSWER_TAG,))))
        for feature, totals in queries.by("feature", window):
            calls = totals.requests - unanswered.get(feature, _NONE).requests
            if calls < rule.min_calls:
                continue
            if (edge, feature) not in self._peaks:
                history = Filters(start_us=edge - rule.history_us, end_us=edge, feature=(feature,))
                buckets = queries.per_bucket(history, BUCKET_US)
                self._peaks[(edge, feature)] = max((t.requests for _, t in buckets), default=0)
            peak = self._peaks[(edge, feature)]
            per_min, peak_per_min = Fraction(calls, minutes), Fraction(peak * MINUTE_US, BUCKET_US)
            if per_min < rule.factor * peak_per_min:
                continue
            name = f"feature “{feature}”" if feature else "calls without a feature"
            usual = (f"{float(per_min / peak_per_min):.0f}× its busiest quarter-hour of the past week "
                     f"({_rate(peak_per_min)}/min)") if peak else "it made no calls in the past week"
            severity = "critical" if totals.cost_nanos >= rule.critical_nanos else "warning"
            out.append(Finding(
                "runaway", f"runaway:{feature}", severity, f"Runaway calls: {name}",
                f"{_rate(per_min)} calls/min over the last {minutes} min — {usual}. "
                f"{format_usd(totals.cost_nanos)} spent in those {minutes} min.", feature or None,
            ))
        return out


_NONE = Totals()


def _window(now_us: int, width_us: int) -> Filters:
    """The last `width_us` up to and including `now_us`. An event stamped ahead by a skewed client
    clock counts once its time has come (so replaying a history sees what live checks saw)."""
    return Filters(start_us=now_us - width_us, end_us=now_us + 1)


def _bucket_floor(us: int) -> int:
    return us - us % BUCKET_US


def _rate(x: Fraction) -> str:
    return f"{float(x):.1f}".removesuffix(".0")


def _top(queries: Queries, window: Filters, features: list[tuple[str, Totals]]) -> str:
    """Where the money went: the most expensive model and feature (`features`, by cost) of the window."""
    models = queries.by("model", window)
    text = f"Mostly {models[0][0]} ({format_usd(models[0][1].cost_nanos)})" if models else "No model recorded"
    if features:
        text += f", top feature {features[0][0]} ({format_usd(features[0][1].cost_nanos)})"
    return text
