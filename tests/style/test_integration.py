"""Gatys style transfer with the real VGG19 weights at 64-128 px, measured on the saved 8-bit
output."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import impasto
from impasto.io import load_image, resize, save_image, to_tensor
from impasto.nets import VGG19Features
from impasto.style import GatysConfig, PerceptualLoss
from impasto.style.color import rgb_to_yiq

pytestmark = pytest.mark.slow

SIZE = 96


@pytest.fixture(scope="module")
def images(shared_data):
    folder = shared_data / "styletransfer"
    content = to_tensor(resize(load_image(folder / "content" / "tubingen.jpg"), longest=SIZE))
    style = to_tensor(resize(load_image(folder / "style" / "starry_night.jpg"), longest=SIZE))
    other = to_tensor(resize(load_image(folder / "content" / "golden_gate.jpg"), longest=SIZE))
    return content, style, other


@pytest.fixture(scope="module")
def evaluator(images):
    """fp32 content and style losses at full resolution, one shared definition."""
    content, style, _ = images
    cfg = GatysConfig()
    enc = VGG19Features(list(dict.fromkeys(cfg.content_layers + cfg.style_layers)))
    loss = PerceptualLoss(enc, cfg.content_layers, cfg.style_layers)
    loss.set_content(content)
    loss.set_styles([style])
    return lambda x: {k: float(v) for k, v in loss(x)[1].items()}


def _saved(image, tmp_path, name="out.png"):
    path = save_image(image, tmp_path / name)
    return to_tensor(load_image(path))


def _edges(x):
    grey = x.mean(1, keepdim=True)
    grey = F.avg_pool2d(grey, 3, 1, 1)  # structure, not brush strokes
    gx = grey[..., :, 1:] - grey[..., :, :-1]
    gy = grey[..., 1:, :] - grey[..., :-1, :]
    return torch.cat([gx[..., :-1, :].flatten(), gy[..., :, :-1].flatten()])


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_style_loss_falls_10x_and_structure_stays(images, evaluator, tmp_path):
    content, style, other = images
    out = impasto.stylize(content[0], style[0], size=SIZE, iterations=(100,), seed=0)
    result = _saved(out, tmp_path)
    assert result.shape == content.shape
    before, after = evaluator(content), evaluator(result)
    assert after["style"] < before["style"] / 10, (before, after)
    # it is a different picture ...
    assert (result - content).abs().mean() > 0.05
    # ... whose edges still follow the content's, far more than another photo's
    match, unrelated = _corr(_edges(result), _edges(content)), _corr(_edges(other), _edges(content))
    assert match > 0.3 and match > unrelated + 0.2, (match, unrelated)


def test_same_seed_identical_output(images):
    content, style, _ = images
    kw = dict(size=64, iterations=(10,), seed=7, init="noise")
    a = impasto.stylize(content[0], style[0], **kw)
    b = impasto.stylize(content[0], style[0], **kw)
    assert a.tobytes() == b.tobytes()


def test_luminance_preservation_keeps_the_content_chroma(images, tmp_path):
    content, style, _ = images
    out = impasto.stylize(content[0], style[0], size=SIZE, iterations=(40,),
                          preserve_color="luminance")
    result = _saved(out, tmp_path)
    chroma = rgb_to_yiq(result)[:, 1:]
    want = rgb_to_yiq(content)[:, 1:]
    inside = ((result > 0.02) & (result < 0.98)).all(1, keepdim=True).expand_as(chroma)
    assert (chroma - want)[inside].abs().mean() < 0.01
    plain = _saved(impasto.stylize(content[0], style[0], size=SIZE, iterations=(40,)), tmp_path,
                   "plain.png")
    assert (rgb_to_yiq(plain)[:, 1:] - want).abs().mean() > 0.03


def test_multi_scale_default_beats_single_scale_at_equal_cost(images, evaluator):
    """Two scales (64 then 128 px) against 128 px alone, the same number of full-size steps."""
    content, style, _ = images
    big_c = to_tensor(resize(load_image(content[0]), longest=128))
    ms = impasto.stylize(content[0], style[0], size=128, scales=2, iterations=(60, 30), seed=0,
                         precision="fp32")
    ss = impasto.stylize(content[0], style[0], size=128, scales=1, iterations=(30,), seed=0,
                         precision="fp32")
    cfg = GatysConfig()
    enc = VGG19Features(list(dict.fromkeys(cfg.content_layers + cfg.style_layers)))
    loss = PerceptualLoss(enc, cfg.content_layers, cfg.style_layers,
                          content_weight=cfg.content_weight, style_weight=cfg.style_weight)
    loss.set_content(big_c)
    loss.set_styles([to_tensor(resize(load_image(style[0]), longest=128))])
    l_ms, l_ss = float(loss(to_tensor(ms))[0]), float(loss(to_tensor(ss))[0])
    assert l_ms < l_ss, (l_ms, l_ss)


def _mean_abs_dx(image) -> float:
    x = to_tensor(image) * 255
    return float((x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_default_tv_weight_smooths_the_output_at_512px_strength(shared_data):
    """The TV term is neural-style's, a sum over pixels, while the content and style terms are
    means: the TV pull per pixel against theirs grows with the pixel count, so the default 1e-3
    pulls at 512 px about as hard as 1e-3 * (512/64)**2 = 0.064 does at 64 px. Measured: mean
    |dx| 19.84 without TV, 18.60 with it (-6.2%). Under the old scale (a mean over pixels) the
    default changed nothing (17.37 without TV, 17.43 with it, at 128 px)."""
    folder = shared_data / "styletransfer"
    content = resize(load_image(folder / "content" / "tubingen.jpg"), longest=64)
    style = resize(load_image(folder / "style" / "starry_night.jpg"), longest=64)
    kw = dict(size=64, iterations=(60,), seed=0, precision="fp32")
    at_512 = GatysConfig().tv_weight * (512 / 64) ** 2
    plain = _mean_abs_dx(impasto.stylize(content, style, tv_weight=0.0, **kw))
    smooth = _mean_abs_dx(impasto.stylize(content, style, tv_weight=at_512, **kw))
    assert smooth < plain * 0.97, (plain, smooth)


def test_gatys_from_file_uses_the_packaged_vgg(tmp_path):
    from impasto.style import GatysStyleTransfer

    pipe = GatysStyleTransfer.from_file(device="cpu", size=32, iterations=2, precision="fp32")
    g = torch.Generator().manual_seed(0)
    out = pipe(torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g),
               output="tensor")
    assert out.shape == (1, 3, 32, 32) and bool(torch.isfinite(out).all())
