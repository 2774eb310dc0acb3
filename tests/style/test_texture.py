"""Texture synthesis (Gatys et al. 2015) and tileable textures (circular padding)."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.style import GatysConfig
from impasto.style.texture import periodic_resize, synthesize_texture, texture_size

from conftest import tiny_vgg


def _jumps(x):
    """Mean |difference| across the wrap-around (row H-1 -> 0, column W-1 -> 0) and across
    the interior lines of the same parity (2k-1 -> 2k), where an upsampled coarse scale
    leaves the same pattern."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    wrap = ((x[..., 0, :] - x[..., -1, :]).abs().mean() + (x[..., 0] - x[..., -1]).abs().mean()) / 2
    inner = (dy[1::2].mean() + dx[1::2].mean()) / 2
    return float(wrap), float(inner)


def _sample():
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g), 3, 1, 1)


def test_a_tileable_texture_has_no_wrap_around_seam():
    cfg = GatysConfig(scales=2, iterations=(20, 40), precision="fp32", device="cpu")
    tiled = synthesize_texture(_sample(), size=64, tileable="xy", config=cfg, encoder=tiny_vgg())
    plain = synthesize_texture(_sample(), size=64, config=cfg, encoder=tiny_vgg())
    wrap, inner = _jumps(tiled)
    assert tiled.shape == (1, 3, 64, 64) and wrap < 1.15 * inner, (wrap, inner)
    wrap_p, inner_p = _jumps(plain)
    assert wrap_p > 1.5 * inner_p  # without --tileable the borders do not match


def test_periodic_resize_and_sizes():
    x = torch.rand(1, 3, 8, 8)
    up = periodic_resize(x, (16, 16))
    assert torch.allclose(periodic_resize(torch.roll(x, 1, -1), (16, 16)), torch.roll(up, 2, -1),
                          atol=1e-6)  # resizing commutes with shifting: periodic
    assert texture_size(1000) == 992 and texture_size(1024) == 1024 and texture_size(5) == 16
    with pytest.raises(InputError, match="tileable"):
        synthesize_texture(_sample(), size=32, tileable="z")


def test_a_tileable_texture_in_tiles_wraps_around_and_matches_the_whole_run():
    # Large enough to need tiles (forced here): the crops continue across the edges, so the
    # tiled run optimises the same torus as the whole one. 10 iterations: the two L-BFGS runs
    # agree to 1e-5 through the 10th, then float rounding drives them apart (2.5% by the 15th
    # on an AVX2 Zen 3; 1e-3 on a Zen 4).
    cfg = dict(scales=1, iterations=10, precision="fp32", device="cpu")
    runs = {}
    for tile in (0, 32):
        seen = []
        runs[tile] = synthesize_texture(
            _sample(), size=64, tileable="xy", config=GatysConfig(tile=tile, **cfg),
            encoder=tiny_vgg(), callback=lambda i: seen.append((i.tiles, i.loss)))
        runs[tile] = (runs[tile], seen[-1])
    (whole, (t0, l0)), (tiled, (t1, l1)) = runs[0], runs[32]
    assert t0 == 1 and t1 == 4
    assert abs(l1 / l0 - 1) < 1e-3, (l0, l1)
    assert float((tiled - whole).abs().mean()) < 1e-3
    wrap, inner = _jumps(tiled)
    assert wrap < 1.15 * inner, (wrap, inner)


def test_make_periodic_and_periodic_sizes():
    from impasto.style.wrap import make_periodic, periodic_hw

    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    p = make_periodic(x, "x")
    assert torch.equal(p[..., :, 12:36], x[..., :, 12:36])  # the middle half is the photo
    jump = (p[..., 0] - p[..., -1]).abs().mean()  # across the wrap-around
    inner = (p[..., 1:] - p[..., :-1]).abs().mean()
    assert jump < 1.2 * inner and (x[..., 0] - x[..., -1]).abs().mean() > 0.3
    assert torch.equal(make_periodic(x, "y")[..., 8:24, :], x[..., 8:24, :])
    assert periodic_hw((341, 512)) == (336, 512) and periodic_hw((5, 1000)) == (16, 992)
    up = periodic_resize(x, (40, 60))  # a non-integer factor stays periodic
    assert torch.allclose(periodic_resize(torch.roll(x, 8, -1), (40, 60)),
                          torch.roll(up, 10, -1), atol=1e-5)
