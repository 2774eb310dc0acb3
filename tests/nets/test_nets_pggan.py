"""Progressive GAN networks: shapes at every stage, exact fade-in ends, equalised learning rate,
pixel norm, minibatch stddev, configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.nets.pggan import (
    EqualizedConv2d,
    EqualizedLinear,
    PgganNetConfig,
    build_pggan,
    default_widths,
    minibatch_stddev,
    pixel_norm,
    upsample2x,
)

Z = 16

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(resolution: int = 32, channels: int = 3, **kw) -> PgganNetConfig:
    widths = kw.pop("widths", (16, 12, 8, 8, 4, 4)[: int(math.log2(resolution)) - 1])
    return PgganNetConfig(resolution=resolution, channels=channels, z_dim=Z, widths=widths, **kw)


def nets(resolution: int = 32, channels: int = 3, seed: int = 0, **kw):
    torch.manual_seed(seed)
    G, D = build_pggan(tiny(resolution, channels, **kw))
    # Non-zero biases, so the comparisons below also cover them.
    with torch.no_grad():
        for p in list(G.parameters()) + list(D.parameters()):
            if p.dim() == 1:
                p.uniform_(-0.2, 0.2)
    return G.eval(), D.eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_at_every_stage(channels):
    G, D = nets(32, channels)
    z = torch.randn(4, Z)
    for r in (4, 8, 16, 32):
        for alpha in [None] if r == 4 else [None, 0.0, 0.4, 1.0]:
            G.set_stage(r, alpha)
            D.set_stage(r, alpha)
            x = G(z)
            assert x.shape == (4, channels, r, r)
            assert G.resolution == r and G.target_resolution == 32
            assert torch.isfinite(x).all()
            assert D(x).shape == (4,)
    # D refuses images of another stage's size, with one line
    D.set_stage(16)
    with pytest.raises(InputError, match=rf"\(N, {channels}, 16, 16\) at this stage"):
        D(torch.zeros(2, channels, 32, 32))
    with pytest.raises(InputError, match="not a stage"):
        G.set_stage(64)
    with pytest.raises(InputError, match="first stage"):
        G.set_stage(4, 0.5)
    with pytest.raises(InputError, match="alpha"):
        G.set_stage(8, 1.5)
    with pytest.raises(InputError, match="unconditional"):
        G(z, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("r", [8, 16, 32])
def test_fade_ends_equal_the_stable_networks(r):
    G, D = nets(32)
    z = torch.randn(6, Z)
    x = torch.randn(6, 3, r, r)
    with torch.no_grad():
        G.set_stage(r)
        stable = G(z)
        D.set_stage(r)
        d_stable = D(x)
        G.set_stage(r // 2)
        previous = G(z)
        D.set_stage(r // 2)
        d_previous = D(F.avg_pool2d(x, 2))
        fade = {}
        for a in (0.0, 0.25, 1.0):
            G.set_stage(r, a)
            D.set_stage(r, a)
            fade[a] = (G(z), D(x))
    # alpha = 1: the stable network, bit for bit; alpha = 0: the previous resolution (G's
    # output nearest-upsampled, D on the box-downsampled images)
    assert torch.equal(fade[1.0][0], stable)
    assert torch.equal(fade[1.0][1], d_stable)
    assert torch.equal(fade[0.0][0], upsample2x(previous))
    assert torch.equal(fade[0.0][1], d_previous)
    # in between, G's output is the blend, unlike either end
    g_mid = fade[0.25][0]
    torch.testing.assert_close(g_mid, 0.75 * upsample2x(previous) + 0.25 * stable,
                               atol=1e-5, rtol=1e-5)
    assert (g_mid - stable).abs().max() > 1e-2
    assert (g_mid - upsample2x(previous)).abs().max() > 1e-2
    assert (fade[0.25][1] - d_stable).abs().max() > 1e-4


def test_equalized_lr_keeps_the_variance_of_a_fresh_layer_near_one():
    torch.manual_seed(0)
    lin = EqualizedLinear(512, 256, gain=1.0)
    x = torch.randn(2048, 512)
    with torch.no_grad():
        y = lin(x)
        raw = F.linear(x, lin.weight)  # the same weights without He's constant
    assert 0.9 < float(y.var()) < 1.1
    assert 400 < float(raw.var()) < 620  # fan_in: what the constant takes away
    # The stored weights are N(0, 1): the constant is applied at run time, not at init.
    assert 0.97 < float(lin.weight.detach().std()) < 1.03
    assert lin.scale == pytest.approx(1 / math.sqrt(512))
    assert not lin.bias.detach().any()

    conv = EqualizedConv2d(64, 64, 3)  # gain sqrt(2), for a following (leaky) ReLU
    x = torch.randn(8, 64, 16, 16)
    with torch.no_grad():
        y = conv(x)[:, :, 1:-1, 1:-1]  # away from the zero padding
        torch.testing.assert_close(
            conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1)
        )
        # scaling the stored weights scales the output: the weights are used as they are
        conv.weight.mul_(2.0)
        assert torch.allclose(conv(x)[:, :, 1:-1, 1:-1], 2 * y, atol=1e-5)
    assert 1.8 < float(y.var()) < 2.2
    assert 0.9 < float(F.relu(y).square().mean()) < 1.1


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = torch.randn(3, 10, 5, 5) * (torch.rand(3, 1, 5, 5) + 0.1) * 7
    y = pixel_norm(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(3, 5, 5), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pixel_norm(5 * x), y, atol=1e-5, rtol=1e-5)  # scale invariant
    assert pixel_norm(x.bfloat16()).dtype == torch.bfloat16


def test_minibatch_stddev_adds_one_channel_that_follows_batch_diversity():
    torch.manual_seed(0)
    base = torch.randn(1, 5, 4, 4)
    same = base.expand(8, -1, -1, -1).clone()
    spread = base + torch.randn(8, 5, 4, 4)
    out = minibatch_stddev(spread, group_size=4)
    assert out.shape == (8, 6, 4, 4)
    assert torch.equal(out[:, :5], spread)  # the input channels pass unchanged
    stat = out[:, 5]
    assert torch.equal(stat, stat[:, :1, :1].expand_as(stat))  # constant over the pixels
    assert float(minibatch_stddev(same, 4)[:, 5].abs().max()) < 1e-3  # no diversity: ~0
    assert float(stat.min()) > 0.5
    wider = minibatch_stddev(base + 3 * (spread - base), 4)[:, 5]
    torch.testing.assert_close(wider, 3 * stat, atol=1e-3, rtol=1e-3)  # it is a std
    # groups: sample i is in group i % (N / G); with G=2, N=4: {0, 2} and {1, 3}
    x = torch.randn(4, 2, 2, 2)
    x[2] = x[0]
    s = minibatch_stddev(x, group_size=2)[:, 2, 0, 0]
    assert float(s[0]) < 1e-3 and float(s[2]) < 1e-3
    assert float(s[1]) > 0.1 and s[1] == s[3]
    # a batch that the group size does not divide uses the largest divisor below it
    assert minibatch_stddev(torch.randn(6, 2, 2, 2), group_size=4).shape == (6, 3, 2, 2)


def test_config_checks_and_round_trip():
    with pytest.raises(InputError, match="48 is not a power of two"):
        PgganNetConfig(resolution=48)
    with pytest.raises(InputError, match="not a power of two"):
        PgganNetConfig(resolution=2048)
    with pytest.raises(InputError, match="widths has 2 entries for 4 resolutions"):
        PgganNetConfig(resolution=32, widths=(8, 8))
    with pytest.raises(InputError, match="channels"):
        PgganNetConfig(channels=2)
    assert default_widths(1024) == (512, 512, 512, 512, 256, 128, 64, 32, 16)
    assert PgganNetConfig(resolution=16, widths=(8, 8, 4, 99)).widths == (8, 8, 4)
    config = tiny(32, 1, mbstd_group_size=2)
    again = PgganNetConfig.from_dict(config.to_dict())
    assert again == config
    G1, D1 = nets(32, 1, seed=3, mbstd_group_size=2)
    G2, D2 = build_pggan(config.to_dict())
    assert G1.state_dict().keys() == G2.state_dict().keys()
    assert D1.state_dict().keys() == D2.state_dict().keys()
    with pytest.raises(InputError, match="unknown PGGAN config key"):
        PgganNetConfig.from_dict({**config.to_dict(), "depth": 3})
    # minibatch stddev off: D's last conv reads the plain features
    _, D0 = build_pggan(tiny(8, mbstd_group_size=0))
    assert D0.blocks[0].conv.weight.shape[1] == 16


@pytest.mark.parametrize("stage", [(4, None), (8, 0.3), (16, None), (32, 0.0)])
def test_train_active_only_marks_exactly_the_parameters_a_stage_uses(stage):
    # DDP needs a gradient for every parameter it tracks, and none for the others.
    G, D = nets(32)
    z = torch.randn(4, Z)
    for net in (G, D):
        net.set_stage(*stage)
        net.train_active_only()
    D(G(z)).sum().backward()
    for net in (G, D):
        trainable = {n for n, p in net.named_parameters() if p.requires_grad}
        with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
        assert trainable == with_grad
        assert 0 < len(trainable) < len(list(net.parameters())) or stage[0] == 32
    names = {n for n, p in G.named_parameters() if p.requires_grad}
    level = (4, 8, 16, 32).index(stage[0])
    assert (f"to_rgb.{level - 1}.weight" in names) == (stage[1] is not None)
