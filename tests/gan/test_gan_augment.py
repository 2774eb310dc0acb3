"""DiffAugment: reproducibility, the exact effect of each policy, and gradient flow."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.gan import DiffAugment


pytestmark = pytest.mark.usefixtures("one_thread")


def seeded(policy="color,translation,cutout", seed=0) -> DiffAugment:
    return DiffAugment(policy, generator=torch.Generator().manual_seed(seed))


def images(n=4, c=3, size=32, seed=0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_seeded_augmentation_is_reproducible_and_seed_dependent():
    x = images()
    a, b, c = seeded(seed=0)(x), seeded(seed=0)(x), seeded(seed=1)(x)
    assert a.shape == x.shape and a.device == x.device and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    aug = seeded(seed=0)
    assert not torch.equal(aug(x), aug(x))  # the generator advances between calls


def test_random_parameters_are_drawn_per_sample():
    x = images(n=1).expand(6, -1, -1, -1)
    out = seeded()(x)
    for i in range(1, 6):
        assert (out[i] - out[0]).abs().mean() > 1e-3


def test_translation_moves_a_bright_pixel_by_the_drawn_shift():
    n, size = 64, 32
    x = torch.zeros(n, 1, size, size)
    x[:, :, 16, 16] = 1.0
    out = seeded("translation", seed=3)(x)
    # Shifts are integers in [-4, 4] (size / 8), drawn for y then x from the generator.
    g = torch.Generator().manual_seed(3)
    ty = torch.randint(-4, 5, (n,), generator=g)
    tx = torch.randint(-4, 5, (n,), generator=g)
    for i in range(n):
        expected = torch.zeros(size, size)
        expected[16 + ty[i], 16 + tx[i]] = 1.0
        assert torch.equal(out[i, 0], expected)
    assert ty.min() == -4 and ty.max() == 4 and tx.min() == -4 and tx.max() == 4


def test_translation_conserves_content_away_from_the_border_and_pads_with_zero():
    x = torch.zeros(8, 3, 32, 32)
    x[:, :, 4:28, 4:28] = images(8, 3, 24)  # a zero border as wide as the largest shift
    out = seeded("translation", seed=1)(x)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    torch.testing.assert_close(out.abs().sum(dim=(1, 2, 3)), x.abs().sum(dim=(1, 2, 3)))
    # Content against the border leaves the image and zeros come in.
    full = images(8)
    shifted = seeded("translation", seed=1)(full)
    moved = (shifted != full).flatten(1).any(1)
    assert ((shifted == 0).flatten(1).sum(1)[moved] > 0).all()


def test_cutout_zeroes_exactly_a_half_size_square():
    x = torch.ones(16, 3, 32, 32)
    out = seeded("cutout", seed=2)(x)
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    for i in range(16):
        assert zero[i, 0].sum() == 16 * 16
        rows = zero[i, 0].any(1).nonzero().flatten()
        cols = zero[i, 0].any(0).nonzero().flatten()
        assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15  # one square
    assert torch.equal(out[~zero], x[~zero])
    tops = {int(zero[i, 0].any(1).nonzero()[0]) for i in range(16)}
    assert len(tops) > 3  # the position is random per sample


def test_color_shifts_brightness_and_scales_contrast_within_the_paper_ranges():
    # One channel: saturation is a no-op, so out - mean(out) = s (x - mean(x)) with
    # s ~ U(0.5, 1.5) and mean(out) = mean(x) + b with b ~ U(-0.5, 0.5).
    n = 200
    x = images(n=1, c=1, size=8).expand(n, -1, -1, -1)
    out = seeded("color", seed=5)(x)
    dx = x - x.mean(dim=(1, 2, 3), keepdim=True)
    do = out - out.mean(dim=(1, 2, 3), keepdim=True)
    s = (do * dx).sum(dim=(1, 2, 3)) / dx.square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(do, s[:, None, None, None] * dx, rtol=1e-4, atol=1e-5)
    b = out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    assert 0.5 <= s.min() < 0.6 and 1.4 < s.max() <= 1.5
    assert -0.5 <= b.min() < -0.4 and 0.4 < b.max() <= 0.5


def test_saturation_scales_the_per_pixel_channel_deviation():
    # A grey image (equal channels) has no chroma: colour augmentation keeps it grey.
    grey = images(n=4, c=1).expand(-1, 3, -1, -1)
    out = seeded("color")(grey)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 0], out[:, 2])
    # A coloured image's chroma is rescaled by a per-sample factor in [0, 2] times the contrast.
    x = images(n=64)
    out = seeded("color", seed=9)(x)
    chroma_in = x - x.mean(1, keepdim=True)
    chroma_out = out - out.mean(1, keepdim=True)
    ratio = chroma_out.flatten(1).norm(dim=1) / chroma_in.flatten(1).norm(dim=1)
    assert ratio.min() < 0.2 and ratio.max() > 1.5 and ratio.max() <= 3.0


def test_gradients_flow_through_every_policy():
    x = images(n=3).requires_grad_(True)
    out = seeded()(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # Cutout alone: the gradient is exactly the keep-mask.
    x2 = images(n=3).requires_grad_(True)
    out2 = seeded("cutout")(x2)
    out2.sum().backward()
    assert torch.equal(x2.grad, (out2 != 0).float())
    # Translation alone: every pixel that stays inside the image gets gradient 1.
    x3 = images(n=3).requires_grad_(True)
    seeded("translation")(x3).sum().backward()
    assert set(x3.grad.unique().tolist()) <= {0.0, 1.0} and x3.grad.sum() >= 3 * 3 * 28 * 28


def test_policies_parse_and_bad_input_is_rejected():
    x = images(n=2)
    assert torch.equal(DiffAugment("")(x), x)
    assert DiffAugment(" color , cutout ").policy == "color,cutout"
    with pytest.raises(InputError, match="unknown DiffAugment policy 'blur'; choose from"):
        DiffAugment("color,blur")
    with pytest.raises(InputError, match=r"expects a float \(N, C, H, W\) batch"):
        DiffAugment()(torch.rand(3, 32, 32))
    assert list(DiffAugment().parameters()) == []
