"""Intervals for the book's comparisons: one rule, one helper.

Every comparison the book ranks uses at least 3 seeds and at least 512 held-out problems, and prints a 95%
interval. Two kinds:

- :func:`binomial_interval`: k successes in n independent trials (Wilson's score interval), for one run
  evaluated once on n problems.
- :func:`bootstrap_interval`, :func:`difference_interval`, :func:`ratio_interval` and
  :func:`ratio_difference_interval`: a hierarchical bootstrap over seeds and problems. ``values`` is (S, N):
  one row per training seed, one column per held-out problem (the same problems for every seed). Each resample draws S seeds with replacement and, independently, N problems with
  replacement, so the interval carries both sources of variation: the run-to-run spread of training and the
  finite held-out set. A difference of two methods evaluated on the same problems is paired by problem.

Resampling both levels counts the per-response noise twice (once in the seeds' means, once in the
problems'), so the interval is slightly conservative: on simulated 0/1 outcomes of 3 seeds x 512 problems
its width averaged 1.0 to 1.3 times that of a random-effects variance formula (the most when problems
differ little in difficulty). Wider is the safe direction for a rule that decides what the text may rank.

The text ranks A above B only when the interval of A - B excludes 0 (:meth:`Interval.excludes`);
otherwise it says "no difference measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "binomial_interval",
    "bootstrap_interval",
    "difference_interval",
    "relative_gain_interval",
    "ratio_interval",
    "ratio_difference_interval",
]

# Normal quantiles for the levels the book uses (scipy is not a dependency).
_Z = {0.90: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval [lo, hi] at ``level``."""

    mean: float
    lo: float
    hi: float
    level: float = 0.95

    def excludes(self, value: float = 0.0) -> bool:
        """True if ``value`` lies outside [lo, hi]: a difference whose interval excludes 0 is measured."""
        return value < self.lo or value > self.hi

    def format(self, digits: int = 3) -> str:
        """``"0.812 [0.789, 0.834]"``."""
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()


def _z(level: float) -> float:
    if level not in _Z:
        raise ValueError(f"level = {level} is invalid: it must be one of {sorted(_Z)}")
    return _Z[level]


def binomial_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson's score interval for a proportion: ``successes`` of ``n`` independent trials.

    Unlike the normal approximation p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not
    collapse to a point at 0 or n successes.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"successes = {successes} and n = {n} are invalid: need n >= 1 and 0 <= successes <= n")
    z = _z(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level)


def _as_runs(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]  # (1, N): one seed
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"values must be (seeds, problems) or (problems,), got shape {np.shape(values)}")
    return arr  # (S, N)


def _resampled_means(arr: np.ndarray, rng: np.random.Generator, resamples: int, cols=None) -> np.ndarray:
    """Means of ``resamples`` hierarchical resamples of ``arr`` (S, N): seeds, then problems."""
    S, N = arr.shape
    seeds = rng.integers(0, S, size=(resamples, S))  # (R, S)
    if cols is None:
        cols = rng.integers(0, N, size=(resamples, N))  # (R, N)
    per_seed = np.stack([arr[:, c].mean(axis=1) for c in cols])  # (R, S): each seed's mean on the resample
    return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)  # (R,)


def _percentile_interval(mean: float, draws: np.ndarray, level: float) -> Interval:
    _z(level)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(mean), float(lo), float(hi), level)


