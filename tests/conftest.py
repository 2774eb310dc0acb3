"""Shared fixtures: a tiny random VGG for fast unit tests, and the real weights when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from impasto.nets import VGG19Features

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
TINY_WIDTHS = (4, 8, 8, 8, 8)


def tiny_vgg(layers=CONTENT_LAYERS + STYLE_LAYERS, seed: int = 0, pooling: str = "max"):
    """A VGG19 with 4-8 channels and seeded random weights: fast, for unit tests."""
    torch.manual_seed(seed)
    net = VGG19Features(layers, weights=None, widths=TINY_WIDTHS, pooling=pooling)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    return net


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # CI and every developer machine have shared/ beside the repo: a missing folder is an
    # error, not a reason to skip.
    assert (SHARED / "styletransfer").is_dir(), f"test data missing: {SHARED}"
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """Runs a module on one torch thread: its tensors are tiny, so thread hand-off costs more
    than it saves, and far more on a loaded 2-core machine. Restores the count afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
