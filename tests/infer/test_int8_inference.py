"""How impasto chooses and calibrates int8 for per-style networks: the runner (auto, explicit,
refused), when it calibrates, the Python API (each image calibrates itself) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import one_line_error, smooth_image
from PIL import Image
from torch import nn

from impasto.errors import InputError
from impasto.infer.runner import InferenceRunner
from impasto.nets import int8 as int8_mod
from impasto.nets.int8 import Int8TransformerNet, int8_supported
from impasto.nets.transformer import TransformerConfig, TransformerNet
from impasto.style.fast import FastStyle, save_fast_style

needs_int8 = pytest.mark.skipif(not int8_supported("cpu"),
                                reason="no VNNI CPU or no quantised x86 engine")


def small_net(seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(TransformerConfig(channels=(8, 16, 16), num_residual=1)).eval()


@pytest.fixture
def calibrations(monkeypatch):
    """Records the shapes of the images each int8 calibration sees."""
    seen: list[list[tuple[int, ...]]] = []
    real = Int8TransformerNet.calibrate.__func__

    def spy(cls, net, images, **kw):
        images = list(images)
        seen.append([tuple(x.shape) for x in images])
        return real(cls, net, images, **kw)

    monkeypatch.setattr(Int8TransformerNet, "calibrate", classmethod(spy))
    return seen


@needs_int8
def test_auto_is_int8_for_a_per_style_network_on_this_cpu_and_close_to_fp32():
    x = smooth_image(0)
    auto = InferenceRunner(small_net(), device="cpu", tile=0)
    fp32 = InferenceRunner(small_net(), device="cpu", tile=0, precision="fp32")
    assert auto.int8 and not fp32.int8 and auto.compile_mode == "off"
    got, ref = auto(x), fp32(x)
    assert isinstance(auto.quantized, Int8TransformerNet)
    assert 0 < (got - ref).abs().max() < 0.1
    assert (got - ref).abs().mean() < 0.01
    # explicit compile "on" keeps a compilable precision
    assert not InferenceRunner(small_net(), device="cpu", compile="on").int8


def test_int8_refused_where_it_cannot_run():
    with pytest.raises(InputError, match="per-style networks"):
        InferenceRunner(nn.Conv2d(3, 3, 1), device="cpu", precision="int8")
    with pytest.raises(InputError, match="unknown precision"):
        InferenceRunner(small_net(), device="cpu", precision="int4")
    # a network int8 does not cover keeps bf16/fp32 under auto
    assert not InferenceRunner(nn.Conv2d(3, 3, 1), device="cpu").int8


def test_int8_refused_without_vnni(monkeypatch):
    monkeypatch.setattr(int8_mod, "_cpu_has_vnni", lambda: False)
    with pytest.raises(InputError, match="VNNI"):
        InferenceRunner(small_net(), device="cpu", precision="int8")
    assert not InferenceRunner(small_net(), device="cpu").int8


@needs_int8
def test_runner_calibrates_on_the_first_input_and_keeps_it(calibrations):
    r = InferenceRunner(small_net(), device="cpu", tile=0)
    a, b = smooth_image(1), smooth_image(2)
    r(a)
    first = r.quantized
    r(b)
    assert r.quantized is first and calibrations == [[(1, 3, 48, 64)]]
    # what the first image set is what b then gets; b alone calibrates differently
    alone = InferenceRunner(small_net(), device="cpu", tile=0)
    assert not torch.equal(r(b), alone(b))
    each = InferenceRunner(small_net(), device="cpu", tile=0, calibrate_each=True)
    each(a)
    assert torch.equal(each(b), alone(b))
    # calibrate() chooses the images
    r.calibrate([b])
    assert torch.equal(r(b), alone(b))


@needs_int8
def test_a_tiled_image_calibrates_on_the_whole_image(calibrations):
    r = InferenceRunner(small_net(), device="cpu", tile=32, overlap=8)
    x = smooth_image(3, 64, 80)
    y = r(x)
    assert calibrations == [[(1, 3, 64, 80)]]
    fp32 = InferenceRunner(small_net(), device="cpu", tile=32, overlap=8, precision="fp32")(x)
    assert y.shape == x.shape and (y - fp32).abs().mean() < 0.01


@needs_int8
def test_python_api_results_do_not_depend_on_earlier_images(tmp_path):
    path = save_fast_style(small_net(4), tmp_path / "m.pt", {"style": {"name": "x"}})
    a = Image.fromarray((smooth_image(5)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    b = Image.fromarray((smooth_image(6)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    model = FastStyle.load(path, device="cpu")
    model(a)
    after_a = np.asarray(model(b))
    fresh = np.asarray(FastStyle.load(path, device="cpu")(b))
    assert np.array_equal(after_a, fresh)
    fp32 = np.asarray(model(b, precision="fp32")).astype(int)
    diff = np.abs(fresh.astype(int) - fp32)
    assert 0 < diff.max() < 40 and diff.mean() < 2


def test_cli_int8_not_for_gatys(tmp_path, capsys):
    src = tmp_path / "c.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    out = tmp_path / "o.png"
    one_line_error(capsys, ["stylize", str(src), "-s", str(src), "-o", str(out),
                            "--precision", "int8"], "--model, --method adain", out)


@needs_int8
def test_cli_model_in_int8_writes_the_image(tmp_path, capsys):
    from impasto.cli import main

    path = save_fast_style(small_net(7), tmp_path / "m.pt", {"style": {"name": "x"}})
    src = tmp_path / "c.png"
    arr = (smooth_image(8)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(arr).save(src)
    outs = {}
    for precision in ("int8", "fp32"):
        out = tmp_path / f"{precision}.png"
        rc = main(["stylize", str(src), "--model", str(path), "-o", str(out), "-q",
                   "--device", "cpu", "--precision", precision])
        assert rc == 0, capsys.readouterr().err
        with Image.open(out) as im:
            assert json.loads(im.text["settings"])["precision"] == precision
            outs[precision] = np.asarray(im).astype(int)
    diff = np.abs(outs["int8"] - outs["fp32"])
    assert 0 < diff.max() < 40 and diff.mean() < 2
