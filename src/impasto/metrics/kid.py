"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy between two feature sets under the polynomial
kernel ``k(x, y) = (gamma x.y + coef0)^degree`` (``gamma = 1/D``, ``coef0 = 1``, ``degree = 3``
by default), estimated without bias on random subsets. Unlike FID it has an unbiased estimator,
so it can be compared across sample sizes and is ~0 (possibly slightly negative) for equal
distributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impasto.errors import InputError
from impasto.metrics._utils import as_matrix, need_samples, positive_int, same_dim

__all__ = ["kid", "mmd2_unbiased", "polynomial_kernel"]


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
    """``(gamma x.y + coef0)^degree`` for rows of ``x`` ``(N, D)`` and ``y`` ``(M, D)``: ``(N, M)``.
    ``gamma`` defaults to ``1/D``."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices ``(m, m)``, ``(n, n)``, ``(m, n)`` (m, n >= 2):
    within-set means exclude the diagonal, the cross term uses all pairs."""
    m, n = kxx.shape[0], kyy.shape[0]
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def kid(
    feats1: Any,
    feats2: Any,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between feature sets ``(N1, D)`` and ``(N2, D)`` (numpy arrays or tensors).

    Draws ``num_subsets`` pairs of subsets of ``min(subset_size, N1, N2)`` samples each (without
    replacement, from a generator seeded with ``seed``) and returns the mean and the standard
    deviation (``ddof=0``) of the unbiased MMD^2 over them. With fewer samples than
    ``subset_size`` every subset is the whole set and the std is 0. Needs >= 2 samples per set.
    """
    x = as_matrix(feats1, "feats1")
    y = as_matrix(feats2, "feats2")
    same_dim(x, y, "feats1", "feats2")
    need_samples(x.shape[0], 2, "feats1", "for KID")
    need_samples(y.shape[0], 2, "feats2", "for KID")
    num_subsets = positive_int(num_subsets, "num_subsets")
    subset_size = positive_int(subset_size, "subset_size", minimum=2)
    degree = positive_int(degree, "degree")
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    elif not gamma > 0:
        raise InputError(f"gamma must be > 0, got {gamma!r}")
    m = min(subset_size, x.shape[0], y.shape[0])

    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for i in range(num_subsets):
        xs = x[rng.choice(x.shape[0], m, replace=False)]
        ys = y[rng.choice(y.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(
            polynomial_kernel(xs, xs, degree, gamma, coef0),
            polynomial_kernel(ys, ys, degree, gamma, coef0),
            polynomial_kernel(xs, ys, degree, gamma, coef0),
        )
    return float(values.mean()), float(values.std())
