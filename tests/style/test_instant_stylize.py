"""``impasto.stylize(..., method="instant")`` and ``impasto.stylize(content, preset=...)``:
the same pixels as :class:`InstantStyle`, at the content's size, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import impasto
from impasto.errors import InputError
from impasto.style.instant.pipeline import _shared

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(shared_data):
    root = shared_data / "styletransfer"
    content = Image.open(root / "content" / "golden_gate.jpg").convert("RGB")
    content.thumbnail((64, 64))
    return {"content": content.crop((0, 0, 61, 41)),
            "starry": Image.open(root / "style" / "starry_night.jpg").convert("RGB").resize(
                (64, 64)),
            "scream": Image.open(root / "style" / "the_scream.jpg").convert("RGB").resize(
                (64, 64))}


def _a(img) -> np.ndarray:
    return np.asarray(img, np.float32)


def test_a_painting_as_the_pipeline(photos, inst):
    out = impasto.stylize(photos["content"], photos["starry"], method="instant",
                          precision="fp32", device="cpu")
    assert out.size == (61, 41)
    ref = inst(photos["content"], photos["starry"])
    assert np.abs(_a(out) - _a(ref)).max() <= 1
    blend = impasto.stylize(photos["content"], [photos["starry"], photos["scream"]],
                            method="instant", style_blend_weights=[1, 3], strength=0.7,
                            precision="fp32", device="cpu")
    ref = inst(photos["content"], [photos["starry"], photos["scream"]], weights=[1, 3],
               strength=0.7)
    assert np.abs(_a(blend) - _a(ref)).max() <= 1
    assert np.abs(_a(blend) - _a(out)).mean() > 3


def test_a_preset_implies_instant(photos, inst):
    out = impasto.stylize(photos["content"], preset="starry-blue", precision="fp32",
                          device="cpu", size=48)
    assert out.size == (48, 32)
    ref = inst(photos["content"], preset=19, size=48)
    assert np.abs(_a(out) - _a(ref)).max() <= 1


def test_luminance_keeps_the_photos_colours(photos):
    kw = {"preset": 20, "precision": "fp32", "device": "cpu"}
    plain = _a(impasto.stylize(photos["content"], **kw))
    kept = _a(impasto.stylize(photos["content"], preserve_color="luminance", **kw))
    photo = _a(photos["content"])

    def chroma(a):  # per-pixel distance from grey
        return a - a.mean(axis=2, keepdims=True)

    assert np.abs(chroma(kept) - chroma(photo)).mean() < \
        0.5 * np.abs(chroma(plain) - chroma(photo)).mean()


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "instant", "iterations": 5}, "takes no iterations"),
    ({"method": "instant", "init_image": "x.png"}, "takes no init_image"),
    ({"preset": 3, "preserve_color": "histogram"}, "a preset has none"),
    ({"method": "instant", "preset": 3, "preserve_color": "hue"}, "must be one of none, "),
    ({"method": "nope"}, "unknown method 'nope'"),
    ({"method": "gatys", "preset": 3}, "method='instant'"),
    ({"preset": 26}, "preset 26 does not exist"),
    ({"preset": "3:0,1:0"}, "sum to something positive"),
])
def test_bad_input_is_one_line(photos, kwargs, message):
    with pytest.raises(InputError, match=message) as e:
        impasto.stylize(photos["content"], device="cpu", **kwargs)
    assert "\n" not in str(e.value)


def test_the_networks_load_once_per_device(photos):
    impasto.stylize(photos["content"], preset=1, device="cpu", size=32)
    impasto.stylize(photos["content"], preset=2, device="cpu", size=32)
    assert _shared.cache_info().currsize >= 1 and _shared.cache_info().hits >= 1


def test_bf16_runners_share_one_cast_network_and_match_a_runner_of_their_own(inst):
    """A bf16 runner per call (one image, the studio) no longer copies and casts the whole
    transformer each time: runners share the pipeline's cast copy and give the same pixels
    as a runner that made its own; the memory probe for tiling runs once per transformer."""
    from impasto.infer.runner import InferenceRunner
    from impasto.infer.tiling import _BPP_CACHE

    a = inst.runner(inst.stylizer(preset=3), precision="bf16")
    b = inst.runner(inst.stylizer(preset=12), precision="bf16")
    assert a.net.net is b.net.net and a.net.net is not inst.multistyle
    assert {p.dtype for p in a.net.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in inst.multistyle.parameters()} == {torch.float32}  # untouched
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    own = InferenceRunner(inst.stylizer(preset=3), device="cpu", precision=a.choice,
                          compile="off", align=4)
    torch.testing.assert_close(a(x), own(x), atol=0, rtol=0)
    assert not torch.equal(a(x), b(x))  # and each keeps its own condition
    assert inst.multistyle in _BPP_CACHE  # the probe is kept for the shared transformer
