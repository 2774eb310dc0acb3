"""Tiles of the instant networks normalise with the whole image's statistics
(impasto.style.instant.tiled): a tiled result equals the whole one closely and shows no seam,
where tiles with their own statistics differed in tone."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.infer.runner import InferenceRunner
from impasto.infer.tiling import plan_tiles
from impasto.nets.magenta import ConditionalInstanceNorm
from impasto.style.instant.tiled import global_stats

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(shared_data):
    from PIL import Image

    from impasto.io import to_tensor

    root = shared_data / "styletransfer"
    photo = Image.open(root / "content" / "golden_gate.jpg").convert("RGB")
    photo.thumbnail((300, 300))
    style = Image.open(root / "style" / "starry_night.jpg").convert("RGB").resize((128, 128))
    return {"x": to_tensor(photo.crop((0, 0, 298, 198))), "style": to_tensor(style)}


def _psnr(a, b) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def _seam(y: torch.Tensor, cuts: list[int]) -> float:
    """The mean jump between neighbouring columns at the tiles' core borders, against the
    median jump between neighbouring columns elsewhere."""
    jumps = (y[..., 1:] - y[..., :-1]).abs().mean((0, 1, 2))
    at = torch.stack([jumps[c - 1] for c in cuts]).mean()
    return float(at / jumps.median())


@pytest.mark.parametrize("kind", ["painting", "preset"])
def test_tiles_match_the_whole_image(inst, images, kind):
    x = images["x"]
    net = inst.stylizer(images["style"]) if kind == "painting" else inst.stylizer(preset=19)
    whole = inst.runner(net, tile=0)(x)
    tiled = inst.runner(net, tile=128)(x)  # 3 x 2 tiles, overlap 64
    own = InferenceRunner(net, device="cpu", precision="fp32", compile="off", tile=128,
                          overlap=64, align=4)(x)  # each tile its own statistics (before)
    # measured (painting / preset): 46.9 / 48.6 dB, max 0.058 / 0.090 (the tiles' padding,
    # within the overlaps); each tile its own statistics: 21.6 / 14.9 dB
    assert _psnr(tiled, whole) > 44 and float((tiled - whole).abs().max()) < 0.15
    assert _psnr(own, whole) < 25
    # no seam: the jump between neighbouring columns at the tiles' borders, against the jump
    # elsewhere, is the whole image's (measured 0.93 against 0.94, 1.04 against 1.04)
    cuts = sorted({t.cx0 for t in plan_tiles(*x.shape[-2:], 128, 64, 4)} - {0})
    assert abs(_seam(tiled, cuts) - _seam(whole, cuts)) < 0.1 * _seam(whole, cuts)
    # nor a change of tone from tile to tile: each tile core's mean colour stays the whole's
    # (measured at most 0.010 / 0.001; with their own statistics 0.107 / 0.126)
    def tone(y):
        return max(float((y[c].mean((2, 3)) - whole[c].mean((2, 3))).abs().max())
                   for c in [(..., slice(t.cy0, t.cy1), slice(t.cx0, t.cx1))
                             for t in plan_tiles(*x.shape[-2:], 128, 64, 4)])

    assert tone(tiled) < 0.02 and tone(own) > 5 * tone(tiled)


def test_global_stats_are_the_whole_image_s(inst, images):
    x = images["x"]
    net = inst.stylizer(preset=5)
    seen = {}

    def record(i, a, w):
        seen[i] = ConditionalInstanceNorm.moments(a, w)

    with torch.inference_mode():
        net(x, stats=record)
        got = global_stats(net, x, plan_tiles(*x.shape[-2:], 128, 64, 4))
    assert sorted(got) == sorted(seen) == list(range(18))
    for i in (0, 8, 17):  # the first norm is exact; later ones within the tiles' borders
        mean, var = got[i]
        assert torch.allclose(mean, seen[i][0], atol=1e-3 * float(var.sqrt().mean()) + 1e-5)
        assert torch.allclose(var, seen[i][1], rtol=1e-2, atol=1e-6)


def test_masked_tiles_match_the_whole_image(inst, images):
    x = images["x"]
    h, w = x.shape[-2:]
    m = torch.zeros(2, h, w)
    m[0, :, : w // 3] = 1
    m[1, :, w // 3:] = 1
    net = inst.stylizer([images["style"], x], masks=m)
    whole = inst.runner(net, tile=0)(x)
    tiled = inst.runner(net, tile=128)(x)
    assert _psnr(tiled, whole) > 44
