"""Gatys at any size (style/tiled.py): the tiled loss and gradient are the whole image's, runs
agree, no seam appears, and tiling is chosen from a memory budget."""

from __future__ import annotations

import pytest
import torch
from conftest import CONTENT_LAYERS, STYLE_LAYERS, tiny_vgg

from impasto.errors import InputError
from impasto.style import GatysConfig, GatysStyleTransfer
from impasto.style.tiled import (
    TiledPerceptualLoss,
    auto_tile_side,
    gatys_bytes_per_pixel,
    layer_geometry,
    plan_tiles,
    seam_ratio,
)


def _transfer(**kw) -> GatysStyleTransfer:
    base = dict(size=224, precision="fp32", device="cpu", scales=1, iterations=12)
    base.update(kw)
    return GatysStyleTransfer(GatysConfig(**base), encoder=tiny_vgg())


def _images(h=192, w=224):
    g = torch.Generator().manual_seed(3)
    content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 5, 1, 2)
    style = torch.rand(1, 3, 200, 180, generator=g) ** 2
    return content, style


def test_geometry_and_tiles_partition_the_image():
    assert layer_geometry(CONTENT_LAYERS + STYLE_LAYERS) == (16, 96)  # relu5_1: stride 16
    assert layer_geometry(("relu1_1", "relu2_1")) == (2, 6)
    tiles = plan_tiles(100, 130, 48, 16, 96)
    covered = torch.zeros(100, 130)
    for t in tiles:
        covered[t.y0:t.y1, t.x0:t.x1] += 1
        assert t.cy0 % 16 == 0 and t.cx0 % 16 == 0  # crops start on the pooling grid
    assert bool((covered == 1).all()) and len(tiles) == 2 * 3  # a 4-px remainder joins


def test_one_evaluation_equals_the_whole_image_loss_and_gradient():
    tr = _transfer(tv_weight=1e-3)
    loss = tr._loss()
    content, style = _images()
    loss.set_content(content)
    loss.set_styles([style])
    image = torch.rand(1, 3, 192, 224, generator=torch.Generator().manual_seed(1))
    image.requires_grad_(True)
    total, parts = loss(image)
    total.backward()
    whole_grad, whole_targets = image.grad.clone(), {n: m.target.clone() for n, m in loss.style.items()}

    tiled = TiledPerceptualLoss(loss, 48)
    tiled.set_content(content)
    tiled.set_styles([style])  # the style image (200x180) is encoded in tiles too
    assert len(tiled.tiles) == 4 * 5
    for n, m in loss.style.items():  # global statistics = the whole image's
        assert torch.allclose(m.target, whole_targets[n], rtol=1e-4, atol=1e-6 * m.target.abs().max())
    image.grad = None
    t_total, t_parts = tiled.evaluate(image)
    assert abs(float(t_total) / total.item() - 1) < 1e-5
    for k in ("content", "style", "tv"):
        assert abs(float(t_parts[k]) / parts[k].item() - 1) < 1e-5, k
    rel = float((image.grad - whole_grad).norm() / whole_grad.norm())
    assert rel < 1e-5, rel


def _final(tr, content, style):
    losses, tiles = [], []
    out = tr.run(content, [style], callback=lambda i: (losses.append(i.loss), tiles.append(i.tiles)))
    return out, losses[-1], tiles


@pytest.mark.parametrize("optimizer, iterations", [("lbfgs", 8), ("adam", 15)])
def test_tiled_and_whole_runs_agree_and_show_no_seam(optimizer, iterations):
    # (On this random tiny VGG, L-BFGS amplifies 1e-6 rounding differences into another path
    # after about 10 iterations; up to there the losses agree to 1e-4.)
    content, style = _images(160, 192)
    kw = dict(optimizer=optimizer, iterations=iterations, size=192)
    whole, loss_whole, t_whole = _final(_transfer(tile=0, **kw), content, style)
    tiled, loss_tiled, t_tiled = _final(_transfer(tile=64, **kw), content, style)
    assert set(t_whole) == {1} and set(t_tiled) == {9}
    assert abs(loss_tiled / loss_whole - 1) < 1e-3, (loss_tiled, loss_whole)
    assert float((tiled - whole).abs().mean()) < 1e-3
    # The jump across tile borders is that between neighbours elsewhere, as without tiles.
    cuts_y, cuts_x = (64, 128), (64, 128)
    r_tiled, r_whole = seam_ratio(tiled, cuts_y, cuts_x), seam_ratio(whole, cuts_y, cuts_x)
    assert 0.8 < r_tiled < 1.2 and abs(r_tiled - r_whole) < 0.02, (r_tiled, r_whole)


