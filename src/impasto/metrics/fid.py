"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium").

The FID is the Fréchet (2-Wasserstein) distance between two Gaussians fitted to feature sets::

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

Features are whatever an extractor gives, ``(N, D)``; the classic FID uses the 2048-d pool
features of an ImageNet Inception-v3. Statistics are kept in float64.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from impasto._fileutil import _umask, reason
from impasto.errors import InputError
from impasto.metrics._utils import as_matrix, need_samples

__all__ = ["FeatureStats", "fid", "frechet_distance"]

#: Relative size of the imaginary part of sqrtm(S1 S2) (against its largest magnitude) above
#: which the result is rejected instead of silently dropping the imaginary part.
IMAG_TOLERANCE = 1e-3

_KEYS = ("mu", "sigma", "n")


@dataclass
class FeatureStats:
    """Mean ``mu`` (float64 ``(D,)``), covariance ``sigma`` (float64 ``(D, D)``, unbiased, i.e.
    divided by ``n - 1``) and sample count ``n`` of a feature set, plus free-form ``meta``
    (JSON-serialisable, e.g. ``{"extractor": "inception-v3-pool3"}``)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        self.n = int(self.n)
        _check_stats(self.mu, self.sigma, "mu", "sigma")

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, feats: Any, meta: dict[str, Any] | None = None) -> FeatureStats:
        """Statistics of ``feats``, an ``(N, D)`` numpy array or tensor with ``N >= 2``."""
        x = as_matrix(feats, "features")
        need_samples(x.shape[0], 2, "features", "for a covariance")
        mu = x.mean(axis=0)
        sigma = np.atleast_2d(np.cov(x, rowvar=False))
        return cls(mu=mu, sigma=sigma, n=x.shape[0], meta=dict(meta or {}))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the statistics to ``path`` as ``.npz`` (keys ``mu``, ``sigma``, ``n``, ``meta``,
        the last a JSON string). Atomic: a temporary file in the same folder is renamed over
        ``path``, so readers never see a half-written file. Returns the path."""
        path = Path(path)
        try:
            meta = json.dumps(self.meta, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise InputError(f"stats meta is not JSON-serialisable: {e}") from e
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise InputError(f"cannot write stats file {path}: {e.strerror or e}") from e
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n), meta=np.str_(meta))
                f.flush()
                os.fsync(f.fileno())
                if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the usual 0666 & ~umask
                    os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        """Read statistics written by :meth:`save`; :class:`InputError` names the file if it is
        missing, not an ``.npz``, or lacks/mangles the ``mu``, ``sigma``, ``n`` keys."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"stats file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _KEYS if k not in data.files]
                if missing:
                    raise InputError(
                        f"stats file {path} lacks key(s) {', '.join(missing)} "
                        f"(has: {', '.join(data.files) or 'none'})"
                    )
                mu = np.array(data["mu"], dtype=np.float64)
                sigma = np.array(data["sigma"], dtype=np.float64)
                n = data["n"]
                meta_raw = str(data["meta"]) if "meta" in data.files else "{}"
        except InputError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise InputError(f"stats file {path} is not a valid .npz: {reason(e)}") from None
        if n.shape != () or not np.issubdtype(n.dtype, np.integer):
            raise InputError(f"stats file {path}: 'n' must be an integer scalar")
        try:
            meta = json.loads(meta_raw)
        except json.JSONDecodeError as e:
            raise InputError(f"stats file {path}: 'meta' is not valid JSON") from e
        try:
            return cls(mu=mu, sigma=sigma, n=int(n), meta=meta if isinstance(meta, dict) else {})
        except InputError as e:
            raise InputError(f"stats file {path}: {e}") from e


def _check_stats(mu: np.ndarray, sigma: np.ndarray, name_mu: str, name_sigma: str) -> None:
    if mu.ndim != 1:
        raise InputError(f"{name_mu} must be 1-D (D,), got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise InputError(f"{name_sigma} must have shape ({d}, {d}), got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"{name_mu}/{name_sigma} contain NaN or infinite values")


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """Principal square root of ``a`` (scipy.linalg.sqrtm), with scipy's warnings silenced:
    non-finite results are handled by the caller."""
    from scipy import linalg

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(linalg.sqrtm(a))


def _large_imaginary(covmean: np.ndarray) -> tuple[float, float] | None:
    """``(imag, scale)`` if ``covmean`` has an imaginary part above IMAG_TOLERANCE of its
    largest magnitude, else None."""
    if not np.iscomplexobj(covmean):
        return None
    scale = float(np.abs(covmean).max())
    imag = float(np.abs(covmean.imag).max())
    if imag > IMAG_TOLERANCE * max(scale, np.finfo(np.float64).tiny):
        return imag, scale
    return None


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    covmean = _sqrtm(sigma1 @ sigma2)
    finite = bool(np.isfinite(covmean).all())
    if not finite or _large_imaginary(covmean) is not None:
        # A singular product (fewer samples than dimensions, features that never vary): its
        # square root is ill-conditioned and comes out non-finite or with rounding noise in
        # the imaginary part. eps*I on both covariances makes it well-conditioned.
        why = "is not finite" if not finite else "has a large imaginary part"
        warnings.warn(
            f"FID: sqrtm(S1 S2) {why} (singular product); retrying with {eps:g}*I "
            "added to both covariances",
            RuntimeWarning,
            stacklevel=3,
        )
        offset = eps * np.eye(sigma1.shape[0])
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise InputError(
                f"FID: matrix square root is not finite even with eps={eps:g}; "
                "are the covariances symmetric positive semi-definite?"
            )
    large = _large_imaginary(covmean)
    if large is not None:
        raise InputError(
            f"FID: sqrtm(S1 S2) has a large imaginary component ({large[0]:.3g} vs max "
            f"{large[1]:.3g}); are the covariances positive semi-definite?"
        )
    return float(np.trace(covmean.real))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    # Tr sqrt(S1 S2) = Tr sqrt(A S2 A) with A = S1^(1/2): S1 S2 is similar to the symmetric PSD
    # matrix A S2 A, so the trace is the sum of square roots of its (clipped) eigenvalues.
    a = _psd_sqrt(sigma1)
    m = a @ sigma2 @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(
    mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6, method: str = "sqrtm"
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (means ``(D,)``, covariances
    ``(D, D)``, symmetric PSD).

    ``method="sqrtm"`` (default, as the reference FID code): ``scipy.linalg.sqrtm(S1 S2)``; if
    that is not finite or has an imaginary part above 1e-3 of its largest magnitude (a
    singular product: fewer samples than dimensions, or features that never vary, such as dead
    ReLU units), ``eps * I`` is added to both covariances and it is retried, with a
    ``RuntimeWarning``. ``eps`` (default 1e-6) is small against the variance
    of typical features (Inception pool features have variances ~1e-2..1), so it shifts the
    distance by about ``eps * D`` at most. Imaginary parts from rounding are dropped; an
    imaginary part larger than 1e-3 of the largest magnitude even after the retry (a matrix
    that is not positive semi-definite) raises :class:`InputError`.

    ``method="eigh"``: a symmetric eigenvalue route, ``Tr sqrt(S1^(1/2) S2 S1^(1/2))``, which
    is always finite and gives the same value for PSD inputs.

    Rounding can give a tiny negative number for equal distributions; the result is clipped at 0.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    _check_stats(mu1, sigma1, "mu1", "sigma1")
    _check_stats(mu2, sigma2, "mu2", "sigma2")
    if mu1.shape != mu2.shape:
        raise InputError(f"dimensions differ: mu1 has {mu1.shape[0]}, mu2 has {mu2.shape[0]}")
    if not eps >= 0:
        raise InputError(f"eps must be >= 0, got {eps!r}")
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    else:
        raise InputError(f"method must be 'sqrtm' or 'eigh', got {method!r}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fid(feats1: Any, feats2: Any, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """FID between two feature sets: ``(N, D)`` arrays/tensors (N >= 2) or
    :class:`FeatureStats`, in any mix. See :func:`frechet_distance`."""
    s1 = feats1 if isinstance(feats1, FeatureStats) else FeatureStats.from_features(feats1)
    s2 = feats2 if isinstance(feats2, FeatureStats) else FeatureStats.from_features(feats2)
    if s1.dim != s2.dim:
        raise InputError(f"feature dimensions differ: first has {s1.dim}, second has {s2.dim}")
    return frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, eps=eps, method=method)
