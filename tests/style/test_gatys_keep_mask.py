"""A content-only region for Gatys (``keep_mask``, Gatys et al. 2017): the kept region stays the
photo at every scale, tiled or whole, while the rest is stylised; bad keep masks are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_vgg

from impasto.errors import InputError
from impasto.io import to_pil
from impasto.style import GatysConfig, GatysStyleTransfer


def _transfer(**kw) -> GatysStyleTransfer:
    base = dict(size=96, precision="fp32", device="cpu", scales=2, iterations=20,
                content_weight=0.5, tv_weight=0.0)
    base.update(kw)
    return GatysStyleTransfer(GatysConfig(**base), encoder=tiny_vgg())


def _images(h=80, w=96):
    g = torch.Generator().manual_seed(3)
    content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 9, 1, 4)
    style = torch.rand(1, 3, 96, 96, generator=g)  # sharp noise: far from the smooth photo
    return content, style


def _keep(h=40, w=48):
    keep = torch.zeros(h, w)
    keep[:, : w // 2] = 1  # keep the left half (any size: resized)
    return keep


def _bytes(x: torch.Tensor) -> np.ndarray:
    return np.asarray(to_pil(x), dtype=np.float64) / 255  # the saved 8-bit image


@pytest.mark.parametrize("init", ["content", "noise"])
def test_the_kept_half_stays_the_photo_and_the_rest_is_stylised(init):
    content, style = _images()
    out = _transfer(init=init).run(content, [style], keep_mask=_keep())
    assert out.shape == content.shape
    diff = np.abs(_bytes(out) - _bytes(content))  # (H, W, 3)
    inside, outside = diff[:, :44].mean(), diff[:, 52:].mean()  # 4 px away from the edge
    print(f"inside {inside * 255:.3f}/255 outside {outside * 255:.1f}/255")
    assert inside < 2 / 255 and outside > 15 / 255, (inside * 255, outside * 255)


def test_a_soft_keep_mask_holds_the_photo_in_proportion():
    content, style = _images()
    keep = torch.full((80, 96), 0.75)
    keep[:, 48:] = 0
    plain = _transfer().run(content, [style], keep_mask=keep)
    gap = (plain - content).abs()
    # where 3/4 is kept the result is at most 1/4 of the way to anything else
    assert float(gap[..., :44].max()) <= 0.25 + 1e-5
    assert float(gap[..., 52:].mean()) > 4 * float(gap[..., :44].mean())


def test_keep_mask_runs_in_tiles_agree_with_whole_runs():
    content, style = _images(160, 192)
    finals = {}
    for tile in (0, 64):
        tiles: list[int] = []
        finals[tile] = _transfer(tile=tile, size=192, scales=1, iterations=6).run(
            content, [style], keep_mask=_keep(), callback=lambda i: tiles.append(i.tiles))
        assert tiles[-1] == (1 if tile == 0 else 9)
    assert float((finals[64] - finals[0]).abs().mean()) < 1e-3
    left = (finals[64] - content)[..., :88].abs().max()
    assert float(left) < 1e-6  # the kept half is the photo in tiles too


def test_a_keep_mask_composes_with_style_masks():
    content, style = _images()
    style_b = 1 - style
    masks = torch.zeros(2, 80, 96)
    masks[0, :40], masks[1, 40:] = 1, 1  # top / bottom
    out = _transfer().run(content, [style, style_b], masks=masks,
                          keep_mask=_keep(80, 96))
    assert float((out - content)[..., :44].abs().max()) < 1e-6
    assert float((out - content)[..., 52:].abs().mean()) > 0.05


def test_a_black_keep_mask_is_a_plain_run():
    content, style = _images()
    a = _transfer(iterations=3).run(content, [style], keep_mask=torch.zeros(8, 8))
    b = _transfer(iterations=3).run(content, [style])
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw, n_styles, masks, message", [
    ({}, 1, None, "white everywhere"),
    ({"tileable": "xy"}, 1, None, "tileable"),
    ({}, 2, None, "needs one --mask per style"),
    ({}, 2, "left", "mask 1 lies inside the keep mask"),
])
def test_bad_keep_masks_are_refused(kw, n_styles, masks, message):
    content, style = _images()
    keep = torch.ones(80, 96) if message == "white everywhere" else _keep(80, 96)
    if masks == "left":
        masks = torch.zeros(2, 80, 96)
        masks[0, :, :40], masks[1, :, 40:] = 1, 1
    with pytest.raises(InputError, match=message):
        _transfer(iterations=1, **kw).run(content, [style] * n_styles, masks=masks,
                                          keep_mask=keep)


def test_impasto_stylize_takes_a_keep_mask_file(tmp_path):
    import impasto

    content, style = _images()
    path = tmp_path / "keep.png"
    to_pil(_keep()[None].expand(3, -1, -1)[None]).save(path)
    out = impasto.stylize(to_pil(content), to_pil(style), transfer=_transfer(),
                          keep_mask=path)
    diff = np.abs(np.asarray(out, dtype=np.float64) / 255 - _bytes(content))
    assert diff[:, :44].mean() < 2 / 255 and diff[:, 52:].mean() > 10 / 255
    with pytest.raises(InputError, match="keep_mask"):
        impasto.stylize(to_pil(content), to_pil(style), method="instant", keep_mask=path)
