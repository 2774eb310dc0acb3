"""Perceptual losses and colour control: values against hand computations."""

from __future__ import annotations

import pytest
import torch

from impasto.style import PerceptualLoss, StyleLoss, TVLoss, gram_matrix, total_variation
from impasto.style.color import (
    combine_luminance,
    luminance,
    luminance_image,
    match_color,
    rgb_to_yiq,
    yiq_to_rgb,
)

from conftest import CONTENT_LAYERS, STYLE_LAYERS, tiny_vgg


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / 4.0
    torch.testing.assert_close(gram_matrix(f)[0], expected)
    assert gram_matrix(f.bfloat16()).dtype == torch.float32


def test_style_target_blends_grams():
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 5, 5)
    loss = StyleLoss()
    loss.set_target([a, b], [3.0, 1.0])
    torch.testing.assert_close(loss.target, 0.75 * gram_matrix(a) + 0.25 * gram_matrix(b))
    loss.set_target([a, b], [1.0, 0.0])
    assert float(loss(a)) == pytest.approx(0.0, abs=1e-12)
    assert float(loss(b)) > 0


def test_total_variation_by_hand():
    assert float(total_variation(torch.full((1, 3, 4, 4), 0.3))) == 0.0
    ramp = torch.arange(4.0).repeat(4, 1).expand(1, 3, 4, 4) / 255.0  # +1/255 per column
    # 3 horizontal steps of 1 (on a 0-255 scale) per row, 4 rows, 3 channels; / 48 elements
    assert float(total_variation(ramp)) == pytest.approx(3 * 4 * 3 / 48)
    # neural-style's scale: half the sum over the 3x3 pixels with both neighbours, 3 channels
    assert float(total_variation(ramp, "sum")) == pytest.approx(0.5 * 3 * 3 * 3)
    with pytest.raises(ValueError, match="reduction"):
        total_variation(ramp, "max")


def _neural_style_tv_grad(x: torch.Tensor) -> torch.Tensor:
    """The gradient jcjohnson/neural-style's TVLoss adds (strength 1), written out as its
    updateGradInput does it, for a (C, H, W) image on its own scale."""
    grad = torch.zeros_like(x)
    x_diff = x[:, :-1, :-1] - x[:, :-1, 1:]
    y_diff = x[:, :-1, :-1] - x[:, 1:, :-1]
    grad[:, :-1, :-1] += x_diff + y_diff
    grad[:, :-1, 1:] -= x_diff
    grad[:, 1:, :-1] -= y_diff
    return grad


def test_sum_total_variation_has_neural_style_gradient():
    image = torch.rand(1, 3, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    image.requires_grad_(True)
    TVLoss(2.5, "sum")(image).backward()
    # neural-style optimises the 0-255 image: d/d(image) = 255 * d/d(255 * image)
    want = 2.5 * 255 * _neural_style_tv_grad(255 * image.detach()[0])
    torch.testing.assert_close(image.grad[0].double(), want, rtol=0, atol=1e-5 * float(want.abs().max()))
    # at 512 x 384 px the sum is about numel / 2 = 3e5 times the mean of the original scale
    smooth = torch.rand(1, 3, 384, 512, generator=torch.Generator().manual_seed(1))
    ratio = float(total_variation(smooth, "sum") / total_variation(smooth, "mean"))
    assert ratio == pytest.approx(3 * 384 * 512 / 2, rel=0.01)


def test_perceptual_loss_is_zero_at_its_targets():
    net = tiny_vgg()
    loss = PerceptualLoss(net, CONTENT_LAYERS, STYLE_LAYERS, content_weight=2.0,
                          style_weight=3.0, tv_weight=0.0)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    loss.set_content(x)
    loss.set_styles([x])
    total, parts = loss(x)
    assert float(total) == pytest.approx(0.0, abs=1e-9)
    total, parts = loss(y)
    assert float(parts["content"]) > 0 and float(parts["style"]) > 0
    assert float(total) == pytest.approx(
        2.0 * float(parts["content"]) + 3.0 * float(parts["style"]), rel=1e-5)


def test_yiq_round_trip_and_luminance():
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(luminance(grey), torch.full((1, 1, 2, 2), 0.4))
    torch.testing.assert_close(rgb_to_yiq(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6,
                               rtol=0)


def test_combine_luminance_keeps_chroma():
    content = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    stylised = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    out = combine_luminance(stylised, content)
    torch.testing.assert_close(rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:], atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(luminance(out), luminance(stylised), atol=1e-5, rtol=0)


def test_luminance_image_matches_reference_statistics():
    style = torch.rand(1, 3, 16, 16) * 0.3
    content = torch.rand(1, 3, 16, 16) * 0.2 + 0.6
    grey = luminance_image(style, like=content)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    y, ref = luminance(grey), luminance(content)
    assert float(y.mean()) == pytest.approx(float(ref.mean()), abs=1e-3)
    assert float(y.std()) == pytest.approx(float(ref.std()), rel=1e-2)


def test_match_color_gives_target_mean_and_covariance():
    torch.manual_seed(0)
    source = torch.rand(1, 3, 32, 32) * 0.4 + 0.3
    target = torch.rand(1, 3, 32, 32)
    target[:, 0] = target[:, 0] * 0.3 + 0.1  # a bluish, low-red target
    target[:, 2] = target[:, 2] * 0.3 + 0.5
    out = match_color(source, target)
    o, t = out.reshape(3, -1), target.reshape(3, -1)
    torch.testing.assert_close(o.mean(1), t.mean(1), atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.cov(o), torch.cov(t), atol=2e-3, rtol=0)
