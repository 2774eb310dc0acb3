"""KID: the unbiased MMD^2 estimator, checked against brute force and known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.errors import InputError
from impasto.metrics.kid import kid


def _brute_force_mmd2(x, y, degree=3, gamma=None, coef0=1.0):
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k = lambda a, b: (gamma * float(a @ b) + coef0) ** degree  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_whole_set_estimate_equals_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3
    mean, std = kid(x, y, num_subsets=3)  # subset_size clipped to 7: each subset is everything
    assert mean == pytest.approx(_brute_force_mmd2(x, y), rel=1e-10)
    assert std < 1e-12
    mean, _ = kid(x, y, num_subsets=1, degree=2, gamma=0.5, coef0=2.0)
    assert mean == pytest.approx(_brute_force_mmd2(x, y, 2, 0.5, 2.0), rel=1e-10)


def test_linear_kernel_estimates_squared_mean_difference():
    # With k(x, y) = x.y, the population MMD^2 is ||mu_x - mu_y||^2 (here 16 * 0.25 = 4).
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16)) + 0.5
    mean, _ = kid(x, y, num_subsets=1, subset_size=2000, degree=1, gamma=1.0, coef0=0.0)
    assert mean == pytest.approx(4.0, rel=0.05)


def test_same_distribution_is_about_zero_and_a_shift_is_positive():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    mean, std = kid(x, y, num_subsets=50, subset_size=200)
    assert abs(mean) < 3 * std + 1e-3
    shifted_mean, shifted_std = kid(x, y + 0.5, num_subsets=50, subset_size=200)
    assert shifted_mean > 0.5 and shifted_mean > 10 * shifted_std
    assert shifted_mean > 20 * abs(mean)


def test_works_with_50_samples_and_tensors():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    same, _ = kid(x, y)
    shifted, _ = kid(torch.from_numpy(x), torch.from_numpy(y + 1.0))
    assert abs(same) < 0.25 and shifted > 3.0


def test_seeded_and_deterministic():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(120, 8)), rng.normal(size=(100, 8)) + 0.2
    a = kid(x, y, num_subsets=10, subset_size=30, seed=5)
    assert kid(x, y, num_subsets=10, subset_size=30, seed=5) == a
    assert kid(x, y, num_subsets=10, subset_size=30, seed=6) != a


def test_bad_inputs():
    x = np.zeros((10, 4))
    with pytest.raises(InputError, match="at least 2 samples.*got 1"):
        kid(x, np.zeros((1, 4)))
    with pytest.raises(InputError, match="dimensions differ"):
        kid(x, np.zeros((10, 5)))
    with pytest.raises(InputError, match="subset_size"):
        kid(x, x, subset_size=1)
    with pytest.raises(InputError, match="NaN"):
        kid(x, np.full((3, 4), np.nan))