def bootstrap_interval(values, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``: (S, N) seeds x problems, or (N,).

    Seeds and problems are resampled independently (see the module docstring). With one seed it is the
    ordinary bootstrap over problems, which ignores run-to-run variation: use at least 3 seeds to rank.
    """
    arr = _as_runs(values)  # (S, N)
    draws = _resampled_means(arr, np.random.default_rng(seed), resamples)  # (R,)
    return _percentile_interval(arr.mean(), draws, level)


def _paired_resampled_means(a, b, resamples: int, seed: int):
    """``(a, b, means of a, means of b)``: two methods' (S, N) results on the same problems, resampled as
    :func:`_resampled_means` does with the problems drawn once for both (paired) and the seeds apart."""
    a, b = _as_runs(a), _as_runs(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must cover the same problems, got {a.shape[1]} and {b.shape[1]} columns")
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, a.shape[1], size=(resamples, a.shape[1]))  # (R, N), shared by a and b
    return a, b, _resampled_means(a, rng, resamples, cols), _resampled_means(b, rng, resamples, cols)  # (R,) each


def difference_interval(a, b, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval of mean(a) - mean(b), paired by problem.

    ``a`` (S_a, N) and ``b`` (S_b, N) hold two methods' results on the same N problems (column j is the
    same problem in both); their seeds are independent runs and are resampled separately, the problems
    once for both, so a problem that is hard for both methods does not widen the interval.
    """
    a, b, mean_a, mean_b = _paired_resampled_means(a, b, resamples, seed)
    return _percentile_interval(a.mean() - b.mean(), mean_a - mean_b, level)


def relative_gain_interval(a, b, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval of the relative gain mean(a) / mean(b) - 1, paired by problem (the report's
    "+550%" kind of number): seeds and problems resampled as in :func:`difference_interval`."""
    if _as_runs(b).mean() <= 0:
        raise ValueError("mean(b) must be positive for a relative gain")
    a, b, mean_a, mean_b = _paired_resampled_means(a, b, resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = mean_a / mean_b - 1  # (R,): inf where a resample of b is all zeros
    return _percentile_interval(a.mean() / b.mean() - 1, draws, level)


def _ratio_draws(num: np.ndarray, den: np.ndarray, seeds: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """sum(num) / sum(den) on each resample: ``seeds`` (R, S) and ``cols`` (R, N) index the same cells."""
    per_seed_num = np.stack([num[:, c].sum(axis=1) for c in cols])  # (R, S)
    per_seed_den = np.stack([den[:, c].sum(axis=1) for c in cols])  # (R, S)
    totals_num = np.take_along_axis(per_seed_num, seeds, axis=1).sum(axis=1)  # (R,)
    return totals_num / np.take_along_axis(per_seed_den, seeds, axis=1).sum(axis=1)


def ratio_interval(numerator, denominator, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval of ``sum(numerator) / sum(denominator)``: for example correct answers per token.

    Both are (S, N) arrays over the same seeds and problems (or (N,)); each resample draws seeds and
    problems as :func:`bootstrap_interval` does and takes the same cells of both, so the ratio of totals is
    resampled as a whole (a ratio of two means is not the mean of per-problem ratios).
    """
    num, den = _as_runs(numerator), _as_runs(denominator)
    if num.shape != den.shape:
        raise ValueError(f"numerator and denominator must have the same shape, got {num.shape} and {den.shape}")
    rng = np.random.default_rng(seed)
    S, N = num.shape
    cols = rng.integers(0, N, size=(resamples, N))  # (R, N)
    seeds = rng.integers(0, S, size=(resamples, S))  # (R, S)
    return _percentile_interval(num.sum() / den.sum(), _ratio_draws(num, den, seeds, cols), level)


def ratio_difference_interval(
    num_a, den_a, num_b, den_b, level: float = 0.95, resamples: int = 2000, seed: int = 0, same_runs: bool = False
) -> Interval:
    """Interval of ``sum(num_a) / sum(den_a) - sum(num_b) / sum(den_b)`` on the same problems, paired by
    problem (resampled once for both). a and b are two methods' independent runs by default: as in
    :func:`difference_interval`, each one's seeds are resampled separately. With ``same_runs=True`` they are
    two readings of the *same* runs (one policy's responses scored under two token limits): the seeds are
    resampled once for both, so what a and b share cancels."""
    na, da, nb, db = (_as_runs(x) for x in (num_a, den_a, num_b, den_b))
    if na.shape != da.shape or nb.shape != db.shape or na.shape[1] != nb.shape[1]:
        raise ValueError(
            f"num and den must have the same shape and both methods the same problems, got "
            f"{[x.shape for x in (na, da, nb, db)]}"
        )
    if same_runs and na.shape != nb.shape:
        raise ValueError(f"two readings of the same runs must have the same shape, got {na.shape} and {nb.shape}")
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, na.shape[1], size=(resamples, na.shape[1]))  # (R, N), shared by a and b
    seeds_a = rng.integers(0, na.shape[0], size=(resamples, na.shape[0]))  # (R, S_a)
    seeds_b = seeds_a if same_runs else rng.integers(0, nb.shape[0], size=(resamples, nb.shape[0]))  # (R, S_b)
    draws = _ratio_draws(na, da, seeds_a, cols) - _ratio_draws(nb, db, seeds_b, cols)  # (R,)
    return _percentile_interval(na.sum() / da.sum() - nb.sum() / db.sum(), draws, level)
