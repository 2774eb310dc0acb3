"""The classifier networks: their config round-trips, they normalise inside, ``features`` is the
input of the last layer, channels_last changes nothing, and bad configs/inputs are one-line
InputErrors."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.nets.classifier import (
    CLASSIFIER_ARCHS,
    ClassifierNetConfig,
    LeNet5,
    ResNetClassifier,
    build_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch: str, **kw) -> ClassifierNetConfig:
    opts = dict(in_channels=1 if arch == "lenet" else 3, image_size=16, num_classes=4, width=4)
    if arch == "resnet":
        opts["blocks"] = 1
    opts.update(kw)
    return ClassifierNetConfig(arch, **opts)


def test_registry_builds_the_documented_networks():
    assert set(CLASSIFIER_ARCHS) == {"lenet", "resnet"}
    assert isinstance(build_classifier(tiny("lenet")), LeNet5)
    assert isinstance(build_classifier(tiny("resnet")), ResNetClassifier)
    # default widths: features of 128 for both
    lenet = build_classifier(ClassifierNetConfig("lenet"))
    assert (lenet.in_channels, lenet.image_size, lenet.num_classes, lenet.feature_dim) == (
        1, 28, 10, 128)
    resnet = build_classifier(ClassifierNetConfig("resnet", in_channels=3, image_size=32))
    assert resnet.feature_dim == 128
    # ResNet-20 layout: 3 stages of 3 blocks = 19 conv layers + 2 projection shortcuts + head
    r20 = build_classifier(ClassifierNetConfig("resnet", in_channels=3, image_size=32,
                                               width=16, blocks=3))
    convs = [m for m in r20.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 + 2
    # He et al.'s ResNet-20 has 269,722 parameters with zero-padding shortcuts; the two 1x1
    # projections (16->32, 32->64, each with batch norm) add 512 + 64 + 2048 + 128
    assert sum(p.numel() for p in r20.parameters()) == 269_722 + 2_752


@pytest.mark.parametrize("arch", ["lenet", "resnet"])
def test_config_round_trip_rebuilds_the_same_function(arch):
    cfg = tiny(arch, mean=(0.2,) * (1 if arch == "lenet" else 3), class_names=list("abcd"))
    d = cfg.to_dict()
    assert isinstance(d["class_names"], list) and d["class_names"] == list("abcd")
    again = ClassifierNetConfig.from_dict(d)
    assert again == cfg
    torch.manual_seed(0)
    a = build_classifier(cfg).eval()
    b = build_classifier(d).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, cfg.in_channels, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a(x), b(x))
    assert b.class_names == list("abcd")


@pytest.mark.parametrize("arch", ["lenet", "resnet"])
def test_features_feed_the_head_and_normalisation_is_inside(arch):
    torch.manual_seed(0)
    cfg = tiny(arch)
    net = build_classifier(cfg).eval()
    c = cfg.in_channels
    x = torch.rand(5, c, 16, 16, generator=torch.Generator().manual_seed(2))
    f = net.features(x)
    assert f.shape == (5, net.feature_dim)
    assert (f >= 0).all()  # after a ReLU / pooling of ReLUs
    torch.testing.assert_close(net.head(f), net(x), rtol=0, atol=0)
    # a network told that the data have mean m and std s sees (x - m) / s: shifting both the
    # data and the stored mean by the same amount changes nothing
    shifted_cfg = tiny(arch, mean=(0.5 + 0.1,) * c)
    shifted = build_classifier(shifted_cfg).eval()
    shifted.load_state_dict({**net.state_dict(), "mean": shifted.mean})
    torch.testing.assert_close(shifted(x + 0.1), net(x), rtol=1e-5, atol=1e-5)
    assert float(shifted.mean.flatten()[0]) == pytest.approx(0.6)


@pytest.mark.parametrize("arch", ["lenet", "resnet"])
def test_channels_last_gives_the_same_logits(arch):
    torch.manual_seed(0)
    net = build_classifier(tiny(arch)).eval()
    x = torch.rand(4, net.in_channels, 16, 16, generator=torch.Generator().manual_seed(3))
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_resnet_blocks_start_as_identity():
    torch.manual_seed(0)
    net = build_classifier(tiny("resnet"))
    for block in net.blocks:
        assert torch.count_nonzero(block.bn2.weight) == 0


def test_wrong_input_shape_is_one_clear_line():
    net = build_classifier(tiny("lenet"))
    with pytest.raises(InputError, match=r"expects images \(N, 1, 16, 16\).*prepare_images"):
        net(torch.rand(2, 3, 16, 16))
    with pytest.raises(InputError, match=r"got shape \(2, 1, 20, 20\)"):
        net.features(torch.rand(2, 1, 20, 20))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(arch="vgg"), "unknown classifier architecture 'vgg'; choose from lenet, resnet"),
        (dict(in_channels=2), "in_channels must be 1 .grey. or 3"),
        (dict(image_size=4), "image_size must be a whole number >= 8"),
        (dict(num_classes=1), "num_classes must be a whole number >= 2"),
        (dict(dropout=1.0), "dropout must be a number from 0 to below 1"),
        (dict(std=(0.0,)), "std must be positive numbers"),
        (dict(mean=(0.1, 0.2)), "mean must be 1 number"),
        (dict(class_names=["a", "b"]), "class_names must be 4 names"),
        (dict(class_names=["a", "a", "b", "c"]), "class_names must be distinct"),
    ],
)
def test_bad_config_values(kw, message):
    opts = dict(arch="lenet", in_channels=1, image_size=16, num_classes=4)
    opts.update(kw)
    with pytest.raises(InputError, match=message):
        ClassifierNetConfig(**opts)


def test_from_dict_refuses_unknown_keys():
    d = tiny("lenet").to_dict()
    with pytest.raises(InputError, match="unknown classifier config key.*depth"):
        ClassifierNetConfig.from_dict({**d, "depth": 3})
