"""The IQM is rliable's (scipy.stats.trim_mean at 0.25); the bootstrap interval is around it."""

import numpy as np
import pytest
import scipy.stats

from memorax.statistics import bootstrap_interval, interquartile_mean


def reference_iqm(values) -> float:
    """Sort, drop floor(n / 4) samples from each end, average the rest: in a plain loop."""
    ordered = sorted(float(value) for value in values)
    cut = len(ordered) // 4
    kept = ordered[cut : len(ordered) - cut]
    total = 0.0
    for value in kept:
        total += value
    return total / len(kept)


def samples(n: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(n + 100 * ties)
    if ties:  # few distinct values, so equal samples straddle the cut
        return rng.integers(0, 3, size=n).astype(np.float64)
    return rng.standard_normal(n) * 100.0


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", range(1, 13))
def test_iqm_drops_a_quarter_of_the_samples_at_each_end(n, ties):
    values = samples(n, ties)
    assert interquartile_mean(values) == pytest.approx(reference_iqm(values), rel=1e-12, abs=1e-12)
    assert interquartile_mean(values) == pytest.approx(
        scipy.stats.trim_mean(values, 0.25), rel=1e-12, abs=1e-12
    )


def test_iqm_at_small_counts():
    assert interquartile_mean([10, 20, 40]) == pytest.approx(70 / 3)  # under 4: the plain mean
    assert interquartile_mean([7.0]) == 7.0
    assert interquartile_mean([0, 1, 2, 3, 100]) == pytest.approx(2.0)  # 5: one off each end
    assert interquartile_mean([0, 1, 2, 3, 4, 100, 200]) == pytest.approx(22.0)  # 7: still one


def test_iqm_flattens_like_trim_mean_with_axis_none():
    values = np.random.default_rng(0).standard_normal((3, 5))
    assert interquartile_mean(values) == pytest.approx(
        scipy.stats.trim_mean(values, 0.25, axis=None), rel=1e-12
    )


def test_iqm_of_nothing_is_refused():
    with pytest.raises(ValueError, match="at least one value"):
        interquartile_mean([])


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 10])
def test_bootstrap_interval_holds_the_iqm_and_repeats_with_its_seed(n):
    values = samples(n, ties=False)
    low, high = bootstrap_interval(values, seed=3)
    assert low <= interquartile_mean(values) <= high
    assert bootstrap_interval(values, seed=3) == (low, high)
    # The vectorised IQM path gives what calling the statistic on each resample gives.
    one_by_one = bootstrap_interval(values, statistic=lambda x: interquartile_mean(x), seed=3)
    assert one_by_one == pytest.approx((low, high), rel=1e-12)


def test_bootstrap_interval_widens_with_confidence_and_depends_on_the_seed():
    values = samples(8, ties=False)
    low_90, high_90 = bootstrap_interval(values, confidence=0.9)
    low_99, high_99 = bootstrap_interval(values, confidence=0.99)
    assert low_99 <= low_90 <= high_90 <= high_99
    assert bootstrap_interval(values, seed=0) != bootstrap_interval(values, seed=1)
