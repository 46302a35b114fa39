"""Confidence intervals for evaluation results: Wilson for rates, bootstrap for means, and a
paired bootstrap for the shift between two models scored on the same items.

All intervals are 95% by default. The bootstrap resamples items (not tokens, not orders):
an item is the unit a reader would add more of to narrow the interval. Resampling uses a
fixed seed, so the same values always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
RESAMPLES = 2000


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate; (0, 1) for n = 0 (nothing is known)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(
    values: Sequence[float], *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; a single value's interval is the value."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_shift(
    base: Sequence[float], trained: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of trained - base, CI low, CI high) over items scored by both models, resampling
    the items together so that item difficulty cancels out of the interval."""
    if len(base) != len(trained):
        raise ValueError(f"paired values differ in length: {len(base)} vs {len(trained)}")
    diffs = np.asarray(trained, dtype=float) - np.asarray(base, dtype=float)
    if diffs.size == 0:
        return math.nan, math.nan, math.nan
    low, high = bootstrap_mean(diffs, resamples=resamples, seed=seed)
    return float(diffs.mean()), low, high


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0, 1) for v in values)


def crossed_bootstrap_mean(
    grid: Sequence[Sequence[float]],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, CI low, CI high) of a replicates x items grid (e.g. seeds x eval items): each
    resample draws the replicates and the items with replacement, independently, so the
    interval covers both the spread between seeds and the spread between items. One
    replicate is the item bootstrap of `bootstrap_mean`."""
    data = np.asarray(grid, dtype=float)
    if data.ndim != 2 or data.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if data.shape[0] == 1:
        low, high = bootstrap_mean(data[0], level=level, resamples=resamples, seed=seed)
        return mean, low, high
    rng = np.random.default_rng(seed)
    reps, items = data.shape
    rows = rng.integers(0, reps, size=(resamples, reps))
    cols = rng.integers(0, items, size=(resamples, items))
    means = np.array([data[np.ix_(r, c)].mean() for r, c in zip(rows, cols, strict=True)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)


def crossed_bootstrap_difference(
    grid_a: Sequence[Sequence[float]],
    grid_b: Sequence[Sequence[float]],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean of a - mean of b, CI low, CI high) for two arms scored on the same items (the
    columns, in the same order), each a replicates x items grid: each resample draws one set
    of items for both arms (the comparison is paired by item) and each arm's replicates on
    their own (two arms' seeds are independent runs), so the interval covers the item spread
    and both arms' seed spread. With one replicate each it is the paired item bootstrap."""
    a, b = np.asarray(grid_a, dtype=float), np.asarray(grid_b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.size == 0 or b.size == 0 or a.shape[1] != b.shape[1]:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    items = a.shape[1]
    cols = rng.integers(0, items, size=(resamples, items))
    rows_a = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    rows_b = rng.integers(0, b.shape[0], size=(resamples, b.shape[0]))
    diffs = np.array(
        [
            a[np.ix_(ra, c)].mean() - b[np.ix_(rb, c)].mean()
            for ra, rb, c in zip(rows_a, rows_b, cols, strict=True)
        ]
    )
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(a.mean() - b.mean()), float(low), float(high)
