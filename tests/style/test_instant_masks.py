"""Masks and colour preservation for the instant styles (#15, #17 section 3): one style per
mask, mixed per pixel inside the network with each style normalised over its own region
(impasto.style.instant.masks), the masks meaning what they mean for Gatys and AdaIN; the
histogram colour transfer through InstantStyle.transform (the CLI's and the studio's path)."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.style.color import match_color

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(shared_data):
    from PIL import Image

    from impasto.io import to_tensor

    root = shared_data / "styletransfer"
    photo = Image.open(root / "content" / "golden_gate.jpg").convert("RGB")
    photo.thumbnail((128, 128))
    load = lambda name: to_tensor(Image.open(root / "style" / name).convert("RGB")  # noqa: E731
                                  .resize((96, 96)))
    return {"x": to_tensor(photo.crop((0, 0, 126, 82))), "a": load("starry_night.jpg"),
            "b": load("the_scream.jpg")}


def _halves(h: int, w: int) -> torch.Tensor:
    m = torch.zeros(2, h, w)
    m[0, :, : w // 2] = 1
    m[1, :, w // 2:] = 1
    return m


def _dist(a, b, cols) -> float:
    return float((a[..., cols] - b[..., cols]).abs().mean())


def test_half_and_half_each_half_takes_its_style(inst, images):
    x, a, b = images["x"], images["a"], images["b"]
    h, w = x.shape[-2:]
    ya, yb = inst(x, a), inst(x, b)
    y = inst(x, [a, b], masks=_halves(h, w))
    left, right = slice(0, w // 2 - 8), slice(w // 2 + 8, w)
    # measured: left 0.04 to its style's result against 0.17 to the other's; right 0.05/0.19
    assert _dist(y, ya, left) < 0.4 * _dist(y, yb, left)
    assert _dist(y, yb, right) < 0.4 * _dist(y, ya, right)
    # the same halves the other way round swap the styles
    y2 = inst(x, [b, a], masks=_halves(h, w))
    assert _dist(y2, yb, left) < 0.4 * _dist(y2, ya, left)


def test_presets_by_mask(inst, images):
    x = images["x"]
    h, w = x.shape[-2:]
    p3, p12 = inst(x, preset=3), inst(x, preset="lavender-haze")
    y = inst(x, preset=[3, "lavender-haze"], masks=_halves(h, w))
    left, right = slice(0, w // 2 - 8), slice(w // 2 + 8, w)
    assert _dist(y, p3, left) < 0.5 * _dist(y, p12, left)
    assert _dist(y, p12, right) < 0.5 * _dist(y, p3, right)


def test_a_white_mask_is_the_style_and_grey_blends_with_the_photo(inst, images):
    x, a = images["x"], images["a"]
    h, w = x.shape[-2:]
    ya = inst(x, a)
    assert torch.allclose(inst(x, [a], masks=torch.ones(1, h, w)), ya, atol=1e-4)
    half = inst(x, [a], masks=torch.full((1, h, w), 0.5))
    assert torch.allclose(half, 0.5 * ya + 0.5 * x, atol=1e-4)
    # a mask of another size is resized to the photo; black keeps the photo there
    m = torch.zeros(1, 10, 20)
    m[:, :, :10] = 1
    y = inst(x, [a], masks=m)
    assert torch.equal(y[..., w // 2 + 8:], x[..., w // 2 + 8:])
    assert _dist(y, x, slice(0, w // 2 - 8)) > 0.1


def test_a_tile_with_masks_keeps_its_styles(inst, images):
    x, a, b = images["x"], images["a"], images["b"]
    h, w = x.shape[-2:]
    whole = inst(x, [a, b], masks=_halves(h, w), tile=0)
    tiled = inst(x, [a, b], masks=_halves(h, w), tile=64)
    left, right = slice(0, w // 2 - 8), slice(w // 2 + 8, w)
    assert _dist(tiled, whole, left) < 0.5 * _dist(tiled, inst(x, b), left)
    assert _dist(tiled, whole, right) < 0.5 * _dist(tiled, inst(x, a), right)


@pytest.mark.parametrize("kwargs, message", [
    ({"style": "AB", "masks": torch.ones(1, 8, 8)}, "1 masks for 2 style image(s)"),
    ({"style": "AB", "masks": torch.stack([torch.ones(8, 8), torch.zeros(8, 8)])},
     "mask 2 is black everywhere"),
    ({"style": "AB", "masks": torch.ones(2, 8, 8), "weights": [1, 2]},
     "blend weights do not apply with masks"),
    ({"preset": [3, 4, 5], "masks": torch.ones(2, 8, 8)}, "2 masks for 3 style image(s)"),
])
def test_bad_masks_are_one_line(inst, images, kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.get("style") == "AB":
        kwargs["style"] = [images["a"], images["b"]]
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        inst(images["x"], **kwargs)
    assert "\n" not in str(e.value)


def test_histogram_recolours_the_painting_to_the_photo(inst, images):
    x, a = images["x"], images["a"]
    y = inst(x, a, preserve_color="histogram")
    # the painting recoloured to the photo's colours, then used as the style: the same pixels
    assert torch.equal(y, inst(x, match_color(a, x)))
    plain = inst(x, a)

    def colour_gap(img):  # distance of the mean colour to the photo's
        return float((img.mean((2, 3)) - x.mean((2, 3))).abs().sum())

    assert colour_gap(y) < 0.5 * colour_gap(plain)  # measured 0.05 against 0.29
    # each image of a batch is recoloured to its own colours (a folder, video frames)
    x2 = torch.cat([x, x.flip(1)])
    both = inst.transform(a, preserve_color="histogram")(x2)
    assert torch.allclose(both[1:], inst(x.flip(1), match_color(a, x.flip(1))), atol=1e-6)
    with pytest.raises(InputError, match="a preset has none"):
        inst.transform(preset=3, preserve_color="histogram")
