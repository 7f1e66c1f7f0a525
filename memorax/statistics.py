"""Honest summary statistics across seeds: interquartile mean with a bootstrap interval."""

import numpy as np


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50% of ``values`` (1-D), trimming a quarter of the samples at each end
    (fractionally, so any sample count works, as in Agarwal et al. 2021)."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = values.size
    if n == 0:
        raise ValueError("interquartile_mean needs at least one value")
    # Each sample i covers the quantile interval [i/n, (i+1)/n]; weight its overlap with [1/4, 3/4].
    lower = np.arange(n) / n
    weights = np.clip(np.minimum(lower + 1 / n, 0.75) - np.maximum(lower, 0.25), 0.0, None)
    return float(np.sum(weights * values) / np.sum(weights))


def bootstrap_interval(
    values: np.ndarray,
    statistic=interquartile_mean,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over resampled seeds."""
    values = np.asarray(values, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    samples = rng.choice(values, size=(num_resamples, values.size), replace=True)
    estimates = np.array([statistic(sample) for sample in samples])
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return float(low), float(high)
