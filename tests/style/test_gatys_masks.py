"""Per-region styles for Gatys (Gatys et al. 2017 spatial control): guided Gram matrices."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.losses.perceptual import gram_matrix
from impasto.style import GatysConfig, GatysStyleTransfer
from impasto.style.losses import masked_grams

from conftest import tiny_vgg


def test_a_full_mask_gives_the_plain_gram_and_a_half_mask_the_half_gram():
    f = torch.randn(1, 6, 8, 10, generator=torch.Generator().manual_seed(0))
    full = masked_grams(f, torch.ones(1, 8, 10))
    assert torch.allclose(full[0], gram_matrix(f)[0], atol=1e-6)
    left = torch.zeros(1, 8, 10)
    left[..., :5] = 1
    assert torch.allclose(masked_grams(f, left)[0], gram_matrix(f[..., :5])[0], atol=1e-6)


def _styles():
    g = torch.Generator().manual_seed(5)
    dark = torch.rand(1, 3, 64, 64, generator=g) * 0.3 + torch.tensor([0.5, 0.0, 0.0])[:, None, None]
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::4, :] = 1.0  # bright horizontal stripes
    return dark.clamp(0, 1), stripes


def test_each_half_takes_its_own_style():
    content = torch.full((1, 3, 64, 64), 0.5)
    dark, stripes = _styles()
    masks = torch.zeros(2, 64, 64)
    masks[0, :, :32], masks[1, :, 32:] = 1, 1
    cfg = GatysConfig(size=64, scales=1, iterations=40, precision="fp32", device="cpu",
                      content_weight=0.0, tv_weight=0.0)
    vgg = tiny_vgg()
    out = GatysStyleTransfer(cfg, encoder=vgg).run(content, [dark, stripes], masks=masks)
    loss = GatysStyleTransfer(cfg, encoder=vgg)._loss()

    def style_loss(image, half, style):  # the style loss of one half to one style image
        with torch.no_grad():
            feats, targets = vgg(image[half]), vgg(style)
            return sum(float(((gram_matrix(feats[n]) - gram_matrix(targets[n])) ** 2).mean())
                       for n in loss.style)

    left, right = (slice(None), slice(0, 32)), (slice(None), slice(32, 64))
    for half, own, other in ((left, dark, stripes), (right, stripes, dark)):
        a = style_loss(out, (Ellipsis, *half), own)
        b = style_loss(out, (Ellipsis, *half), other)
        assert a < 0.5 * b, (a, b)
        print(f"own {a:.4g} other {b:.4g}")


@pytest.mark.parametrize("masks, blend, message", [
    (torch.ones(3, 8, 8), None, "3 masks for 2 style"),
    (torch.stack([torch.ones(8, 8), torch.zeros(8, 8)]), None, "mask 2 is black everywhere"),
    (torch.ones(2, 8, 8), (1.0, 2.0), "blend weights do not apply"),
])
def test_bad_masks_are_refused(masks, blend, message):
    cfg = GatysConfig(size=32, scales=1, iterations=1, precision="fp32", device="cpu",
                      style_blend_weights=blend)
    dark, stripes = _styles()
    with pytest.raises(InputError, match=message):
        GatysStyleTransfer(cfg, encoder=tiny_vgg()).run(torch.rand(1, 3, 32, 32),
                                                         [dark, stripes], masks=masks)
