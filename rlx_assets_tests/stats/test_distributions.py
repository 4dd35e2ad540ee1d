"""K-S tests and power-law tails: real trade sizes for the K-S tests and for the power-law fit
against the reference implementation (the ``powerlaw`` package); Pareto draws (the one place
generated data is fine) for recovering a known exponent."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import powerlaw
import pytest

from rlx_assets.stats.distributions import (
    Counted,
    compare_tails,
    ecdf_points,
    estimate_tail,
    fit_power_law,
    inter_arrival_counts,
    inter_arrival_s,
    ks_two_sample,
    log_returns,
    state_at,
    state_at_batches,
    time_grid,
)
from rlx_assets_tests.stats.sample_partitions import FUTURES_0808, PARTITIONS, SPOT_0808


def _trades(lake, partition) -> pl.DataFrame:
    return pl.read_parquet(partition.file(lake, "trades"))


def test_ks_separates_spot_and_futures_trade_sizes(sample_lake):
    spot, futures = _trades(sample_lake, SPOT_0808), _trades(sample_lake, FUTURES_0808)
    sizes = ks_two_sample(spot["amount"].to_numpy(), futures["amount"].to_numpy())
    assert sizes.statistic > 0.3
    assert sizes.pvalue < 1e-100
    assert not sizes.passed
    gaps = ks_two_sample(
        inter_arrival_s(spot["timestamp"].to_numpy()),
        inter_arrival_s(futures["timestamp"].to_numpy()),
    )
    assert gaps.pvalue < 1e-10 and not gaps.passed
    assert (sizes.n_a, sizes.n_b) == (spot.height, futures.height)


def test_ks_of_a_sample_against_itself_passes(sample_lake):
    sizes = _trades(sample_lake, SPOT_0808)["amount"].to_numpy()
    result = ks_two_sample(sizes, sizes.copy())
    assert result.statistic == 0.0 and result.pvalue == 1.0 and result.passed
    assert result.to_dict()["passed"] is True


def test_ks_statistic_bound_accepts_tiny_effects_on_large_samples(sample_lake):
    """With a day's millions of values any difference is 'significant': the statistic bound
    keeps a negligible one from failing (here: the same sizes minus their 1% largest)."""
    sizes = np.sort(_trades(sample_lake, FUTURES_0808)["amount"].to_numpy())
    trimmed = sizes[: int(sizes.size * 0.99)]
    strict = ks_two_sample(sizes, trimmed, min_pvalue=0.5, max_statistic=0.0)
    bounded = ks_two_sample(sizes, trimmed, min_pvalue=0.5, max_statistic=0.02)
    assert not strict.passed and bounded.passed
    assert bounded.statistic <= 0.011


def test_ks_needs_values_on_both_sides():
    with pytest.raises(ValueError, match="both sides"):
        ks_two_sample(np.array([1.0, np.nan]), np.array([np.nan]))


@pytest.mark.parametrize("alpha", [1.8, 2.5, 3.2])
def test_tail_estimator_recovers_a_pareto_exponent(alpha):
    """Pareto tail above xmin=1 (density exponent alpha) under a uniform body: the fit finds
    xmin near 1 and the bootstrap interval holds the true exponent."""
    rng = np.random.default_rng(20240808)
    tail = 1.0 + rng.pareto(alpha - 1.0, 4000)  # numpy's Lomax shifted: P(X > x) = x^(1-alpha)
    body = rng.uniform(0.05, 1.0, 6000)
    estimate = estimate_tail(np.concatenate([tail, body]), resamples=200, seed=7)
    assert estimate.ci_low <= alpha <= estimate.ci_high
    assert abs(estimate.fit.alpha - alpha) < 0.15
    assert 0.8 <= estimate.fit.xmin <= 1.2
    assert estimate.resamples == 200
    assert estimate.ci_high - estimate.ci_low < 0.6


def test_tail_difference_detects_different_exponents_and_accepts_equal_ones():
    rng = np.random.default_rng(11)
    a = estimate_tail(1.0 + rng.pareto(1.0, 5000), resamples=100, seed=1)  # alpha 2
    b = estimate_tail(1.0 + rng.pareto(2.0, 5000), resamples=100, seed=2)  # alpha 3
    c = estimate_tail(1.0 + rng.pareto(1.0, 5000), resamples=100, seed=3)  # alpha 2 again
    different = compare_tails(a, b, tolerance=0.2)
    assert not different["passed"] and not different["intervals_overlap"]
    assert different["ci"][1] < 0  # a - b is clearly negative
    same = compare_tails(a, c, tolerance=0.2)
    assert same["passed"]
    assert same["ci"][0] <= 0 <= same["ci"][1]


def test_bootstrap_is_reproducible_with_its_seed(sample_lake):
    sizes = _trades(sample_lake, SPOT_0808)["amount"].to_numpy()
    first = estimate_tail(sizes, resamples=30, seed=5)
    again = estimate_tail(sizes, resamples=30, seed=5)
    other = estimate_tail(sizes, resamples=30, seed=6)
    assert first.to_dict() == again.to_dict()
    assert first.fit == other.fit and (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_power_law_fit_equals_the_reference_implementation_on_real_trade_sizes(
    sample_lake, partition
):
    """Same estimator as ``powerlaw.Fit`` (continuous, xmin by minimum K-S distance over every
    distinct value): on each sample day's real trade sizes our xmin and tail size are its, and
    alpha agrees to 1e-9 (relative). Our scan is told to try every candidate, and the library's
    xmin range is set to the same candidates: the distinct values with at least ``min_tail``
    sizes at or above them (it drops the last value of its range, hence one more above)."""
    sizes = _trades(sample_lake, partition)["amount"].to_numpy()
    min_tail = 50
    values, counts = np.unique(sizes[sizes > 0], return_counts=True)
    at_or_above = np.cumsum(counts[::-1])[::-1]
    last = int(np.flatnonzero(at_or_above >= min_tail)[-1])
    assert last + 2 < values.size  # a range end inside the data

    ours = fit_power_law(sizes, min_tail=min_tail, max_candidates=values.size)
    with warnings.catch_warnings():  # the library's own deprecation notices, one per xmin
        warnings.simplefilter("ignore")
        reference = powerlaw.Fit(
            sizes, discrete=False, xmin=(values[0], values[last + 2]), verbose=0
        )

    assert ours.xmin == reference.xmin
    assert ours.n_tail == int((sizes >= reference.xmin).sum())
    assert ours.alpha == pytest.approx(reference.power_law.alpha, rel=1e-9)
    assert 1 < ours.alpha <= 3  # the library's analytic estimator covers (1, 3] only
    assert ours.ks_distance == pytest.approx(reference.power_law.D, abs=0.005)


def test_power_law_fit_needs_a_tail():
    with pytest.raises(ValueError, match="no power-law fit"):
        fit_power_law(np.array([1.0, 2.0, 3.0]), min_tail=50)
    with pytest.raises(ValueError, match="no power-law fit"):
        fit_power_law(np.full(500, 0.01))  # one distinct value fits nothing


def test_grid_sampling_takes_the_state_at_or_before_each_time():
    # edge cases of the sampler on hand-made times (ns)
    times = np.array([1_500, 2_000, 2_000, 4_100])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    grid = time_grid(1_200, 5_000, 1_000)
    assert grid.tolist() == [2_000, 3_000, 4_000, 5_000]
    assert state_at(times, values, grid).tolist() == [3.0, 3.0, 3.0, 4.0]
    assert np.isnan(state_at(times, values, np.array([1_000]))[0])
    assert time_grid(1_001, 1_999, 1_000).size == 0
    assert log_returns(np.array([1.0, np.nan, np.e, np.e])).tolist() == [0.0]


@pytest.mark.parametrize("n", [4_000, None], ids=["exact p-value", "asymptotic p-value"])
def test_a_counted_sample_gives_scipys_ks_test_and_numpys_median_and_ecdf(sample_lake, n):
    """A day's trade sizes and inter-trade times are held as distinct values with counts: on
    the real sizes (spot against futures, and the inter-trade times) the K-S statistic and
    p-value are scipy's on the whole arrays, in both of scipy's regimes (exact p-value up to
    10 k values a side, asymptotic above), the medians numpy's, the ECDF points the sorted
    array's."""
    from scipy import stats

    spot, futures = _trades(sample_lake, SPOT_0808), _trades(sample_lake, FUTURES_0808)
    pairs = [
        (spot["amount"].to_numpy()[:n], futures["amount"].to_numpy()[:n]),
        (
            inter_arrival_s(spot["timestamp"].to_numpy()[:n]),
            inter_arrival_s(futures["timestamp"].to_numpy()[:n]),
        ),
    ]
    for a, b in pairs:
        assert (n is None) == (max(a.size, b.size) > 10_000)
        counted = ks_two_sample(Counted.of(a), Counted.of(b))
        scipy_result = stats.ks_2samp(a, b)
        assert (counted.statistic, counted.pvalue) == (
            float(scipy_result.statistic),
            float(scipy_result.pvalue),
        )
        assert (counted.n_a, counted.n_b) == (a.size, b.size)
        assert Counted.of(a).median() == float(np.median(a))
        x, y = ecdf_points(Counted.of(a), max_points=500)
        ranks = np.unique(np.linspace(0, a.size - 1, 500).astype(np.int64))
        assert np.array_equal(x, np.sort(a)[ranks]) and np.array_equal(y, (ranks + 1) / a.size)
        assert Counted.of(a).values.size < a.size / 3  # what a day's sample is held as


