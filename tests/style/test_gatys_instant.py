"""``init="instant"``: Gatys starting from the instant result, made with the style at Gatys'
scale and in its colours (style/instant/gatys_start.py); the real instant networks on a tiny
random VGG, at a few dozen pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import impasto
from impasto.errors import InputError
from impasto.io import resize_tensor
from impasto.style import GatysConfig, GatysStyleTransfer
from impasto.style.color import rgb_to_yiq
from impasto.style.instant.gatys_start import style_crops

from conftest import one_line_error, smooth_image, tiny_vgg

pytestmark = pytest.mark.usefixtures("one_thread")


def _transfer(inst, **kw):
    base = dict(size=64, iterations=0, precision="fp32", device="cpu", scales=1,
                init="instant")
    base.update(kw)
    t = GatysStyleTransfer(GatysConfig(**base), encoder=tiny_vgg())
    t.instant = inst
    return t


def _styles():
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(256, 256),
                                        mode="nearest") * torch.tensor([1.0, 0.3, 0.2]).view(
        1, 3, 1, 1)
    b = smooth_image(4, 300, 400) ** 0.5
    return a, b


def test_the_start_is_the_instant_result_at_gatys_style_scale(inst):
    content = smooth_image(1, 48, 64)
    a, _ = _styles()
    # Gatys' style side 4 * 64 = 256: its style image is a's 256 px square, which is exactly
    # what the instant network's predictor sees, so the start is InstantStyle's own result.
    t = _transfer(inst, style_scale=4.0)
    out = t.run(content, [a])
    ref = inst(content, a, output="tensor")
    assert (out - ref).abs().max() < 1e-5
    # an iteration moves away from it (the output is Gatys', from that start)
    moved = _transfer(inst, style_scale=4.0, iterations=2).run(content, [a])
    assert (moved - ref).abs().mean() > 1e-3
    # the Python API spellings give the same start
    for got in (t(content, a, init="instant", output="tensor"),
                _transfer(inst, style_scale=4.0, init="content")(content, a, init="instant",
                                                                  output="tensor")):
        assert (got - ref).abs().max() < 1e-5


def test_a_style_seen_at_a_smaller_scale_makes_larger_strokes(inst):
    content = smooth_image(1, 48, 64)
    _, b = _styles()
    # style side 384: b (300x400) becomes 288x384, seen as a 2x2 grid of 256 px crops
    crops, zoom = style_crops(torch.zeros(1, 3, 288, 384))
    assert zoom == 1.0 and [c.shape[-2:] for c in crops] == [(256, 256)] * 4
    big = _transfer(inst, style_scale=6.0).instant_start(content, [b])
    b_g = resize_tensor(b, (288, 384)).clamp(0, 1)  # Gatys' resize of the style
    v = inst.style_vectors([b_g[..., t:t + 256, l:l + 256]
                            for t in (0, 32) for l in (0, 128)]).mean(0)
    from impasto.nets.magenta import FixedCondition

    ref = inst.runner(FixedCondition(inst.transformer, v))(content)
    assert (big - ref).abs().max() < 1e-5
    # style side 64: the predictor sees b magnified 4.6x (its 64 x 48 copy's centre at 256),
    # so the network runs on a photo shrunk as much: a smoother, coarser result
    small = _transfer(inst).instant_start(content, [b])
    assert small.shape == big.shape

    def detail(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean()

    assert detail(small) < 0.8 * detail(big)


def test_blend_weights_and_masks_pick_the_styles(inst):
    content = smooth_image(2, 40, 64)
    a, b = _styles()
    only_a = _transfer(inst).instant_start(content, [a])
    only_b = _transfer(inst).instant_start(content, [b])
    pick_a = _transfer(inst, style_blend_weights=(1.0, 0.0)).instant_start(content, [a, b])
    assert (pick_a - only_a).abs().max() < 1e-5
    mixed = _transfer(inst, style_blend_weights=(1.0, 1.0)).instant_start(content, [a, b])
    assert (mixed - only_a).abs().mean() > 0.01 and (mixed - only_b).abs().mean() > 0.01
    masks = torch.zeros(2, 40, 64)
    masks[0, :, :32] = 1
    masks[1, :, 32:] = 1
    t = _transfer(inst)
    split = t(content, [a, b], masks=masks, output="tensor")
    assert (split[..., :30] - only_a[..., :30]).abs().max() < 1e-5
    assert (split[..., 34:] - only_b[..., 34:]).abs().max() < 1e-5


def test_colour_modes_reach_the_start(inst):
    content = smooth_image(5, 48, 64) * torch.tensor([0.3, 0.5, 1.0]).view(1, 3, 1, 1)
    a, _ = _styles()  # a red style on a blue photo
    plain = _transfer(inst).instant_start(content, [a])
    hist = _transfer(inst, preserve_color="histogram").instant_start(content, [a])

    def mean_rgb(x):
        return x.mean((0, 2, 3))

    target = mean_rgb(content)
    assert (mean_rgb(hist) - target).abs().sum() < 0.5 * (mean_rgb(plain) - target).abs().sum()
    # luminance: Gatys starts from the start's luminance; the output keeps the photo's chroma
    out = _transfer(inst, preserve_color="luminance").run(content, [a])
    iq = rgb_to_yiq((out * 255).round() / 255)[:, 1:]
    inside = ((out > 0.02) & (out < 0.98)).all(1, keepdim=True).expand_as(iq)
    assert inside.float().mean() > 0.5
    assert (iq - rgb_to_yiq(content)[:, 1:])[inside].abs().max() < 0.02


def test_a_bad_init_is_refused():
    with pytest.raises(InputError, match="init must be one of content, noise, instant"):
        GatysConfig(init="photo").validate(1)


def test_impasto_stylize_and_the_command_line(inst, tmp_path, capsys):
    from PIL import Image

    from impasto.cli import main
    from impasto.io import to_pil, to_tensor

    content = to_pil(smooth_image(6, 48, 64)[0])
    style = to_pil(_styles()[1][0])
    cp, sp, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "o.png"
    content.save(cp)
    style.save(sp)
    kw = dict(size=64, iterations=0, precision="fp32", device="cpu", scales=1)
    api = impasto.stylize(cp, sp, init="instant", **kw)
    ref = _transfer(inst).instant_start(to_tensor(content), [to_tensor(style)])
    assert np.abs(np.asarray(api, np.float32) - np.asarray(to_pil(ref[0]), np.float32)).max() <= 1
    rc = main(["stylize", str(cp), "-s", str(sp), "--init", "instant", "--iterations", "0",
               "--size", "64", "--scales", "1", "--precision", "fp32", "--device", "cpu",
               "-q", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "the output is the instant result" in err
    assert np.abs(np.asarray(Image.open(out), np.float32)
                  - np.asarray(api, np.float32)).max() <= 1


@pytest.mark.parametrize("extra, message", [
    (["--preset", "3"], "--init"),
    (["--method", "instant"], "--init"),
    (["--strength", "0.5"], "--strength"),
])
def test_bad_combinations_exit_2(tmp_path, capsys, extra, message):
    from impasto.io import to_pil

    cp, out = tmp_path / "c.png", tmp_path / "o.png"
    to_pil(smooth_image(6, 48, 64)[0]).save(cp)
    one_line_error(capsys, ["stylize", str(cp), "-s", str(cp), "--init", "instant",
                            "--size", "48", "-o", str(out), *extra], message, out)


def test_missing_instant_weights_exit_2_before_the_run(tmp_path, capsys, monkeypatch):
    from impasto.io import to_pil

    cp, out = tmp_path / "c.png", tmp_path / "o.png"
    to_pil(smooth_image(6, 48, 64)[0]).save(cp)
    monkeypatch.setenv("IMPASTO_MAGENTA_PREDICT", str(tmp_path / "gone.onnx"))
    one_line_error(capsys, ["stylize", str(cp), "-s", str(cp), "--init", "instant",
                            "--size", "48", "-o", str(out)], "gone.onnx", out)


def test_the_instant_start_has_its_own_default_schedule():
    from impasto.style.gatys_config import INSTANT_ITERATIONS, SCHEDULE_RULE

    cfg = GatysConfig(size=512, init="instant")
    assert cfg.scale_sizes() == [512] and cfg.scale_iterations() == [INSTANT_ITERATIONS]
    assert f"from --init instant: full size only, {INSTANT_ITERATIONS}" in SCHEDULE_RULE
    # given scales or iterations are kept; the photo's default is unchanged
    assert GatysConfig(size=512, init="instant", scales=2).scale_iterations() == \
        [100, INSTANT_ITERATIONS]
    assert GatysConfig(size=512, init="instant", iterations=7).scale_iterations() == [7]
    assert GatysConfig(size=512).scale_iterations() == [100, 100, 150]
