"""The instant style pipeline (impasto.style.instant): Magenta's networks at the photo's own
resolution, style vectors blended and moved towards the photo's own, the 26 presets and their
blends, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import impasto
from impasto.errors import InputError, WeightsNotFoundError
from impasto.nets.magenta import FixedCondition
from impasto.style.instant import (
    NUM_PRESETS,
    PRESETS,
    InstantStyle,
    parse_preset,
    preset_label,
    square_crop,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(shared_data):
    from PIL import Image

    root = shared_data / "styletransfer"
    content = Image.open(root / "content" / "golden_gate.jpg").convert("RGB")
    content.thumbnail((160, 160))
    return {
        "content": content.crop((0, 0, 157, 103)),  # odd sides: not a multiple of 4
        "starry": root / "style" / "starry_night.jpg",
        "scream": root / "style" / "the_scream.jpg",
    }


def _t(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]


# -- presets ---------------------------------------------------------------------------------


def test_presets_have_numbers_and_names():
    assert len(PRESETS) == NUM_PRESETS == 26
    assert [PRESETS.get(n).index for n in PRESETS.names()] == list(range(26))
    assert all(n == n.lower() and " " not in n and not n[0].isdigit() for n in PRESETS.names())
    assert PRESETS.get("starry-blue").index == 19


@pytest.mark.parametrize("spec", [19, "19", " starry-blue ", "Starry-Blue", {19: 2.0},
                                  {"starry-blue": 1}, [0.0] * 19 + [3.0] + [0.0] * 6])
def test_one_preset_many_spellings(spec):
    assert parse_preset(spec).tolist() == torch.eye(26)[19].tolist()


def test_preset_blends_are_normalised():
    w = parse_preset("3:0.5,12:1.5")
    assert w[3] == pytest.approx(0.25) and w[12] == pytest.approx(0.75) and w.sum() == 1
    assert torch.equal(parse_preset("3,12"), parse_preset({3: 1, 12: 1}))
    assert torch.equal(parse_preset("3,abstract-swirl:1"), torch.eye(26)[3])
    assert preset_label(parse_preset(19)) == "19 starry-blue"
    assert preset_label(parse_preset("3:1,12:3")) == "3:0.25,12:0.75"


@pytest.mark.parametrize("spec, message", [
    (40, "preset 40 does not exist; give a number 0-25 or a preset name"),
    ("-1", "preset -1 does not exist"),
    ("nope", "unknown preset 'nope'; give a number 0-25 or a preset name"),
    ("3:x", "preset blend '3:x' does not parse; write e.g. 19 or 3:0.5,12:0.5"),
    ("3:-1", "weights must be non-negative"),
    ("3:0,4:0", "the weights must sum to something positive"),
    (" , ", "empty preset"),
    ([1.0, 2.0], "needs 26 weights, not 2"),
    (True, "give a number 0-25"),
    (2.5, "give a number 0-25"),
])
def test_bad_presets_are_one_line(spec, message):
    with pytest.raises(InputError) as e:
        parse_preset(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


# -- the pipeline ----------------------------------------------------------------------------


def test_exported_and_at_the_photos_resolution(inst, photos):
    assert impasto.InstantStyle is InstantStyle
    out = inst(photos["content"], photos["starry"], seed=3)
    assert out.size == (157, 103) and out.mode == "RGB"
    a, b = np.asarray(out, np.float32), np.asarray(photos["content"], np.float32)
    assert np.abs(a - b).mean() > 20  # styled, not the photo
    again = inst(photos["content"], photos["starry"], seed=4)  # seed changes nothing
    assert np.array_equal(np.asarray(again), np.asarray(out))
    t = inst(_t(photos["content"])[0], photos["starry"])
    assert t.shape == (3, 103, 157) and t.dtype == torch.float32
    assert np.abs(t.permute(1, 2, 0).numpy() * 255 - a).max() <= 1.0


def test_the_pipeline_runs_the_networks(inst, photos):
    x = _t(photos["content"])
    with torch.no_grad():
        direct = inst.multistyle(x, torch.eye(26)[7:8])
        v = inst.predictor(square_crop(_t(__import__("PIL").Image.open(photos["scream"])
                                          .convert("RGB"))))
        arbitrary = inst.transformer(x, v)
    # the runner works in NHWC, whose norm statistics sum in another order: 1.6e-5 apart
    assert torch.allclose(inst(x, preset=7), direct, atol=1e-4)
    assert torch.allclose(inst(x, 7), direct, atol=1e-4)  # a number as the style is a preset
    assert torch.allclose(inst(x, photos["scream"]), arbitrary, atol=1e-4)


def test_style_vectors_blend_and_move_towards_the_photo(inst, photos):
    x = _t(photos["content"])
    va, vb = inst.style_vectors([_t(__import__("PIL").Image.open(p).convert("RGB"))
                                 for p in (photos["starry"], photos["scream"])])
    own = inst.style_vectors([x])[0]
    s = inst.stylizer([photos["starry"], photos["scream"]], weights=[3, 1])
    assert isinstance(s, FixedCondition)
    assert torch.allclose(s.cond[0], 0.75 * va + 0.25 * vb, atol=1e-5)
    s = inst.stylizer(photos["starry"], strength=0.4, content=x)
    assert torch.allclose(s.cond[0], 0.4 * va + 0.6 * own, atol=1e-5)
    # Strength 0: the photo's own style, the same as the photo given as its style.
    assert torch.allclose(inst(x, photos["starry"], strength=0), inst(x, x), atol=1e-6)
    one = inst(x, [photos["starry"], photos["scream"]], weights=[1, 0])
    assert torch.allclose(one, inst(x, photos["starry"]), atol=1e-6)


def test_preset_strength_blends_with_the_photo(inst, photos):
    x = _t(photos["content"])
    full = inst(x, preset="starry-blue")
    assert torch.allclose(inst(x, preset=19, strength=0), x, atol=1e-6)
    assert torch.allclose(inst(x, preset=19, strength=0.25), 0.25 * full + 0.75 * x, atol=1e-5)
    mix = inst(x, preset="3:0.5,12:0.5")
    assert not torch.allclose(mix, inst(x, preset=3), atol=0.05)


def test_batches_move_each_image_towards_its_own_style(inst, photos):
    x = _t(photos["content"])
    batch = torch.cat([x, x.flip(-1)])
    out = inst(batch, photos["starry"], strength=0.5)
    assert out.shape == batch.shape
    assert torch.allclose(out[1:], inst(x.flip(-1), photos["starry"], strength=0.5), atol=1e-6)


def test_bf16_is_close_to_fp32(inst, photos):
    x = _t(photos["content"])
    a = inst(x, photos["starry"], output="tensor")
    b = inst(x, photos["starry"], precision="bf16", output="tensor")
    psnr = 10 * torch.log10(1 / ((a - b) ** 2).mean())
    assert psnr > 35


def test_fake_quantisation_runs_in_fp32(photos):
    fq = InstantStyle.from_file(device="cpu", fake_quant=True)
    out = fq(photos["content"], photos["starry"], output="tensor")
    plain = InstantStyle.from_file(device="cpu", precision="fp32")
    ref = plain(photos["content"], photos["starry"], output="tensor")
    assert 0 < float((out - ref).abs().mean()) < 0.1
    with pytest.raises(InputError, match="fake quantisation runs in fp32"):
        fq(photos["content"], photos["starry"], precision="bf16")


@pytest.mark.parametrize("kwargs, message", [
    ({"style": "S", "preset": 3}, "give a style image or a preset, not both"),
    ({}, "give a style image or a preset"),
    ({"style": "S", "strength": 1.5}, "strength must lie in [0, 1], not 1.5"),
    ({"style": "S", "strength": "x"}, "strength must be a number in [0, 1]"),
    ({"style": ["S", "S"], "weights": [1]}, "1 style blend weights for 2 style image(s)"),
    ({"style": ["S", "S"], "weights": [1, -1]}, "must be non-negative with a positive sum"),
    ({"preset": 3, "weights": [1]}, "blend weights are for style images"),
    ({"style": "S", "output": "png"}, "output must be one of pil, tensor"),
    ({"style": "S", "precision": "int4"}, "unknown precision 'int4'"),
    ({"style": []}, "no style image given"),
])
def test_bad_input_is_one_line(inst, photos, kwargs, message):
    if kwargs.get("style") == "S":
        kwargs["style"] = photos["starry"]
    elif isinstance(kwargs.get("style"), list) and kwargs["style"]:
        kwargs["style"] = [photos["starry"]] * len(kwargs["style"])
    with pytest.raises(InputError) as e:
        inst(photos["content"], **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_style_that_is_not_an_image(inst, photos, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="notes.txt"):
        inst(photos["content"], bad)


def test_from_a_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="arbitrary_predict.onnx; install"):
        InstantStyle.from_file(tmp_path)
