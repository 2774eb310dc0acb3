"""Input checks shared by the metrics: turn arrays/tensors into validated float64 matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impasto.errors import InputError


def as_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array, tensor or nested list) as a finite float64 ``(N, D)`` numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: expected a numeric (N, D) array, got {type(x).__name__}") from e
    if a.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (N, D) array, got shape {tuple(a.shape)}")
    if a.shape[1] == 0:
        raise InputError(f"{name}: features have 0 dimensions")
    if not np.isfinite(a).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return a


def need_samples(n: int, needed: int, name: str, why: str = "") -> None:
    """Raise :class:`InputError` unless ``n >= needed``."""
    if n < needed:
        extra = f" ({why})" if why else ""
        raise InputError(f"{name}: needs at least {needed} samples{extra}, got {n}")


def same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"feature dimensions differ: {name_a} has {a.shape[1]}, {name_b} has {b.shape[1]}"
        )


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)

