"""Improved precision and recall: k-NN radii against brute force, and known geometries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.errors import InputError
from impasto.metrics.prdc import knn_radii, precision_recall


def test_knn_radii_match_brute_force_in_small_blocks():
    x = np.random.default_rng(0).normal(size=(50, 4))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    expected = np.sort(d, axis=1)[:, 3]  # column 0 is the point itself
    np.testing.assert_allclose(knn_radii(x, k=3, batch_size=7), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(knn_radii(x, k=1), np.sort(d, axis=1)[:, 1], rtol=1e-9)


def test_set_against_itself_is_one():
    x = np.random.default_rng(1).normal(size=(300, 8))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}


def test_far_apart_clusters_are_zero():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) + 50.0
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


def test_half_overlapping_squares():
    # Unit squares shifted by half a side: about half of each lies in the other.
    rng = np.random.default_rng(3)
    real = rng.uniform(size=(1000, 2))
    fake = rng.uniform(size=(1000, 2)) + [0.5, 0.0]
    pr = precision_recall(real, fake)
    assert 0.45 < pr["precision"] < 0.6
    assert 0.45 < pr["recall"] < 0.6


def test_mode_dropping_keeps_precision_and_halves_recall():
    # Fakes cover only the left half of the real square, at the same density.
    rng = np.random.default_rng(4)
    real = rng.uniform(size=(1000, 2))
    fake = rng.uniform(size=(500, 2)) * [0.5, 1.0]
    pr = precision_recall(real, torch.from_numpy(fake).float())
    assert pr["precision"] > 0.95
    assert 0.45 < pr["recall"] < 0.6
    assert precision_recall(real, fake, batch_size=37) == precision_recall(real, fake)


def test_too_few_samples():
    x = np.zeros((10, 3))
    with pytest.raises(InputError, match="fake: needs at least 4 samples.*got 3"):
        precision_recall(x, np.zeros((3, 3)), k=3)
    with pytest.raises(InputError, match="real: needs at least 6 samples.*got 5"):
        precision_recall(np.zeros((5, 3)), x, k=5)
    with pytest.raises(InputError, match="dimensions differ"):
        precision_recall(x, np.zeros((10, 4)))
