"""Tiled inference (impasto.infer.tiling and the runner that uses it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from impasto.errors import InputError
from impasto.infer.runner import InferenceRunner
from impasto.infer.tiling import (
    _axis,
    auto_tile,
    bytes_per_pixel,
    plan_tiles,
    run_tiled,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def local_net(seed: int = 0) -> nn.Module:
    """A conv net with a small receptive field (radius 1 + 2 + 2 + 1 = 6 px at stride 2 ->
    about 8 px), stride 2 inside, same size out: what tiling can reproduce exactly."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid(),
    ).eval()


@pytest.mark.parametrize("length, tile, overlap", [(100, 64, 16), (203, 64, 24), (64, 64, 16),
                                                   (1000, 256, 64)])
def test_axis_spans_cover_with_enough_overlap(length, tile, overlap):
    spans = _axis(length, tile, overlap, 8)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(s % 8 == 0 for s, _ in spans)
    assert all(e - s <= tile + 7 for s, e in spans)
    for (_, e), (s, _) in zip(spans, spans[1:]):
        assert e - s >= overlap  # neighbours overlap by at least the requested amount


def test_cores_partition_the_image():
    tiles = plan_tiles(203, 150, 64, 24)
    cover = torch.zeros(203, 150, dtype=torch.int32)
    for t in tiles:
        assert t.y0 <= t.cy0 < t.cy1 <= t.y1 and t.x0 <= t.cx0 < t.cx1 <= t.x1
        cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
    assert bool((cover == 1).all())


def test_tiled_equals_untiled_for_a_small_receptive_field():
    net = local_net()
    x = torch.rand(2, 3, 200, 152, generator=torch.Generator().manual_seed(0))
    calls = []
    with torch.no_grad():
        whole = net(x)
        tiled = run_tiled(net, x, tile=64, overlap=32, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 4 and calls[-1][0] == calls[-1][1]
    assert (tiled - whole).abs().max() < 1e-5


def test_without_enough_overlap_the_seams_show():
    # a check that the test above can fail: without overlap the tile edges show
    net = local_net()
    x = torch.rand(1, 3, 200, 152, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (run_tiled(net, x, tile=64, overlap=0) - net(x)).abs().max()
    assert diff > 5e-4


def test_runner_tiles_automatically_when_over_the_memory_budget():
    net = local_net()
    x = torch.rand(1, 3, 160, 200, generator=torch.Generator().manual_seed(1))
    bpp = bytes_per_pixel(net)
    assert 50 < bpp < 1000
    small = InferenceRunner(net, device="cpu", precision="fp32", channels_last=False,
                            memory_budget=int(bpp * 64 * 64))
    assert small.tile_for(x) is not None
    big = InferenceRunner(net, device="cpu", precision="fp32", channels_last=False,
                          memory_budget=1 << 30)
    assert big.tile_for(x) is None
    never = InferenceRunner(net, device="cpu", precision="fp32", tile=0, memory_budget=1)
    assert never.tile_for(x) is None
    assert (small(x) - big(x)).abs().max() < 1e-5
    assert auto_tile(net, 4096, 4096, budget=int(bpp * 512 * 512)) <= 512


@pytest.mark.parametrize("tile, overlap", [(16, 4), (64, 40), (64, -1)])
def test_bad_tile_settings(tile, overlap):
    with pytest.raises(InputError, match="tile"):
        plan_tiles(100, 100, tile, overlap)
