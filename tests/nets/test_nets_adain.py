"""AdaIN building blocks (impasto.nets.adain): the operation, the decoder's shapes, region
statistics and the stylizer's AdaIN target with interpolation weights and masks."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_vgg
from impasto.errors import InputError
from impasto.nets.adain import (
    ENCODER_LAYERS,
    AdaINDecoder,
    AdaINDecoderConfig,
    AdaINStylizer,
    adain,
    mean_std,
    region_stats,
    region_sums,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = (4, 8, 8, 8)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std over every position of ``(C, P)``."""
    return x.mean(1), x.var(1, unbiased=False).add(1e-5).sqrt()


def test_adain_gives_the_style_statistics_and_keeps_the_content_layout():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 6, 7, generator=g) * 3 + 1
    style = torch.randn(2, 5, 4, 4, generator=g) * torch.arange(1.0, 6.0).view(1, 5, 1, 1) - 2
    out = adain(content, style)
    mo, so = mean_std(out)
    ms, ss = mean_std(style)
    torch.testing.assert_close(mo, ms, atol=1e-4, rtol=0)
    torch.testing.assert_close(so, ss, atol=1e-4, rtol=1e-4)
    # per channel, the output is an increasing affine function of the content
    corr = torch.corrcoef(torch.stack([out[0, 0].flatten(), content[0, 0].flatten()]))[0, 1]
    assert corr > 0.9999


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (4, 4)])
def test_decoder_upsamples_eight_times(size):
    torch.manual_seed(0)
    dec = AdaINDecoder(AdaINDecoderConfig(TINY))
    y = dec(torch.randn(2, 8, *size))
    assert y.shape == (2, 3, 8 * size[0], 8 * size[1])
    assert torch.isfinite(y).all()


def test_decoder_layout_mirrors_vgg19():
    dec = AdaINDecoder()
    convs = [m for m in dec.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (512, 256), (256, 256), (256, 256), (256, 256), (256, 128),
        (128, 128), (128, 64), (64, 64), (64, 3),
    ]
    assert sum(isinstance(m, torch.nn.Upsample) and m.mode == "nearest"
               for m in dec.modules()) == 3
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in dec.modules()) == 9


@pytest.mark.parametrize("widths", [(1, 2, 3), (4, 8, 0, 8)])
def test_bad_decoder_config(widths):
    with pytest.raises(InputError):
        AdaINDecoderConfig(widths)


def test_region_stats_equal_statistics_of_the_region():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(1, 3, 6, 8, generator=g)
    m = torch.zeros(1, 2, 6, 8)
    m[:, 0, :, :3] = 1
    m[:, 1, :, 3:] = 1
    mean, std, weight = region_stats(f, m)
    for r, cols in enumerate((slice(0, 3), slice(3, 8))):
        em, es = _stats(f[0, :, :, cols].reshape(3, -1))
        torch.testing.assert_close(mean[0, r], em, atol=1e-5, rtol=0)
        torch.testing.assert_close(std[0, r], es, atol=1e-5, rtol=1e-5)
    assert weight[0].tolist() == [18.0, 30.0]
    # the sums of parts add up to the sums of the whole
    whole = region_sums(f, None)
    parts = [region_sums(f[..., :, :4], None), region_sums(f[..., :, 4:], None)]
    for a, b, c in zip(whole, *parts):
        torch.testing.assert_close(a, b + c)


def _stylizer(n_styles: int, *, masks=None, weights=None, alpha=1.0, seed=0):
    enc = tiny_vgg(layers=("relu4_1",), seed=seed)
    torch.manual_seed(seed)
    dec = AdaINDecoder(AdaINDecoderConfig(TINY))
    g = torch.Generator().manual_seed(seed + 10)
    mean = torch.randn(n_styles, 8, generator=g) * 3
    std = torch.rand(n_styles, 8, generator=g) * 4 + 0.5
    return AdaINStylizer(enc, dec, mean, std, masks=masks, weights=weights, alpha=alpha).eval()


def test_masked_target_gives_each_region_its_own_style_statistics():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(1, 8, 8, 10, generator=g) * 2 + 1
    m = torch.zeros(1, 2, 8, 10)
    m[:, 0, :, :4] = 1  # left: style 0
    m[:, 1, :, 4:] = 1  # right: style 1
    st = _stylizer(2, masks=torch.ones(2, 8, 10))
    t = st.target(f, m, region_sums(f, m))
    for k, cols in enumerate((slice(0, 4), slice(4, 10))):
        mean, std = _stats(t[0, :, :, cols].reshape(8, -1))
        torch.testing.assert_close(mean, st.style_mean[k], atol=1e-4, rtol=0)
        # std of the region = the style's (up to the eps inside the content's std)
        torch.testing.assert_close(std, st.style_std[k], atol=1e-3, rtol=1e-3)


def test_uncovered_positions_keep_the_content_features():
    f = torch.randn(1, 8, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2] = 1
    st = _stylizer(1, masks=torch.ones(1, 4, 4))
    t = st.target(f, m, region_sums(f, m))
    torch.testing.assert_close(t[..., 2:], f[..., 2:])
    assert not torch.allclose(t[..., :2], f[..., :2])


def test_interpolation_weights_mix_the_style_statistics():
    f = torch.randn(1, 8, 6, 6) * 3
    st = _stylizer(2, weights=[3.0, 1.0])
    t = st.target(f, None, region_sums(f, None))
    mean, std = _stats(t[0].reshape(8, -1))
    torch.testing.assert_close(mean, 0.75 * st.style_mean[0] + 0.25 * st.style_mean[1],
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(std, 0.75 * st.style_std[0] + 0.25 * st.style_std[1],
                               atol=1e-3, rtol=1e-3)


def test_stylizer_any_size_in_unit_range():
    st = _stylizer(1)
    for h, w in ((17, 23), (8, 8), (5, 40), (1, 1)):
        with torch.no_grad():
            y = st(torch.rand(2, 3, h, w))
        assert y.shape == (2, 3, h, w)
        assert 0 <= float(y.min()) and float(y.max()) <= 1


@pytest.mark.parametrize("kw, word", [
    (dict(weights=[1.0]), "blend weights"),
    (dict(weights=[1.0, -1.0]), "non-negative"),
    (dict(masks=torch.ones(3, 4, 4)), "mask"),
    (dict(alpha=1.5), "alpha"),
])
def test_bad_stylizer_arguments(kw, word):
    with pytest.raises(InputError, match=word):
        _stylizer(2, **kw)


def test_encoder_layers_are_the_papers():
    assert ENCODER_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
