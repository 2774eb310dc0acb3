"""FID: closed forms for Gaussians, the eps fallback, and the stats file."""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from impasto.errors import InputError
from impasto.metrics.fid import FeatureStats, fid, frechet_distance

# The package re-exports the function `fid`, which shadows the submodule attribute.
fid_mod = importlib.import_module("impasto.metrics.fid")


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def _direct_fid(mu1, s1, mu2, s2) -> float:
    # Symmetric form Tr sqrt(S1^1/2 S2 S1^1/2), via scipy on the known matrices.
    r1 = scipy.linalg.sqrtm(s1).real
    cross = scipy.linalg.sqrtm(r1 @ s2 @ r1).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(2000, 16))
    assert abs(fid(x, x)) < 1e-6
    assert abs(fid(x, x, method="eigh")) < 1e-6


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_diagonal_gaussians_match_closed_form(method):
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    # ||mu1 - mu2||^2 = 5.25; sum (sqrt a - sqrt b)^2 = 4 + 1 + 0 + 0.5.
    expected = 5.25 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert expected == pytest.approx(10.75)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_commuting_non_diagonal_covariances(method):
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: the trace term is still sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, method=method)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_general_covariances_match_direct_formula(method):
    rng = np.random.default_rng(2)
    s1, s2 = _random_spd(rng, 12), _random_spd(rng, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    expected = _direct_fid(mu1, s1, mu2, s2)
    assert expected > 1.0
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-9)


def test_fid_from_large_samples_approximates_the_exact_value():
    rng = np.random.default_rng(3)
    s1, s2 = _random_spd(rng, 4), 2.0 * _random_spd(rng, 4)
    mu1, mu2 = np.zeros(4), np.array([1.0, -1.0, 0.5, 0.0])
    exact = frechet_distance(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, size=20000)
    y = rng.multivariate_normal(mu2, s2, size=20000)
    assert fid(x, y) == pytest.approx(exact, rel=0.05)


def test_tensors_and_stats_are_accepted():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(100, 6)), rng.normal(size=(80, 6)) + 0.5
    ref = fid(x, y)
    assert fid(torch.from_numpy(x).float(), y) == pytest.approx(ref, rel=1e-5)
    assert fid(FeatureStats.from_features(x), y) == pytest.approx(ref, rel=1e-12)


def test_sqrtm_and_eigh_routes_agree_on_sample_covariances():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 32)), rng.normal(size=(300, 32)) * 1.3 + 0.1
    assert fid(x, y) == pytest.approx(fid(x, y, method="eigh"), rel=1e-8)


def test_fewer_samples_than_dimensions_gives_finite_non_negative_fid():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(10, 64))
    value = fid(x, y)
    assert math.isfinite(value) and value >= 0
    assert value == pytest.approx(fid(x, y, method="eigh"), rel=1e-4)
    assert fid(x, x) < 1e-6


def test_non_finite_sqrtm_retries_with_eps_on_the_diagonal(monkeypatch):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(10, 64)) + 0.2
    s1, s2 = FeatureStats.from_features(x), FeatureStats.from_features(y)
    real_sqrtm = fid_mod._sqrtm
    calls = []

    def flaky_sqrtm(a):  # like older scipy on a singular product: NaNs the first time
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fid_mod, "_sqrtm", flaky_sqrtm)
    eps = 1e-6
    with pytest.warns(RuntimeWarning, match="1e-06"):
        value = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, eps=eps)
    assert len(calls) == 2
    offset = eps * np.eye(64)
    np.testing.assert_allclose(calls[1], (s1.sigma + offset) @ (s2.sigma + offset), rtol=1e-12)
    assert math.isfinite(value) and value >= 0
    exact = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, method="eigh")
    assert value == pytest.approx(exact, rel=1e-3)


def test_still_non_finite_after_eps_raises(monkeypatch):
    monkeypatch.setattr(fid_mod, "_sqrtm", lambda a: np.full_like(a, np.inf))
    with pytest.warns(RuntimeWarning), pytest.raises(InputError, match="not finite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_large_imaginary_part_is_rejected():
    # A "covariance" with a negative eigenvalue: sqrtm(diag(1, -1)) = diag(1, i); the eps
    # retry cannot help, so it is rejected after it.
    with pytest.warns(RuntimeWarning, match="retrying"), pytest.raises(InputError,
                                                                     match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="at least 2 samples.*got 1"):
        FeatureStats.from_features(np.ones((1, 4)))
    with pytest.raises(InputError, match="2-D"):
        FeatureStats.from_features(np.ones(4))
    with pytest.raises(InputError, match="dimensions differ"):
        fid(np.random.rand(5, 3), np.random.rand(5, 4))
    with pytest.raises(InputError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


def test_stats_round_trip(tmp_path):
    x = np.random.default_rng(8).normal(size=(50, 5))
    stats = FeatureStats.from_features(x, meta={"extractor": "toy", "size": 64})
    old = os.umask(0o022)
    try:
        path = stats.save(tmp_path / "real.npz")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.npz"]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o644  # as every other output, not mkstemp's 0600
    with np.load(path) as data:
        assert set(data.files) == {"mu", "sigma", "n", "meta"}
        assert json.loads(str(data["meta"])) == {"extractor": "toy", "size": 64}
    back = FeatureStats.load(path)
    np.testing.assert_array_equal(back.mu, x.mean(0))
    np.testing.assert_allclose(back.sigma, np.cov(x, rowvar=False), rtol=1e-12)
    assert back.n == 50 and back.meta == {"extractor": "toy", "size": 64}
    assert back.mu.dtype == np.float64 and back.sigma.dtype == np.float64
    # Overwriting an existing file works (os.replace).
    FeatureStats.from_features(x[:10]).save(path)
    assert FeatureStats.load(path).n == 10


def test_corrupt_missing_and_wrong_stats_files(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(InputError, match="broken.npz"):
        FeatureStats.load(bad)
    with pytest.raises(InputError, match="not found.*nothere.npz"):
        FeatureStats.load(tmp_path / "nothere.npz")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mean=np.zeros(3), cov=np.eye(3))
    with pytest.raises(InputError, match="wrong.npz.*lacks key.*mu, sigma, n"):
        FeatureStats.load(wrong)
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, mu=np.zeros(3), sigma=np.eye(4), n=np.int64(5))
    with pytest.raises(InputError, match="shapes.npz.*sigma"):
        FeatureStats.load(shapes)


def test_sparse_relu_features_get_the_eps_retry():
    # Sparse ReLU features (most units zero on most images, as VGG's deep layers on small
    # images) and fewer samples than dimensions make S1 S2 singular; scipy's sqrtm then returns
    # a large imaginary part. The eps retry gives the always-stable eigh route's value instead
    # of an error.
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(24, 160)) - 1.5, 0.0) * 10
    y = np.maximum(rng.normal(size=(24, 160)) - 1.3, 0.0) * 10
    s1, s2 = FeatureStats.from_features(x), FeatureStats.from_features(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = scipy.linalg.sqrtm(s1.sigma @ s2.sigma)
    assert np.abs(raw.imag).max() > 10 * fid_mod.IMAG_TOLERANCE * np.abs(raw).max()  # the trap
    with pytest.warns(RuntimeWarning, match="imaginary.*1e-06"):
        value = fid(s1, s2)
    assert value == pytest.approx(fid(s1, s2, method="eigh"), rel=1e-4)
