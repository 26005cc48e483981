"""Latency percentiles from log-spaced bins (a DDSketch without the collapsing).

Exact percentiles need every value; a month of calls is millions of them. So each call's latency
(and time to first token) is stored as a bin number next to its exact value, and the rollups
count calls per bin (`db.LATENCY_LEVELS`): bins of any range and filter add up, and the
percentile read from them is within `ALPHA` (1 %) of the exact nearest-rank one — over all calls
in the range, not a sample.

Bin `i` holds the values in (γ^(i-1), γ^i] with γ = (1+α)/(1-α); its representative value
2γ^i/(γ+1) is within α of every value in it, relatively. A day of calls between 1 ms and 10 min
spans ~660 bins; a model's usually a few dozen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
# Latencies below a microsecond (0 ms included: a cached answer) share the lowest bin.
_FLOOR_MS = 0.001
FLOOR_BIN = math.ceil(math.log(_FLOOR_MS) / _LOG_GAMMA)


def bin_of(ms: float | None) -> int | None:
    """The bin of a latency in ms (None stays None: no latency, no bin)."""
    if ms is None:
        return None
    if ms <= _FLOOR_MS:
        return FLOOR_BIN
    return math.ceil(math.log(ms) / _LOG_GAMMA)


def value_of(bin_: int) -> float:
    """The value standing for every latency in the bin (within ALPHA of each, relatively)."""
    if bin_ <= FLOOR_BIN:
        return 0.0  # under a microsecond: as good as instant
    return 2 * GAMMA**bin_ / (GAMMA + 1)


def percentiles(bins: Mapping[int, int], pcts: Iterable[int]) -> list[float]:
    """Nearest-rank percentiles (the value at rank ⌈pct·n/100⌉ of the sorted values, never an
    interpolation) of the calls counted in `bins` (bin -> calls); [] for no calls."""
    total = sum(bins.values())
    if total <= 0:
        return []
    order = sorted(b for b, n in bins.items() if n > 0)
    out = []
    for pct in pcts:
        rank = max(1, min(total, -(-pct * total // 100)))  # 1-based: the rank-th smallest value
        seen = 0
        for b in order:
            seen += bins[b]
            if seen >= rank:
                out.append(value_of(b))
                break
    return out
