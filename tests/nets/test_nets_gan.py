"""GAN networks: shapes and ranges, spectral norm, class conditioning, configs, latents."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from torch import nn

from impasto.errors import InputError
from impasto.nets.gan import (
    GAN_ARCH_REGISTRY,
    GAN_ARCHS,
    DCGANDiscriminator,
    DCGANGenerator,
    GanNetConfig,
    SNGANDiscriminator,
    SNGANGenerator,
    build_gan,
    sample_latents,
)
from impasto.nets.layers import ConditionalBatchNorm2d

Z = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch="dcgan", resolution=32, channels=3, num_classes=0, **kw) -> GanNetConfig:
    return GanNetConfig(arch, resolution, channels, z_dim=Z, base_width=8,
                        num_classes=num_classes, **kw)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "arch,resolution", [("dcgan", 32), ("dcgan", 64), ("dcgan", 128), ("sngan", 32), ("sngan", 64)]
)
def test_generator_and_discriminator_shapes_and_ranges(arch, resolution, channels):
    torch.manual_seed(0)
    G, D = build_gan(tiny(arch, resolution, channels))
    # A 100x larger last layer pushes the pre-activation far beyond [-1, 1]: only the Tanh
    # keeps the images in range.
    with torch.no_grad():
        G.to_image.weight.mul_(100.0)
    x = G(torch.randn(2, Z))
    assert x.shape == (2, channels, resolution, resolution)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.abs().max() > 0.99  # saturated somewhere, so the bound is not met by accident
    assert x.std() > 0.05
    logits = D(x)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    assert G.widths[-1] == 8 and D.widths[0] == 8


def test_dcgan_widths_and_init_follow_the_paper():
    torch.manual_seed(0)
    G, D = build_gan(GanNetConfig("dcgan", 64, 3, z_dim=100, base_width=64))
    assert G.widths == (512, 256, 128, 64) and D.widths == (64, 128, 256, 512)
    w = G.convs[1].weight
    assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)
    assert D.to_logit.weight.std().item() == pytest.approx(0.02, rel=0.1)
    # First D layer has no norm, the others do; D uses LeakyReLU(0.2).
    kinds = [type(m).__name__ for m in D.features]
    assert kinds[:4] == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d"]
    assert D.features[1].negative_slope == 0.2


def test_unsupported_resolution_and_bad_config_values():
    with pytest.raises(InputError) as e:
        GanNetConfig("dcgan", 48, 3)
    assert str(e.value) == "resolution 48 is not supported by dcgan; choose from 32, 64, 128"
    with pytest.raises(InputError, match="resolution 256 is not supported by sngan"):
        build_gan({"arch": "sngan", "resolution": 256})
    with pytest.raises(InputError, match="unknown GAN architecture 'stylegan'; choose from"):
        GanNetConfig("stylegan", 32)
    with pytest.raises(InputError, match="channels must be 1 or 3"):
        GanNetConfig("dcgan", 32, 2)
    with pytest.raises(InputError, match="d_norm 'batch' is not supported by sngan"):
        GanNetConfig("sngan", 32, d_norm="batch")
    with pytest.raises(InputError, match="unknown GAN config key"):
        GanNetConfig.from_dict({"arch": "dcgan", "resolution": 32, "widht": 3})
    with pytest.raises(InputError, match="z_dim must be an integer >= 1"):
        GanNetConfig("dcgan", 32, z_dim=0)
    assert GAN_ARCHS == ("dcgan", "sngan")
    assert GAN_ARCH_REGISTRY.get("sngan").resolutions == (32, 64, 128)


def test_pggan_is_registered_with_its_own_config():
    from impasto.nets.pggan import PgganDiscriminator, PgganGenerator, PgganNetConfig

    assert GAN_ARCH_REGISTRY.names() == ("dcgan", "sngan", "pggan")
    spec = GAN_ARCH_REGISTRY.get("pggan")
    assert spec.progressive and spec.config_type is PgganNetConfig
    assert spec.resolutions == (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    assert not any(GAN_ARCH_REGISTRY.get(n).progressive for n in GAN_ARCHS)
    with pytest.raises(InputError, match="'pggan' is configured by PgganNetConfig, not "
                       "GanNetConfig; GanNetConfig takes dcgan, sngan"):
        GanNetConfig("pggan", 32)
    # build_gan takes the config of any registered architecture.
    config = PgganNetConfig(resolution=8, channels=1, z_dim=8, widths=(8, 4))
    torch.manual_seed(0)
    G, D = build_gan(config)
    assert isinstance(G, PgganGenerator) and isinstance(D, PgganDiscriminator)
    z = torch.randn(2, 8)
    assert G(z).shape == (2, 1, 8, 8) and D(G(z)).shape == (2,)


def test_wrong_inputs_are_rejected():
    G, D = build_gan(tiny(num_classes=3))
    with pytest.raises(InputError, match="class-conditional"):
        G(torch.randn(2, Z))
    with pytest.raises(InputError, match=r"latents must have shape \(N, 16\)"):
        G(torch.randn(2, Z + 1), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="images must have shape"):
        D(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
    G0, _ = build_gan(tiny())
    with pytest.raises(InputError, match="unconditional"):
        G0(torch.randn(2, Z), torch.tensor([0, 1]))


def test_spectral_norm_bounds_every_discriminator_layer():
    torch.manual_seed(0)
    _, D = build_gan(tiny("sngan", 32, 3, num_classes=3))
    D.train()
    with torch.no_grad():
        for _ in range(10):  # each training forward runs one power iteration per layer
            D(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    D.eval()
    normalised = [m for m in D.modules() if hasattr(m, "parametrizations")]
    # every conv, the linear head and the projection embedding
    assert len(normalised) == 13
    assert sum(isinstance(m, nn.Embedding) for m in normalised) == 1
    raw_sigmas = []
    with torch.no_grad():
        for m in normalised:
            sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item()
            assert sigma == pytest.approx(1.0, abs=0.03), m
            original = m.parametrizations.weight.original
            raw_sigmas.append(torch.linalg.matrix_norm(original.flatten(1), ord=2).item())
    assert max(raw_sigmas) > 1.3  # the raw weights are not already normalised


def test_conditional_batch_norm_starts_as_plain_batch_norm():
    torch.manual_seed(0)
    cbn, bn = ConditionalBatchNorm2d(4, num_classes=3), nn.BatchNorm2d(4)
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(cbn(x, y), bn(x))
    torch.testing.assert_close(cbn.bn.running_mean, bn.running_mean)
    assert torch.equal(cbn.gain.weight, torch.ones(3, 4))
    assert torch.equal(cbn.bias.weight, torch.zeros(3, 4))
    # Per-class gain and bias act per sample.
    with torch.no_grad():
        cbn.gain.weight[1] = 2.0
        cbn.bias.weight[2] = -0.5
    cbn.eval(), bn.eval()
    out, ref = cbn(x, y), bn(x)
    torch.testing.assert_close(out[y == 0], ref[y == 0])
    torch.testing.assert_close(out[y == 1], 2.0 * ref[y == 1])
    torch.testing.assert_close(out[y == 2], ref[y == 2] - 0.5)


@pytest.mark.parametrize("arch", ["dcgan", "sngan"])
def test_conditional_generator_depends_on_label_per_sample(arch):
    torch.manual_seed(0)
    G, _ = build_gan(tiny(arch, 32, 3, num_classes=4))
    G.eval()
    z = torch.randn(2, Z)
    # At initialisation every class gain is 1 and bias 0: the label has no effect yet.
    torch.testing.assert_close(G(z, torch.tensor([0, 1])), G(z, torch.tensor([3, 1])))
    for m in G.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            nn.init.normal_(m.gain.weight, 1.0, 0.5)
            nn.init.normal_(m.bias.weight, 0.0, 0.5)
    a, b = G(z, torch.tensor([0, 1])), G(z, torch.tensor([3, 1]))
    assert (a[0] - b[0]).abs().mean() > 1e-2  # sample 0's label changed
    torch.testing.assert_close(a[1], b[1])  # sample 1's did not


def test_projection_discriminator_adds_embedding_dot_features():
    torch.manual_seed(0)
    _, D = build_gan(tiny("sngan", 32, 3, num_classes=4))
    D.eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y0, y1 = torch.tensor([0, 1, 2]), torch.tensor([3, 1, 0])
    with torch.no_grad():
        d0, d1 = D(x, y0), D(x, y1)
        h = torch.relu(D.blocks(x)).sum(dim=(2, 3))
        e = D.embed.weight  # the spectrally normalised embedding
        expected = ((e[y1] - e[y0]) * h).sum(1)
    assert (d1 - d0)[[0, 2]].abs().min() > 1e-3
    assert d1[1] == d0[1]
    torch.testing.assert_close(d1 - d0, expected, rtol=1e-4, atol=1e-4)


def test_dcgan_projection_discriminator_depends_on_label():
    torch.manual_seed(0)
    _, D = build_gan(tiny("dcgan", 32, 1, num_classes=2))
    D.eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert D.embed.weight.shape == (2, D.widths[-1] * 16)
    d0, d1 = D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 1]))
    assert (d0 - d1).abs().min() > 1e-4


@pytest.mark.parametrize("arch", ["dcgan", "sngan"])
def test_config_round_trip_rebuilds_identical_networks(arch):
    torch.manual_seed(0)
    config = tiny(arch, 32, 3, num_classes=3)
    G, D = build_gan(config)
    # a few training forwards so running statistics and power-iteration vectors are non-trivial
    G.train(), D.train()
    with torch.no_grad():
        for _ in range(2):
            D(G(torch.randn(4, Z), torch.tensor([0, 1, 2, 0])), torch.tensor([0, 1, 2, 0]))
    buf = io.BytesIO()
    torch.save({"config": config.to_dict(), "G": G.state_dict(), "D": D.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert json.loads(json.dumps(ckpt["config"])) == config.to_dict()
    rebuilt = GanNetConfig.from_dict(ckpt["config"])
    assert rebuilt == config and rebuilt.d_norm == ("batch" if arch == "dcgan" else "none")
    G2, D2 = build_gan(rebuilt)
    assert type(G2) is type(G) and type(D2) is type(D)
    z, y = torch.randn(3, Z), torch.tensor([2, 0, 1])
    for net in (G, D, G2, D2):
        net.eval()
    with torch.no_grad():
        assert not torch.equal(G2(z, y), G(z, y))  # fresh weights differ ...
        G2.load_state_dict(ckpt["G"])
        D2.load_state_dict(ckpt["D"])
        x = G(z, y)
        assert torch.equal(G2(z, y), x)  # ... loaded ones are identical
        assert torch.equal(D2(x, y), D(x, y))


@pytest.mark.parametrize("arch", ["dcgan", "sngan"])
def test_channels_last_gives_the_same_numbers(arch):
    torch.manual_seed(0)
    G, D = build_gan(tiny(arch, 32, 3))
    G.eval(), D.eval()
    z = torch.randn(2, Z)
    with torch.no_grad():
        x = G(z)
        ref = D(x)
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        torch.testing.assert_close(G(z), x)
        torch.testing.assert_close(D(x.contiguous(memory_format=torch.channels_last)), ref)


def test_sample_latents_truncation_resamples():
    g = torch.Generator().manual_seed(0)
    z = sample_latents(4000, 8, g, truncation=1.0)
    assert z.shape == (4000, 8) and z.dtype == torch.float32
    assert z.abs().max() <= 1.0
    # Resampling gives a normal truncated to [-1, 1]: std = sqrt(1 - 2 phi(1) / (2 Phi(1) - 1)),
    # about 0.540; clipping would give about 0.72 and scaling anything else.
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    expected = math.sqrt(1 - 2 * phi / math.erf(1 / math.sqrt(2)))
    assert z.std().item() == pytest.approx(expected, abs=0.01)
    assert (z.abs() == 1.0).float().mean() < 1e-3  # nothing piles up at the threshold
    # Seeded: reproducible; no truncation: a standard normal.
    a = sample_latents(5, 3, torch.Generator().manual_seed(7))
    b = sample_latents(5, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(a, torch.randn(5, 3, generator=torch.Generator().manual_seed(7)))
    with pytest.raises(InputError, match="truncation must be a positive number"):
        sample_latents(2, 3, truncation=0.0)


def test_generator_sample_uses_truncated_latents():
    torch.manual_seed(0)
    G, _ = build_gan(tiny("sngan", 32, 1, num_classes=2))
    G.eval()
    x = G.sample(3, torch.tensor([0, 1, 1]), generator=torch.Generator().manual_seed(1),
                 truncation=0.5)
    z = sample_latents(3, Z, torch.Generator().manual_seed(1), 0.5)
    with torch.no_grad():
        assert torch.equal(x, G(z, torch.tensor([0, 1, 1])))
    assert isinstance(G, SNGANGenerator) and not x.requires_grad
    assert isinstance(build_gan(tiny())[0], DCGANGenerator)
    assert isinstance(build_gan(tiny())[1], DCGANDiscriminator)
    assert isinstance(build_gan(tiny("sngan"))[1], SNGANDiscriminator)