def test_streamed_grid_states_and_inter_arrivals_equal_the_whole_series(sample_lake):
    """Read in batches, in order or not, the sample's real trade times (with ties, one split
    between two batches) sampled on a 1 s grid give ``state_at`` of the series stably sorted
    in the order read (of equal times, the last row read); in-order batches give the
    inter-trade times of the whole series, out of order None."""
    trades = _trades(sample_lake, SPOT_0808).with_row_index()
    times, values = trades["timestamp"].to_numpy(), trades["index"].to_numpy().astype(float)
    ties = np.flatnonzero(times[1:] == times[:-1]) + 1
    tie = int(ties[ties > 100][0])  # times[tie - 1] == times[tie]: a tie split by a batch end
    grid = time_grid(int(times.min()) - 5 * 10**9, int(times.max()) + 5 * 10**9, 10**9)
    bounds = [0, 17, tie, 4000, times.size]
    batches = [(times[a:b], values[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    for order in (batches, batches[::-1]):
        read = np.concatenate([t for t, _ in order]), np.concatenate([v for _, v in order])
        stable = np.argsort(read[0], kind="stable")
        expected = state_at(read[0][stable], read[1][stable], grid)
        (found,) = state_at_batches(order, grid, 1)
        assert np.array_equal(found, expected, equal_nan=True)
        assert np.isnan(found[0]) and not np.isnan(found).all()

    gaps = inter_arrival_counts(t for t, _ in batches)
    expected = inter_arrival_s(times)
    assert gaps.n == expected.size
    assert np.array_equal(gaps.expanded(), np.sort(expected))
    assert inter_arrival_counts(t for t, _ in batches[::-1]) is None
