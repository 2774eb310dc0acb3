"""AdaIN through the inference runtime (impasto.infer): tiles that keep the whole image's
content statistics, export of a stylizer with its styles fixed, and int8 (chosen, calibrated,
close to fp32)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import float_out, smooth_image
from conftest import psnr8 as psnr
from PIL import Image
from test_adain import encoder, images, make_decoder, pipeline

from impasto.infer.export import export_model
from impasto.infer.runner import InferenceRunner
from impasto.nets.int8 import int8_supported
from impasto.style.adain import AdaIN

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),  # deprecated, still supported
]

needs_int8 = pytest.mark.skipif(not int8_supported("cpu"),
                                reason="no VNNI CPU or no quantised x86 engine")


def eager(net, x):
    with torch.no_grad():
        return net(x)


# --------------------------------------------------------------------------------------------
# tiling and export


def test_adain_tiles_with_whole_image_statistics():
    ada = pipeline()
    content, a, b = images()
    content = torch.nn.functional.interpolate(content, size=(200, 264), mode="bilinear")
    whole = ada(content, a, tile=0)
    tiled = ada(content, a, tile=192)
    assert tiled.shape == whole.shape
    # the content statistics are the whole image's: much closer than tiles normalised on
    # their own (the generic tiling of the same module)
    naive = InferenceRunner(ada.stylizer([a]), device="cpu", precision="fp32", tile=192,
                            overlap=128)(content)
    err, err_naive = (tiled - whole).abs().mean(), (naive - whole).abs().mean()
    assert err < 2e-3 and err < err_naive / 4
    masks = torch.zeros(2, 200, 264)
    masks[0, :, :120] = 1
    masks[1, :, 120:] = 1
    whole_m = ada(content, [a, b], masks=masks, tile=0)
    tiled_m = ada(content, [a, b], masks=masks, tile=192)
    assert (tiled_m - whole_m).abs().mean() < 2e-3
    assert (whole_m - whole).abs().mean() > 1e-2


def test_torchscript_adain_stylizer_matches_eager(tmp_path):
    ada = pipeline()
    content, a, b = images()
    st = ada.stylizer([a, b], weights=[1, 2], alpha=0.8)
    report = export_model(st, tmp_path / "adain.pt", "torchscript", size=(48, 40))
    assert report.max_abs_diff < 1e-5
    loaded = torch.jit.load(str(tmp_path / "adain.pt"))
    with torch.no_grad():
        assert (loaded(content) - st(content)).abs().max() < 1e-5
    # the exported module is the same stylisation the pipeline produces
    assert (eager(st, content) - ada(content, [a, b], weights=[1, 2], alpha=0.8)).abs().max() < 1e-5


def test_onnx_adain_stylizer_matches_eager_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    ada = pipeline()
    content, a, _ = images()
    st = ada.stylizer([a], alpha=0.6)
    # the legacy exporter is quick; the CLI test below runs the default (dynamo) one
    report = export_model(st, tmp_path / "adain.onnx", "onnx", size=(48, 40),
                          onnx_exporter="legacy")
    assert report.runtime.startswith("onnxruntime")
    assert report.max_abs_diff < 1e-4
    sess = ort.InferenceSession(str(tmp_path / "adain.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 37, 70)
    y = sess.run(None, {"image": x.numpy()})[0]
    assert y.shape == (2, 3, 37, 70)
    assert np.abs(y - eager(st, x).numpy()).max() < 1e-4


# --------------------------------------------------------------------------------------------
# int8


def tiny_adain():
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

    def spy(stylizer, images, **kw):
        images = list(images)
        seen.append([tuple(x.shape) for x in images])
        return real(stylizer, images, **kw)

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
    for path, seed in ((src, 9), (style, 10)):
        arr = smooth_image(seed)[0].permute(1, 2, 0).numpy() * 255
        Image.fromarray(arr.astype(np.uint8)).save(path)
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


# --------------------------------------------------------------------------------------------
# the precision: decided once per pipeline call


def test_adain_decides_the_precision_once_per_call(monkeypatch):
    import impasto.infer.runner as runner_mod
    import impasto.style.adain.pipeline as adain_mod

    ada = pipeline(precision="bf16")
    content, a, b = images()
    calls = []
    real = adain_mod.decide_precision

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(adain_mod, "decide_precision", counting)
    monkeypatch.setattr(runner_mod, "decide_precision", counting)
    # histogram colour: new statistics and a new runner for every batch, one decision
    apply = ada.transform([a, b], preserve_color="histogram", tile=0)
    for _ in range(3):
        y = apply(content)
    assert calls == ["bf16"] and apply.precision == "bf16" and y.dtype == torch.float32
    ada(content, [a, b], tile=0)
    assert calls == ["bf16", "bf16"]
    # the statistics and the network run in that precision: bf16, not fp32
    ref = pipeline(precision="fp32")(content, [a, b], tile=0)
    diff = (ada(content, [a, b], tile=0) - ref).abs().max()
    assert 0 < diff < 0.05
