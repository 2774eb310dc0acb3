"""The FID Inception-v3: the reference's state-dict keys and shapes (strict loading), its input
handling (bilinear 299, [-1, 1]), its FID-specific blocks, and the weight-file errors.

The real weight file (pt_inception-2015-12-05-6726825d.pth) is not available here, so the
reference's key -> shape table is written out below from the published structure of the
pytorch-fid / torch-fidelity port (torchvision's Inception3 layout, 1008 classes, no auxiliary
head), independently of impasto.nets.inception, and a file with those keys is built in tmp_path.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import InputError, WeightsNotFoundError
from impasto.nets.inception import (
    FID_INCEPTION,
    FIDInceptionV3,
    InceptionA,
    InceptionE,
    load_fid_inception,
    resolve_inception_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _convs() -> list[tuple[str, int, int, int, int]]:
    """(module, in, out, kh, kw) of every conv + batch-norm unit of the reference."""
    out = [
        ("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3),
        ("Conv2d_2b_3x3", 32, 64, 3, 3), ("Conv2d_3b_1x1", 64, 80, 1, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 3),
    ]
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        out += [
            (f"{name}.branch1x1", cin, 64, 1, 1), (f"{name}.branch5x5_1", cin, 48, 1, 1),
            (f"{name}.branch5x5_2", 48, 64, 5, 5), (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{name}.branch3x3dbl_2", 64, 96, 3, 3), (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
            (f"{name}.branch_pool", cin, pool, 1, 1),
        ]
    out += [
        ("Mixed_6a.branch3x3", 288, 384, 3, 3), ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
        ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
    ]
    for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        out += [
            (f"{name}.branch1x1", 768, 192, 1, 1), (f"{name}.branch7x7_1", 768, c, 1, 1),
            (f"{name}.branch7x7_2", c, c, 1, 7), (f"{name}.branch7x7_3", c, 192, 7, 1),
            (f"{name}.branch7x7dbl_1", 768, c, 1, 1), (f"{name}.branch7x7dbl_2", c, c, 7, 1),
            (f"{name}.branch7x7dbl_3", c, c, 1, 7), (f"{name}.branch7x7dbl_4", c, c, 7, 1),
            (f"{name}.branch7x7dbl_5", c, 192, 1, 7), (f"{name}.branch_pool", 768, 192, 1, 1),
        ]
    out += [
        ("Mixed_7a.branch3x3_1", 768, 192, 1, 1), ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
        ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
        ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
    ]
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        out += [
            (f"{name}.branch1x1", cin, 320, 1, 1), (f"{name}.branch3x3_1", cin, 384, 1, 1),
            (f"{name}.branch3x3_2a", 384, 384, 1, 3), (f"{name}.branch3x3_2b", 384, 384, 3, 1),
            (f"{name}.branch3x3dbl_1", cin, 448, 1, 1), (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
            (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3),
            (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1), (f"{name}.branch_pool", cin, 192, 1, 1),
        ]
    return out


def reference_shapes(num_batches_tracked: bool = True) -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, kh, kw in _convs():
        table[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for buf in ("weight", "bias", "running_mean", "running_var"):
            table[f"{name}.bn.{buf}"] = (cout,)
        if num_batches_tracked:
            table[f"{name}.bn.num_batches_tracked"] = ()
    table["fc.weight"] = (1008, 2048)
    table["fc.bias"] = (1008,)
    return table


def reference_state(seed: int = 0, num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors with the reference's keys and shapes (positive running variances)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in reference_shapes(num_batches_tracked).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / FID_INCEPTION.filename
    torch.save(reference_state(), path)
    return path


def test_keys_and_shapes_equal_the_reference():
    with torch.device("meta"):
        net = FIDInceptionV3()
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == reference_shapes()
    assert len(ours) == 566 and len(_convs()) == 94


def test_keys_and_shapes_equal_torchvisions_fid_layout():
    # pytorch-fid loads the file into torchvision's Inception3(num_classes=1008,
    # aux_logits=False): a second, independent source of the same table.
    models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        tv = models.inception_v3(weights=None, num_classes=1008, aux_logits=False,
                                 init_weights=False)
        net = FIDInceptionV3()
    assert {k: tuple(v.shape) for k, v in tv.state_dict().items()} == {
        k: tuple(v.shape) for k, v in net.state_dict().items()
    }


def test_reference_file_loads_strictly_with_and_without_batch_counters(tmp_path, weights_file):
    net = FIDInceptionV3(weights=weights_file)
    state = reference_state()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.bn.running_var", "fc.bias"):
        assert torch.equal(net.state_dict()[key], state[key]), key
    old_style = tmp_path / "old.pth"  # files saved before batch norm counted batches
    torch.save(reference_state(seed=1, num_batches_tracked=False), old_style)
    net2 = FIDInceptionV3(weights=old_style)
    assert torch.equal(net2.fc.weight, reference_state(seed=1)["fc.weight"])


def test_wrong_files_are_refused_with_the_reason(tmp_path):
    state = reference_state()
    del state["Mixed_6b.branch7x7_2.conv.weight"]
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(InputError, match=r"not the FID Inception-v3 weights \(missing "
                       r"Mixed_6b.branch7x7_2.conv.weight; unexpected AuxLogits.fc.weight"):
        FIDInceptionV3(weights=bad)
    state = reference_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's 1000 ImageNet classes
    torch.save(state, bad)
    with pytest.raises(InputError, match=r"wrong shapes fc.weight \(1000, 2048\) != "
                       r"\(1008, 2048\)"):
        FIDInceptionV3(weights=bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pth: cannot read the Inception weights"):
        FIDInceptionV3(weights=junk)


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch, weights_file):
    monkeypatch.delenv(FID_INCEPTION.env_var, raising=False)
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_inception_weights()
    msg = str(e.value)
    assert "\n" not in msg
    assert FID_INCEPTION.url in msg and "--weights" in msg and FID_INCEPTION.env_var in msg
    assert FID_INCEPTION.url.startswith("https://github.com/mseitzer/pytorch-fid/releases/")
    with pytest.raises(WeightsNotFoundError, match=r"not found: .*nothere.pth; download"):
        resolve_inception_weights(tmp_path / "nothere.pth")
    monkeypatch.setenv(FID_INCEPTION.env_var, str(weights_file))
    assert resolve_inception_weights() == weights_file
    net = load_fid_inception()
    assert net.sha256 != "" and not net.training


def test_input_is_resized_bilinearly_to_299_and_scaled_to_minus_one_one(weights_file):
    net = FIDInceptionV3(weights=weights_file)
    seen = {}
    net.Conv2d_1a_3x3.register_forward_hook(lambda m, i, o: seen.__setitem__("in", i[0]))
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    pool, logits = net(x)
    expected = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    torch.testing.assert_close(seen["in"], expected, rtol=0, atol=1e-6)
    assert seen["in"].min() >= -1 and seen["in"].max() <= 1
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(pool).all() and (pool >= 0).all()  # a mean of ReLU outputs
    torch.testing.assert_close(logits, pool @ net.fc.weight.T + net.fc.bias)
    torch.testing.assert_close(net.unbiased_logits(pool), pool @ net.fc.weight.T)
    assert (pool[0] - pool[1]).abs().max() > 0  # the image reaches the features
    # Grey images are RGB images with three equal channels.
    grey = x[:, :1]
    torch.testing.assert_close(net(grey)[0], net(grey.expand(-1, 3, -1, -1))[0])
    with pytest.raises(InputError, match=r"\(N, 1 or 3, H, W\)"):
        net(torch.rand(1, 4, 32, 32))


def test_fid_specific_pools():
    torch.manual_seed(0)
    x = torch.rand(1, 192, 9, 9) + 1.0  # positive, so zero padding would lower border means
    block = InceptionA(192, pool_features=32).eval()
    seen = {}
    block.branch_pool.register_forward_hook(lambda m, i, o: seen.__setitem__("in", i[0]))
    block(x)
    tf_style = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    torch_style = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
    torch.testing.assert_close(seen["in"], tf_style)
    assert (seen["in"][..., 0, 0] - torch_style[..., 0, 0]).abs().min() > 0.3  # corner: 4 vs 9

    x = torch.randn(1, 2048, 5, 5)
    for pool, ref in (("max", F.max_pool2d(x, 3, stride=1, padding=1)),
                      ("avg", F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))):
        block = InceptionE(2048, pool=pool).eval()
        block.branch_pool.register_forward_hook(lambda m, i, o: seen.__setitem__("in", i[0]))
        out = block(x)
        torch.testing.assert_close(seen["in"], ref)
        assert out.shape == (1, 2048, 5, 5)
    with torch.device("meta"):
        net = FIDInceptionV3()
    assert (net.Mixed_7b.pool, net.Mixed_7c.pool) == ("avg", "max")
