"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models").

Each set's manifold is the union of balls around its samples, the radius of a ball being the
distance to the sample's k-th nearest neighbour in the same set (itself excluded). Precision is
the fraction of generated samples inside the real manifold, recall the fraction of real samples
inside the generated one. Distances are Euclidean, computed in float64 blocks of at most
``batch_size x batch_size``, so memory stays bounded whatever the set sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impasto.metrics._utils import as_matrix, need_samples, positive_int, same_dim

__all__ = ["knn_radii", "precision_recall"]


def _as_tensor(a: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
    return torch.from_numpy(a).to(device or "cpu", torch.float64)


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).clamp_min_(0.0)


def knn_radii(feats: Any, k: int = 3, batch_size: int = 1024, device: Any = None) -> np.ndarray:
    """Distance of each row of ``feats`` ``(N, D)`` to its k-th nearest other row: ``(N,)``.
    Needs ``N > k``."""
    x = as_matrix(feats, "features")
    k = positive_int(k, "k")
    need_samples(x.shape[0], k + 1, "features", f"more than k={k}")
    return _knn_radii(_as_tensor(x, device), k, positive_int(batch_size, "batch_size")).numpy()


def _knn_radii(x: torch.Tensor, k: int, bs: int) -> torch.Tensor:
    n = x.shape[0]
    radii = torch.empty(n, dtype=x.dtype, device=x.device)
    for i in range(0, n, bs):
        rows = x[i : i + bs]
        # Running k+1 smallest distances (the sample itself is one of them, at distance 0).
        best = torch.full((rows.shape[0], 0), float("inf"), dtype=x.dtype, device=x.device)
        for j in range(0, n, bs):
            d = torch.cat([best, _cdist(rows, x[j : j + bs])], dim=1)
            best = torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values
        radii[i : i + rows.shape[0]] = best[:, k]
    return radii.cpu()


def precision_recall(
    real: Any, fake: Any, k: int = 3, batch_size: int = 1024, device: Any = None
) -> dict[str, float]:
    """Improved precision and recall of ``fake`` ``(M, D)`` against ``real`` ``(N, D)``
    (numpy arrays or tensors; both need more than ``k`` samples).

    Returns ``{"precision": p, "recall": r}``, both in [0, 1]. A point on a ball's boundary
    counts as inside. ``batch_size`` bounds the distance blocks (``batch_size^2`` float64).
    """
    r = as_matrix(real, "real")
    f = as_matrix(fake, "fake")
    same_dim(r, f, "real", "fake")
    k = positive_int(k, "k")
    bs = positive_int(batch_size, "batch_size")
    need_samples(r.shape[0], k + 1, "real", f"more than k={k}")
    need_samples(f.shape[0], k + 1, "fake", f"more than k={k}")

    rt, ft = _as_tensor(r, device), _as_tensor(f, device)
    r_rad = _knn_radii(rt, k, bs).to(rt.device)
    f_rad = _knn_radii(ft, k, bs).to(ft.device)

    fake_in = torch.zeros(ft.shape[0], dtype=torch.bool, device=ft.device)
    real_in = torch.zeros(rt.shape[0], dtype=torch.bool, device=rt.device)
    for i in range(0, ft.shape[0], bs):
        fi = slice(i, i + bs)
        for j in range(0, rt.shape[0], bs):
            rj = slice(j, j + bs)
            d = _cdist(ft[fi], rt[rj])  # (fake block, real block)
            fake_in[fi] |= (d <= r_rad[rj][None, :]).any(dim=1)
            real_in[rj] |= (d <= f_rad[fi][:, None]).any(dim=0)
    return {
        "precision": float(fake_in.double().mean()),
        "recall": float(real_in.double().mean()),
    }
