"""The latency bins against exact nearest-rank percentiles on random data of the shapes calls
have (log-normal, uniform, a constant, heavy tails, instant answers), and their merging."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmtray.core.sketch import ALPHA, FLOOR_BIN, bin_of, percentiles, value_of

PCTS = (1, 25, 50, 90, 95, 99, 100)


def exact(values: list[float], pct: int) -> float:
    xs = sorted(values)
    return xs[max(0, -(-pct * len(xs) // 100) - 1)]


def sketch_of(values: list[float]) -> Counter[int]:
    return Counter(bin_of(v) for v in values)


SHAPES = {
    "lognormal": lambda rng: rng.lognormvariate(6, 1.2),
    "uniform": lambda rng: rng.uniform(50, 5000),
    "constant": lambda rng: 734.5,
    "pareto": lambda rng: 80 * rng.paretovariate(1.1),
    "tiny": lambda rng: rng.uniform(0.002, 0.5),
    "rounded": lambda rng: float(rng.randrange(1, 2000)),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 7, 100, 5000])
def test_percentiles_within_alpha_of_the_exact_ones(shape, n):
    rng = random.Random(f"{shape}-{n}")
    values = [SHAPES[shape](rng) for _ in range(n)]
    got = percentiles(sketch_of(values), PCTS)
    for pct, g in zip(PCTS, got):
        x = exact(values, pct)
        assert abs(g - x) <= ALPHA * x + 1e-9, (pct, g, x)


def test_sketches_merge_by_adding_counts():
    """Bins of two sets of calls added together are the bins of their union: what lets a
    rollup of any range and filter be summed from smaller ones."""
    rng = random.Random(5)
    a = [rng.lognormvariate(5, 1) for _ in range(3000)]
    b = [rng.uniform(1, 90_000) for _ in range(2000)]
    assert sketch_of(a) + sketch_of(b) == sketch_of(a + b)
    for pct, g in zip(PCTS, percentiles(sketch_of(a) + sketch_of(b), PCTS)):
        assert abs(g - exact(a + b, pct)) <= ALPHA * exact(a + b, pct) + 1e-9


def test_edges():
    assert bin_of(None) is None
    assert bin_of(0.0) == bin_of(-1.0) == FLOOR_BIN  # instant (or a clock that went back)
    assert value_of(FLOOR_BIN) == 0.0
    assert percentiles(Counter(), (50,)) == []
    assert percentiles({bin_of(100.0): 3, bin_of(5.0): 0}, (50, 99)) == pytest.approx([100.0] * 2, rel=ALPHA)
    gamma = (1 + ALPHA) / (1 - ALPHA)
    for i in (-300, 0, 1, 345, 700):  # a bin's value lies in it, within ALPHA of both its edges
        low, high = gamma ** (i - 1), gamma ** i
        assert bin_of(value_of(i)) == i
        assert abs(value_of(i) - low) <= ALPHA * low * (1 + 1e-9)
        assert abs(value_of(i) - high) <= ALPHA * high * (1 + 1e-9)
