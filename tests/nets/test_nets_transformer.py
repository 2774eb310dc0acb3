"""The feed-forward style network (TransformerNet) and the patch discriminator: shapes for any
size, the pad-and-crop, the architecture the papers ask for, and the discriminator's patch size."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.nets.patch_disc import PatchDiscConfig, PatchDiscriminator
from impasto.nets.transformer import TransformerConfig, TransformerNet

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TransformerConfig(channels=(4, 8, 8), num_residual=1)


def tiny_net(seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    net = TransformerNet(TINY)
    # Non-trivial instance-norm affine parameters, so that a wrong crop or pad shows.
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("h,w", [(37, 53), (1, 1), (3, 7), (5, 200), (64, 64), (33, 32)])
def test_any_size_keeps_shape_and_range(h, w):
    net = tiny_net()
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, h, w)
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # Not a constant: the network responds to its input.
    assert float(y.std()) > 1e-3


def test_odd_size_is_reflect_padded_then_cropped():
    net = tiny_net()
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    assert TransformerNet.padding(37, 53) == (3, 3)
    assert TransformerNet.padding(40, 56) == (0, 0)
    assert TransformerNet.padding(2, 9) == (6, 3)  # at least 8 px
    padded = F.pad(x, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        y = net(x)
        y_padded = net(padded)
    torch.testing.assert_close(y, y_padded[..., :37, :53], rtol=0, atol=1e-6)
    # ... and the padding matters (a zero pad would give another result).
    with torch.no_grad():
        y_zero = net(F.pad(x, (0, 3, 0, 3)))[..., :37, :53]
    assert float((y - y_zero).abs().max()) > 1e-4


def test_batch_items_are_independent():
    """Instance norm: an image's output does not depend on the others in its batch."""
    net = tiny_net()
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 3, 24, 20, generator=g), torch.rand(1, 3, 24, 20, generator=g)
    with torch.no_grad():
        both = net(torch.cat([a, b]))
        alone = net(a)
    torch.testing.assert_close(both[:1], alone, rtol=0, atol=1e-6)


def test_architecture_follows_the_papers():
    net = TransformerNet()
    kinds = [type(m) for m in net.modules()]
    assert nn.ConvTranspose2d not in kinds  # upsample-then-convolve
    assert nn.BatchNorm2d not in kinds
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # Every convolution but the last is followed by instance norm; all are reflection-padded.
    assert len(norms) == len(convs) - 1 == 3 + 2 * 5 + 2
    assert all(c.padding == (0, 0) for c in convs)
    pads = [m for m in net.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == len(convs)
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 2 and all(u.mode == "nearest" for u in ups)
    assert [c.out_channels for c in convs[:3]] == [32, 64, 128]
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)
    n_params = sum(p.numel() for p in net.parameters())
    assert 1_600_000 < n_params < 1_700_000  # Johnson et al.'s network: about 1.7 M


def test_channels_last_and_bf16_agree_with_fp32():
    net = tiny_net()
    x = torch.rand(2, 3, 30, 45, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        cl = net_cl(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = net(x)
    torch.testing.assert_close(cl, ref, rtol=0, atol=1e-5)
    assert bf.shape == ref.shape
    assert float((bf.float() - ref).abs().max()) < 0.05


def test_config_checks_and_round_trip():
    cfg = TransformerConfig(channels=[8, 16, 32], num_residual=2)
    assert cfg.channels == (8, 16, 32)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(channels=(8, 16)), dict(channels=(8, 0, 8)), dict(num_residual=-1),
                dict(kernel_size=4), dict(num_residual=True)):
        with pytest.raises(InputError):
            TransformerConfig(**bad)
    with pytest.raises(ValueError, match="expects"):
        tiny_net()(torch.rand(1, 4, 8, 8))


# --------------------------------------------------------------------------------------------
# patch discriminator


def test_patch_disc_shape():
    torch.manual_seed(0)
    D = PatchDiscriminator(PatchDiscConfig(base_width=8, num_layers=3))
    out = D(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 6, 6)
    assert PatchDiscConfig(num_layers=3).receptive_field() == 70
    assert PatchDiscConfig(num_layers=2).receptive_field() == 34
    assert PatchDiscConfig(num_layers=1).receptive_field() == 16


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_patch_disc_logit_sees_its_patch_only(layers):
    """The input gradient of one logit is non-zero only inside its receptive field."""
    torch.manual_seed(0)
    cfg = PatchDiscConfig(base_width=4, num_layers=layers, norm="none")
    D = PatchDiscriminator(cfg)
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    out = D(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    support = x.grad.abs().sum(1)[0] > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    side = cfg.receptive_field()
    assert int(rows.max() - rows.min() + 1) <= side
    assert int(cols.max() - cols.min() + 1) <= side
    assert int(rows.max() - rows.min() + 1) >= side - 2  # and close to it (zero-padding edge)


def test_patch_disc_config_checks():
    for bad in (dict(norm="batch"), dict(num_layers=0), dict(base_width=-1)):
        with pytest.raises(InputError):
            PatchDiscConfig(**bad)
    # Spectral norm is the default: the weights are parametrised.
    D = PatchDiscriminator(PatchDiscConfig(base_width=4))
    assert any("parametrizations" in n for n, _ in D.named_parameters())
    D_in = PatchDiscriminator(PatchDiscConfig(base_width=4, norm="instance"))
    assert any(isinstance(m, nn.InstanceNorm2d) for m in D_in.modules())


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_keeps_any_size():
    """The pad-and-crop is plain integer arithmetic, so a scripted network handles every size
    (what TorchScript export relies on)."""
    net = tiny_net()
    scripted = torch.jit.script(net)
    for h, w in [(37, 53), (3, 3), (40, 56)]:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=1e-6)
