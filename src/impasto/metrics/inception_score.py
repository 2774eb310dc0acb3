"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs").

``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean prediction, computed on each of
``splits`` parts of the samples; the mean and std over the parts are reported. It ranges from
1 (every prediction equal) to C (confident predictions spread evenly over the C classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impasto.errors import InputError
from impasto.metrics._utils import as_matrix, positive_int

__all__ = ["inception_score"]

_SUM_TOLERANCE = 1e-3


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def inception_score(
    probs: Any, splits: int = 10, logits: bool = False
) -> tuple[float, float]:
    """Inception Score of classifier outputs ``(N, C)`` (numpy array or tensor).

    ``probs`` are softmax probabilities (rows >= 0 summing to 1, checked to 1e-3 and then
    renormalised), or raw logits with ``logits=True``. The N samples are cut in ``splits``
    contiguous parts of near-equal size (``np.array_split``, so none is dropped); returns the
    mean and std (``ddof=0``) of the per-part scores. Needs ``N >= splits``.
    """
    p = as_matrix(probs, "probs")
    splits = positive_int(splits, "splits")
    n = p.shape[0]
    if n < splits:
        raise InputError(f"probs: needs at least {splits} samples for {splits} splits, got {n}")
    if logits:
        logp = _log_softmax(p)
        p = np.exp(logp)
    else:
        if (p < 0).any():
            raise InputError("probs has negative entries; pass logits=True for raw logits")
        sums = p.sum(axis=1)
        worst = float(np.abs(sums - 1.0).max())
        if worst > _SUM_TOLERANCE:
            raise InputError(
                f"probs rows must sum to 1 (off by up to {worst:.3g}); "
                "pass logits=True for raw logits"
            )
        p = p / sums[:, None]
        with np.errstate(divide="ignore"):
            logp = np.log(p)

    scores = []
    for idx in np.array_split(np.arange(n), splits):
        part, logpart = p[idx], logp[idx]
        py = part.mean(axis=0)
        # p * (log p - log py), with 0 * log 0 = 0 (py > 0 wherever some p > 0).
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (logpart - np.log(py)), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    scores_arr = np.asarray(scores)
    return float(scores_arr.mean()), float(scores_arr.std())
