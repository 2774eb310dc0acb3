"""Multi-scale sliced Wasserstein distance: pyramid, projections, and behaviour on image sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from impasto.errors import InputError
from impasto.metrics.swd import (
    gaussian_pyramid,
    laplacian_pyramid,
    reconstruct_laplacian,
    sliced_wasserstein,
    swd,
)

FAST = dict(num_projections=128, num_repeats=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """Smooth random colour fields plus a little fine noise, in [0.15, 0.85]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x = x + 0.1 * torch.rand(n, 3, size, size, generator=g)
    return (x * 0.6 + 0.15).clamp(0, 1)


def test_pyramid_levels_and_reconstruction():
    x = _images(3, 0)
    bands = laplacian_pyramid(x)
    assert [tuple(b.shape[-2:]) for b in bands] == [(64, 64), (32, 32), (16, 16)]
    torch.testing.assert_close(bands[-1], gaussian_pyramid(x)[-1])
    assert (reconstruct_laplacian(bands) - x).abs().max() < 1e-5
    assert [tuple(b.shape[-2:]) for b in laplacian_pyramid(torch.rand(1, 1, 64, 32))] == [
        (64, 32),
        (32, 16),
    ]
    assert len(laplacian_pyramid(torch.rand(1, 1, 40, 40))) == 2  # 40, 20 (10 < 16)


def test_bands_of_a_constant_image_are_zero():
    # Blur and upsampling keep the mean: only the coarsest level carries a flat colour.
    bands = laplacian_pyramid(torch.full((1, 3, 64, 64), 0.5))
    for band in bands[:-1]:
        assert band.abs().max() < 1e-6
    torch.testing.assert_close(bands[-1], torch.full((1, 3, 16, 16), 0.5))


def test_sliced_wasserstein_of_a_translation():
    # Projections of a translated set move by theta.t, so each 1-D distance is |theta.t|, and
    # for random unit directions in 2-D, E|cos| = 2 / pi.
    a = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3.0, 4.0])
    value = sliced_wasserstein(a, a + t, num_projections=4096, num_repeats=1, rng=0)
    assert value == pytest.approx(5.0 * 2 / math.pi, rel=0.03)
    assert sliced_wasserstein(a, a, rng=0) == 0.0


def test_identical_sets_are_zero_at_every_level():
    x = _images(4, 1)
    result = swd(x, x.clone())
    assert list(result) == [64, 32, 16, "avg"]
    assert all(abs(v) < 1e-9 for v in result.values())


def test_distance_grows_with_a_colour_shift():
    base = _images(8, 2)
    cast = torch.randn(8, 3, 1, 1, generator=torch.Generator().manual_seed(3))
    avgs = [swd(base, (base + s * cast).clamp(0, 1), **FAST)["avg"] for s in (0.05, 0.1, 0.2)]
    assert 1.0 < avgs[0] < avgs[1] < avgs[2]
    other = swd(base, _images(8, 4), **FAST)
    assert all(other[level] > 10 for level in (64, 32, 16))


def test_global_affine_colour_change_is_normalised_away():
    base = _images(8, 5)
    assert swd(base, base * 0.5 + 0.2, **FAST)["avg"] < 0.05


def test_uint8_input_seed_and_unequal_counts():
    x = (_images(6, 6) * 255).round().to(torch.uint8)
    y = (_images(4, 7) * 255).round().to(torch.uint8)
    as_uint8 = swd(x, y, seed=1, **FAST)
    assert as_uint8 == swd(x.float() / 255, y.numpy().astype(np.float32) / 255, seed=1, **FAST)
    assert as_uint8 != swd(x, y, seed=2, **FAST)
    assert list(as_uint8) == [64, 32, 16, "avg"] and as_uint8["avg"] > 1.0


def test_bad_inputs():
    with pytest.raises(InputError, match="3x64x64.*3x32x32"):
        swd(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32))
    with pytest.raises(InputError, match="at least 16x16, got 8x8"):
        swd(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        swd(torch.rand(3, 64, 64), torch.rand(3, 64, 64))
