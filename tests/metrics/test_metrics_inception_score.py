"""Inception Score: its extreme values 1 and C, and a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from impasto.errors import InputError
from impasto.metrics.inception_score import inception_score


def test_uniform_predictions_score_one():
    mean, std = inception_score(np.full((100, 10), 0.1), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-6)
    assert std < 1e-6


def test_confident_even_predictions_score_the_number_of_classes():
    labels = np.arange(1000) % 10  # each split of 100 holds 10 of every class
    probs = np.eye(10)[labels]
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(10.0, abs=1e-3)
    assert std < 1e-6
    # The same as logits (softmax of 40 * one-hot is one-hot within e^-40).
    mean_logits, _ = inception_score(torch.from_numpy(40.0 * probs), splits=10, logits=True)
    assert mean_logits == pytest.approx(10.0, abs=1e-3)


def test_hand_computed_two_class_case():
    # Half the samples (1, 0), half (1/2, 1/2): p(y) = (3/4, 1/4);
    # KL = log(4/3) and 1/2 log(2/3) + 1/2 log 2; IS = exp of their mean.
    probs = np.array([[1.0, 0.0], [0.5, 0.5]] * 4)
    kl = (math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2)) / 2
    mean, std = inception_score(probs, splits=1)
    assert mean == pytest.approx(math.exp(kl), rel=1e-12)
    assert std == 0.0
    # Logits whose softmax is those probabilities give the same score.
    mean_logits, _ = inception_score(np.log(np.clip(probs, 1e-300, None)), splits=1, logits=True)
    assert mean_logits == pytest.approx(math.exp(kl), rel=1e-9)


def test_split_spread_is_reported():
    # First split confident and even (IS 2), second uniform (IS 1): mean 1.5, std 0.5.
    probs = np.concatenate([np.eye(2)[[0, 1, 0, 1]], np.full((4, 2), 0.5)])
    mean, std = inception_score(probs, splits=2)
    assert (mean, std) == (pytest.approx(1.5), pytest.approx(0.5))


def test_bad_inputs():
    with pytest.raises(InputError, match="at least 10 samples.*got 5"):
        inception_score(np.full((5, 3), 1 / 3), splits=10)
    with pytest.raises(InputError, match="sum to 1.*logits=True"):
        inception_score(np.ones((10, 3)), splits=2)
    with pytest.raises(InputError, match="negative"):
        inception_score(np.array([[1.5, -0.5]] * 4), splits=2)
