"""How impasto chooses and calibrates int8 for per-style networks: the runner (auto, explicit,
refused), when it calibrates, the Python API (each image calibrates itself) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import float_out, one_line_error
from conftest import psnr8 as psnr
from PIL import Image
from torch import nn

from impasto.errors import InputError
from impasto.nets import int8 as int8_mod
from impasto.nets.int8 import Int8TransformerNet, int8_supported
from impasto.nets.transformer import TransformerConfig, TransformerNet
from impasto.style.apply import InferenceRunner
from impasto.style.fast import FastStyle, save_fast_style

needs_int8 = pytest.mark.skipif(not int8_supported("cpu"),
                                reason="no VNNI CPU or no quantised x86 engine")


def small_net(seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(TransformerConfig(channels=(8, 16, 16), num_residual=1)).eval()


def image(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth noise, closer to a photo than white noise
    return torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g),
                                           size=(h, w), mode="bilinear", align_corners=False)


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
    x = image(0)
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
    a, b = image(1), image(2)
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
    x = image(3, 64, 80)
    y = r(x)
    assert calibrations == [[(1, 3, 64, 80)]]
    fp32 = InferenceRunner(small_net(), device="cpu", tile=32, overlap=8, precision="fp32")(x)
    assert y.shape == x.shape and (y - fp32).abs().mean() < 0.01


@needs_int8
def test_python_api_results_do_not_depend_on_earlier_images(tmp_path):
    path = save_fast_style(small_net(4), tmp_path / "m.pt", {"style": {"name": "x"}})
    a = Image.fromarray((image(5)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    b = Image.fromarray((image(6)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
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
    arr = (image(8)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
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


# --------------------------------------------------------------------------------------------
# AdaIN


def tiny_adain():
    from test_adain import encoder, images, make_decoder

    from impasto.style.adain import AdaIN

    return AdaIN(make_decoder(), encoder(), device="cpu", precision="fp32"), images()


@needs_int8
def test_int8_adain_is_close_to_fp32_and_keeps_styles_weights_masks_and_alpha():
    from impasto.nets.int8 import Int8AdaINDecoder, Int8VGGFeatures, quantize_adain

    ada, (content, sa, sb) = tiny_adain()
    masks = torch.zeros(2, 44, 60)
    masks[0, :, :30], masks[1, :, 30:] = 1, 1
    for kw in (dict(weights=[0.3, 0.7], alpha=0.8), dict(masks=masks)):
        st = ada.stylizer([sa, sb], **kw)
        q = quantize_adain(st, [content])
        assert isinstance(q.encoder, Int8VGGFeatures) and isinstance(q.decoder, Int8AdaINDecoder)
        assert q.alpha == st.alpha and torch.equal(q.weights, st.weights)
        assert torch.equal(q.style_mean, st.style_mean)
        assert (q.masks is None) == (st.masks is None)
        ref, got = float_out(st, content), float_out(q, content)
        assert got.shape == ref.shape and got.dtype == torch.float32
        # measured 36-37 dB with this tiny random network
        assert psnr(got, ref) > 33, kw
    # the features themselves: relu4_1 within a few percent
    x = content
    f_ref = float_out(st.encoder, x)["relu4_1"]
    f_q = float_out(q.encoder, x)["relu4_1"]
    assert (f_q - f_ref).norm() / f_ref.norm() < 0.06  # measured 0.038


@needs_int8
def test_adain_defaults_to_int8_and_tiles_calibrate_on_the_whole_image(monkeypatch):
    import impasto.nets.int8 as int8_mod

    ada, (content, sa, _) = tiny_adain()
    seen = []
    real = int8_mod.quantize_adain

    def spy(stylizer, images):
        images = list(images)
        seen.append([tuple(x.shape) for x in images])
        return real(stylizer, images)

    monkeypatch.setattr(int8_mod, "quantize_adain", spy)
    x = torch.nn.functional.interpolate(content, size=(96, 128), mode="bilinear")
    tiled = ada.runner(ada.stylizer([sa]), precision="auto", tile=64)
    assert tiled.int8 and tiled.precision == "int8"
    y = tiled(x)
    assert seen == [[(1, 3, 96, 128)]]
    ref = ada.runner(ada.stylizer([sa]), precision="fp32", tile=64)(x)
    assert psnr(y, ref) > 30
    # the Python API call picks int8 too (auto) and calibrates on its own input
    auto = type(ada)(ada.decoder, ada.encoder, device="cpu")  # precision auto
    out = auto(x, sa)
    assert len(seen) == 2 and psnr(out, ada(x, sa)) > 30


@needs_int8
def test_cli_adain_in_int8_writes_the_image_and_records_it(tmp_path, capsys):
    from impasto.cli import main
    from impasto.nets.adain import AdaINDecoder
    from impasto.style.adain import save_decoder

    torch.manual_seed(0)
    dec = save_decoder(tmp_path / "dec.pt", AdaINDecoder(),
                       encoder={"weights": "caffe", "widths": [64, 128, 256, 512],
                                "layer": "relu4_1"})
    src, style = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray((image(9)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src)
    Image.fromarray((image(10)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(style)
    outs = {}
    for precision in ("auto", "fp32"):
        out = tmp_path / f"{precision}.png"
        rc = main(["stylize", str(src), "--method", "adain", "--decoder", str(dec), "-s",
                   str(style), "-o", str(out), "-q", "--device", "cpu",
                   "--precision", precision])
        assert rc == 0, capsys.readouterr().err
        with Image.open(out) as im:
            want = "int8" if precision == "auto" else "fp32"
            assert json.loads(im.text["settings"])["precision"] == want
            outs[precision] = np.asarray(im).astype(int)
    assert np.abs(outs["auto"] - outs["fp32"]).mean() < 3


@needs_int8
def test_adain_recalibration_reuses_packed_weights_and_matches_a_fresh_one():
    from impasto.nets.int8 import _PACKED, quantize_adain

    ada, (content, sa, sb) = tiny_adain()
    st = ada.stylizer([sa])
    other = torch.nn.functional.interpolate(sb, size=(40, 56), mode="bilinear")
    first = quantize_adain(st, [other])
    again = quantize_adain(st, [content])
    conv = st.encoder.body["conv1_1"]
    assert conv in _PACKED
    # the same packed weights, each with the ranges of its own calibration
    assert again.encoder.body["conv1_1"].packed is first.encoder.body["conv1_1"].packed
    assert again.encoder.body["conv1_1"].scale != first.encoder.body["conv1_1"].scale
    _PACKED.clear()
    fresh = quantize_adain(st, [content])
    assert torch.equal(float_out(again, content), float_out(fresh, content))
    # changed weights are packed again
    with torch.no_grad():
        conv.weight.mul_(0.5)
    changed = quantize_adain(st, [content])
    assert changed.encoder.body["conv1_1"].packed is not fresh.encoder.body["conv1_1"].packed