def test_seam_ratio_sees_a_seam():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.1
    x[..., 32:, :] += 0.5  # a step between rows 31 and 32
    assert seam_ratio(x, cuts_y=(32,)) > 5
    assert seam_ratio(x, cuts_y=(20,)) < 1.5


def test_tiles_come_from_the_memory_budget():
    # 8 GiB at 10 kB per pixel: 512 px runs whole, 4096 px in tiles whose crops fit.
    side = auto_tile_side(4096, 4096, 10_000.0, 8 << 30, 16, 96)
    assert auto_tile_side(512, 512, 10_000.0, 8 << 30, 16, 96) is None
    assert side is not None and side % 16 == 0 and (side + 2 * 96) ** 2 * 10_000 <= 8 << 30
    largest = ((8 << 30) // 10_000) ** 0.5 - 2 * 96  # 734 px: the largest interior that fits
    tiles = plan_tiles(4096, 4096, side, 16, 96)
    assert len(tiles) == 6 * 6  # as few as fit: 4096 / 734 -> 6 per side, evenly (688 px)
    assert all(t.crop_pixels * 10_000 <= 8 << 30 for t in tiles)  # every crop fits, the last too
    assert auto_tile_side(4096, 4096, 10_000.0, 3 * 734**2 * 10_000, 16, 96) is not None
    tr = _transfer()
    # Every layer's output per input pixel (4-8 channels, 1/4 as many after each pooling),
    # twice (kept + gradients), 4 bytes, plus 48 B of image copies.
    per_pixel = 4 * 4 + 4 / 4 + 4 * 8 / 4 + 8 / 16 + 8 * 8 / 16 + 8 / 64 + 8 * 8 / 64 + 8 / 256 \
        + 2 * 8 / 256
    assert gatys_bytes_per_pixel(tr.encoder) == pytest.approx(2 * 4 * per_pixel + 48)

    # The budget covers the full-size buffers too: the crops get what they leave.
    tr = _transfer(optimizer="adam")  # (no L-BFGS history)
    tr._bpp = 100.0
    held = tr.memory((192, 448))["full_size"]
    assert held == pytest.approx(192 * 448 * (12 * 7 + 4 * 8 / 64))  # 7 images, relu4_2 targets
    tr._budget = held + 6_000_000
    assert tr.tiles((96, 112)) is None and len(tr.tiles((192, 448))) > 1
    tr._budget = held + 1_000_000  # not even the smallest crop fits: one line, before any work
    with pytest.raises(InputError, match="does not fit the memory budget of .* even in tiles"):
        tr.tiles((192, 448))


def test_the_lbfgs_history_fits_a_quarter_of_the_budget():
    from impasto.style.optim import history_for_budget

    px8k = 3 * 8192 * 8192
    # Normal sizes: all 30 pairs in float32, as before (results unchanged).
    assert history_for_budget(30, 3 * 1024 * 1024, 4 << 30) == (30, torch.float32)
    assert history_for_budget(30, 3 * 2048 * 2048, 12 << 30) == (30, torch.float32)
    # 8192 px: 30 float32 pairs would take 48 GB; a 20 GB budget keeps 6 bf16 pairs (4.8 GB).
    assert 30 * 8 * px8k == pytest.approx(48.3e9, rel=1e-2)
    assert history_for_budget(30, px8k, 20 * 10**9) == (6, torch.bfloat16)
    assert history_for_budget(30, px8k, 10**9) == (3, torch.bfloat16)  # never under 3
    assert history_for_budget(2, px8k, 10**9) == (2, torch.bfloat16)
    tr = _transfer()
    tr._budget = 3 * 192 * 224 * 30 * 8 * 4  # exactly fits 30 float32 pairs
    assert tr.history((192, 224)) == (30, torch.float32)
    assert tr.memory((192, 224))["history"] == 30 * 8 * 3 * 192 * 224
    tr._budget -= 1
    assert tr.history((192, 224)) == (30, torch.bfloat16)  # 30 bf16 pairs fit in the quarter


def test_coarse_scales_run_whole_and_a_forced_tile_applies_where_the_image_is_larger():
    tr = _transfer(tile=128, scales=2, iterations=2)
    assert tr.tiles((96, 112)) is None and len(tr.tiles((192, 224))) == 4
    content, style = _images()
    seen = []
    tr.run(content, [style], callback=lambda i: seen.append((i.size, i.tiles)))
    assert seen[0] == ((96, 112), 1) and seen[-1] == ((192, 224), 4)
    with pytest.raises(InputError, match="tile"):
        GatysConfig(tile=8).validate()


def test_the_progress_bar_counts_tiles(capsys):
    from impasto.style.pipeline import stylize

    content, style = _images(160, 192)
    tr = _transfer(size=192, tile=64, iterations=2)
    out = stylize(content, style, transfer=tr, progress=True, max_pixels=None)
    err = capsys.readouterr().err
    assert out.size == (192, 160)
    assert "tile 9/9" in err and "it 2/2" in err and "(9 tiles)" in err


def _masks(h, w):
    """Two soft regions: a left/right split with a ramp, and its complement."""
    ramp = torch.linspace(-3, 3, w).sigmoid()[None].expand(h, w)
    return torch.stack([1 - ramp, ramp])


def test_masked_evaluation_in_tiles_equals_the_whole_image():
    tr = _transfer()
    loss = tr._loss()
    content, style = _images()
    style_b = style.flip(-1).roll(7, -2) ** 0.5
    masks = _masks(192, 224)
    loss.set_masks(masks)
    loss.set_content(content)
    loss.set_styles([style, style_b])
    image = torch.rand(1, 3, 192, 224, generator=torch.Generator().manual_seed(2))
    image.requires_grad_(True)
    total, parts = loss(image)
    total.backward()
    whole_grad = image.grad.clone()
    targets = {n: m.target.clone() for n, m in loss.style.items()}

    loss.set_masks(None)
    tiled = TiledPerceptualLoss(loss, 48)
    tiled.set_masks(masks, (192, 224))
    tiled.set_content(content)
    tiled.set_styles([style, style_b])
    for n, m in loss.style.items():
        assert m.target.shape[0] == 2 and torch.allclose(m.target, targets[n], rtol=1e-4)
    image.grad = None
    t_total, t_parts = tiled.evaluate(image)
    assert abs(float(t_total) / total.item() - 1) < 1e-5, (float(t_total), total.item())
    assert abs(float(t_parts["style"]) / parts["style"].item() - 1) < 1e-5
    rel = float((image.grad - whole_grad).norm() / whole_grad.norm())
    assert rel < 1e-5, rel


def test_masked_runs_in_tiles_agree_with_whole_runs():
    content, style = _images(160, 192)
    style_b = style.flip(-1) ** 0.5
    masks = _masks(80, 96)  # any size: resized to each scale
    kw = dict(iterations=6, size=192)
    finals = {}
    for tile in (0, 64):
        losses, tiles = [], []
        out = _transfer(tile=tile, **kw).run(
            content, [style, style_b], masks=masks,
            callback=lambda i: (losses.append(i.loss), tiles.append(i.tiles)))
        finals[tile] = (out, losses[-1], tiles[-1])
    assert finals[0][2] == 1 and finals[64][2] == 9
    assert abs(finals[64][1] / finals[0][1] - 1) < 1e-3, (finals[64][1], finals[0][1])
    assert float((finals[64][0] - finals[0][0]).abs().mean()) < 1e-3


@pytest.mark.parametrize("wrap", ["xy", "x"])
def test_wrapped_evaluation_in_tiles_equals_the_whole_torus(wrap):
    from impasto.style.wrap import circular

    tr = _transfer(tv_weight=1e-3)
    tr.encoder = circular(tr.encoder, wrap)
    loss = tr._loss()
    loss.tv.wrap = wrap
    content, style = _images(192, 224)
    style = style[..., :192, :176]  # sides multiples of 16: encoded as a torus in tiles too
    loss.set_content(content)
    loss.set_styles([style])
    image = torch.rand(1, 3, 192, 224, generator=torch.Generator().manual_seed(4))
    image.requires_grad_(True)
    total, parts = loss(image)
    total.backward()
    whole_grad = image.grad.clone()
    targets = {n: m.target.clone() for n, m in loss.style.items()}

    tiled = TiledPerceptualLoss(loss, 64, wrap=wrap)
    tiled.set_content(content)
    tiled.set_styles([style])
    assert tiled.tiles[0].cx0 == -96 and (tiled.tiles[0].cy0 == -96) == ("y" in wrap)
    for n, m in loss.style.items():
        assert torch.allclose(m.target, targets[n], rtol=1e-4, atol=1e-6 * m.target.abs().max())
    image.grad = None
    t_total, t_parts = tiled.evaluate(image)
    for k in ("content", "style", "tv"):
        assert abs(float(t_parts[k]) / parts[k].item() - 1) < 1e-5, k
    rel = float((image.grad - whole_grad).norm() / whole_grad.norm())
    assert rel < 1e-5, rel
