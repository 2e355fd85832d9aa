"""The interval helper: Wilson's interval against known values, the bootstrap's coverage and pairing."""

import numpy as np
import pytest

from kimi_mini.stats import (
    Interval,
    binomial_interval,
    bootstrap_interval,
    difference_interval,
    ratio_difference_interval,
    ratio_interval,
    relative_gain_interval,
)


def test_wilson_interval_matches_known_values():
    # Wilson 95% intervals (Brown, Cai and DasGupta 2001): 0/10 -> [0, 0.278], 8/10 -> [0.490, 0.943]
    zero, eight = binomial_interval(0, 10), binomial_interval(8, 10)
    assert zero.mean == 0 and zero.lo == 0 and zero.hi == pytest.approx(0.2775, abs=1e-4)
    assert (eight.lo, eight.hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_interval_formats_and_excludes():
    iv = Interval(0.8123, 0.7891, 0.8345)
    assert str(iv) == "0.812 [0.789, 0.835]" and iv.format(2) == "0.81 [0.79, 0.83]"
    assert iv.excludes(0.0) and iv.excludes(0.9) and not iv.excludes(0.8)


def test_bootstrap_interval_covers_the_true_mean():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(40):
        values = rng.random((3, 512)) < 0.7  # (S, N) Bernoulli(0.7) results
        iv = bootstrap_interval(values, resamples=500, seed=int(rng.integers(1 << 30)))
        covered += iv.lo <= 0.7 <= iv.hi
    assert covered >= 34  # nominal 95% of 40 = 38; 34 allows for the bootstrap's small-sample undercoverage


def test_bootstrap_interval_widens_with_seed_to_seed_spread():
    rng = np.random.default_rng(1)
    alike = rng.random((3, 512)) < 0.7
    spread = np.stack([rng.random(512) < p for p in (0.5, 0.7, 0.9)])  # (3, 512) seeds that differ
    width = lambda iv: iv.hi - iv.lo  # noqa: E731
    assert width(bootstrap_interval(spread)) > 2 * width(bootstrap_interval(alike))


def test_difference_interval_is_paired_by_problem():
    rng = np.random.default_rng(2)
    solvable = rng.random(512) < 0.6  # shared: a problem is (almost) always or (almost) never solved
    a = np.stack([rng.random(512) < np.where(solvable, 0.95, 0.10) for _ in range(3)])
    b = np.stack([rng.random(512) < np.where(solvable, 0.90, 0.05) for _ in range(3)])
    paired = difference_interval(a, b)
    assert paired.excludes(0.0) and paired.mean == pytest.approx(a.mean() - b.mean())
    # unpaired, the problems' spread would enter twice: the paired interval is much narrower
    width = lambda iv: iv.hi - iv.lo  # noqa: E731
    unpaired = np.hypot(width(bootstrap_interval(a)), width(bootstrap_interval(b)))
    assert width(paired) < 0.6 * unpaired
    same = difference_interval(a, a)
    assert same.mean == 0 and not same.excludes(0.0)


def test_bad_input_is_rejected_with_the_rule():
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        binomial_interval(11, 10)
    with pytest.raises(ValueError, match="level"):
        binomial_interval(1, 10, level=0.5)
    with pytest.raises(ValueError, match="same problems"):
        difference_interval(np.ones((3, 10)), np.ones((3, 11)))
    with pytest.raises(ValueError, match="seeds, problems"):
        bootstrap_interval(np.ones((2, 2, 2)))


def test_ratio_interval_is_a_ratio_of_totals_and_covers_it():
    rng = np.random.default_rng(3)
    tokens = rng.integers(20, 400, size=(3, 512))  # (S, N): long responses are the wrong ones below
    correct = rng.random((3, 512)) < np.where(tokens < 200, 0.9, 0.3)
    iv = ratio_interval(correct, tokens)
    assert iv.mean == pytest.approx(correct.sum() / tokens.sum())
    assert iv.mean != pytest.approx(np.mean(correct / tokens))  # not the mean of per-problem ratios
    assert iv.lo < iv.mean < iv.hi and (iv.hi - iv.lo) < 0.3 * iv.mean
    covered = 0
    for i in range(30):
        t = rng.integers(20, 400, size=(3, 512))
        c = rng.random((3, 512)) < 0.5
        truth = 0.5 / 209.5  # E[correct] / E[tokens]: tokens uniform on 20..399
        covered += ratio_interval(c, t, resamples=400, seed=i).excludes(truth) is False
    assert covered >= 25
    with pytest.raises(ValueError, match="same shape"):
        ratio_interval(correct, tokens[:, :10])


def test_a_ratio_difference_of_the_same_runs_cancels_what_the_readings_share():
    rng = np.random.default_rng(4)
    tokens = rng.integers(20, 400, size=(3, 512))  # (S, N): one sample per problem
    correct = rng.random((3, 512)) < 0.7
    short = np.minimum(tokens, 350)  # the same responses read under a 350-token limit
    correct_short = correct & (tokens <= 350)
    paired = ratio_difference_interval(1000 * correct, tokens, 1000 * correct_short, short, same_runs=True)
    assert paired.mean == pytest.approx(1000 * (correct.sum() / tokens.sum() - correct_short.sum() / short.sum()))
    # per 1,000 tokens 3.32 [3.12, 3.52] and 2.91 [2.68, 3.13] overlap; the paired 0.41 [0.33, 0.50] does not
    a, b = ratio_interval(1000 * correct, tokens), ratio_interval(1000 * correct_short, short)
    assert a.lo < b.hi and b.lo < a.hi and paired.excludes(0)
    assert not ratio_difference_interval(correct, tokens, correct, tokens, same_runs=True).excludes(0)
    with pytest.raises(ValueError, match="same shape"):
        ratio_difference_interval(correct, tokens, correct_short, short[:, :5], same_runs=True)


def test_ratio_difference_interval_pairs_by_problem_across_independent_runs():
    rng = np.random.default_rng(5)
    tokens = rng.integers(20, 400, size=512)  # problem lengths, shared by both methods
    a = np.stack([rng.random(512) < np.where(tokens < 200, 0.95, 0.6) for _ in range(3)])
    b = np.stack([rng.random(512) < np.where(tokens < 200, 0.90, 0.5) for _ in range(3)])
    t = np.tile(tokens, (3, 1))
    d = ratio_difference_interval(1000 * a, t, 1000 * b, t)
    assert d.mean == pytest.approx(1000 * (a.sum() - b.sum()) / t.sum()) and d.excludes(0)
    assert not ratio_difference_interval(a, t, a, t).excludes(0)
    with pytest.raises(ValueError, match="same problems"):
        ratio_difference_interval(a, t, b[:, :10], t[:, :10])


def test_relative_gain_interval_covers_the_true_gain_and_is_paired():
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(30):
        solvable = rng.random(512) < 0.5
        a = np.stack([rng.random(512) < np.where(solvable, 0.9, 0.3) for _ in range(3)])  # mean 0.6
        b = np.stack([rng.random(512) < np.where(solvable, 0.5, 0.1) for _ in range(3)])  # mean 0.3
        iv = relative_gain_interval(a, b, resamples=500, seed=int(rng.integers(1 << 30)))
        assert iv.mean == pytest.approx(a.mean() / b.mean() - 1)
        covered += iv.lo <= 1.0 <= iv.hi  # the true gain: 0.6 / 0.3 - 1
    assert covered >= 25  # nominal 95% of 30 = 28.5; 25 allows for the bootstrap's undercoverage
    same = relative_gain_interval(a, a)
    assert same.mean == 0 and not same.excludes(0.0)
    with pytest.raises(ValueError, match="mean\\(b\\) must be positive"):
        relative_gain_interval(a, np.zeros_like(a))
