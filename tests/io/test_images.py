"""Tests of impasto.io: loading, colour conversion, rejections, resizing, tensors, saving.

Every fixture image is built here, in tmp_path, with PIL/numpy; all images are tiny.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import impasto.io as iio
from impasto.errors import InputError
from impasto.io import loading as loading_mod

RNG = np.random.default_rng(1234)
ARR = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)  # H=5, W=7


def pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG file written by hand (for cases PIL cannot write): raw = filtered scanlines."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def save_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def assert_one_line_naming(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg
    assert name in msg
    return msg


# ----------------------------------------------------------------------------------------------
# sources


def test_every_source_kind_gives_the_same_pixels(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(ARR).save(path)
    data = path.read_bytes()
    t = torch.from_numpy(ARR).permute(2, 0, 1).float() / 255
    sources = {
        "str": str(path),
        "Path": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "pil": Image.fromarray(ARR),
        "uint8": ARR,
        "uint16": ARR.astype(np.uint16) * 257,
        "float64": ARR / 255.0,
        "float32 HWC": (ARR / 255.0).astype(np.float32),
        "tensor CHW": t,
        "tensor NCHW": t[None],
        "tensor uint8": torch.from_numpy(ARR).permute(2, 0, 1),
    }
    for kind, src in sources.items():
        img = iio.load_image(src)
        assert img.size == (7, 5), kind
        np.testing.assert_array_equal(pixels(img), ARR, err_msg=kind)


def test_pil_source_is_not_modified_and_result_is_a_new_image():
    src = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    out = iio.load_image(src)
    assert src.mode == "RGBA" and src.getpixel((0, 0)) == (10, 20, 30, 0)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    rgb = Image.new("RGB", (3, 2), (1, 2, 3))
    out = iio.load_image(rgb)
    out.putpixel((0, 0), (9, 9, 9))
    assert rgb.getpixel((0, 0)) == (1, 2, 3)


def test_float_arrays_are_clipped_and_rounded():
    a = np.array([[-0.5, 0.0, 0.5 / 255, 0.51 / 255, 1.0, 7.0]])
    got = pixels(iio.load_image(a))[0, :, 0]
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 255, 255])


def test_uint16_array_is_scaled_not_clipped():
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    got = pixels(iio.load_image(a))[0, :, 0]
    np.testing.assert_array_equal(got, [0, 1, 128, 255])


def test_grey_sources_give_equal_channels(tmp_path):
    g = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(g).save(path)
    for src in (path, g, g[:, :, None], torch.from_numpy(g)[None].float() / 255, Image.fromarray(g)):
        px = pixels(iio.load_image(src))
        for c in range(3):
            np.testing.assert_array_equal(px[:, :, c], g)


def test_bool_array_is_black_and_white():
    a = np.array([[True, False]])
    np.testing.assert_array_equal(pixels(iio.load_image(a))[0, :, 0], [255, 0])


# ----------------------------------------------------------------------------------------------
# EXIF orientation


def _two_colour(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, width // 2, height))
    return img


def test_exif_orientation_6_jpeg_is_rotated_upright(tmp_path):
    img = _two_colour(32, 16)
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    path = tmp_path / "rot6.jpg"
    img.save(path, quality=95, exif=exif.tobytes())
    out = iio.load_image(path)
    assert out.size == (16, 32)
    top, bottom = pixels(out)[4, 8], pixels(out)[27, 8]  # the stored left (red) is now on top
    assert np.abs(top - [255, 0, 0]).max() < 20
    assert np.abs(bottom - [0, 0, 255]).max() < 20
    assert iio.image_size(path) == (16, 32)
    assert iio.image_size(path.read_bytes()) == (16, 32)


def test_exif_orientation_3_png_is_rotated_180_exactly(tmp_path):
    a = RNG.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 3
    path = tmp_path / "rot3.png"
    img.save(path, exif=exif.tobytes())
    out = iio.load_image(path)
    assert out.size == (4, 3)
    np.testing.assert_array_equal(pixels(out), a[::-1, ::-1])
    # a PIL image carrying the tag is oriented too
    np.testing.assert_array_equal(pixels(iio.load_image(Image.open(path))), a[::-1, ::-1])


# ----------------------------------------------------------------------------------------------
# colour modes


def test_palette_image(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    path = tmp_path / "p.png"
    img.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(pixels(iio.load_image(path))[0], [[10, 20, 30], [200, 100, 50], [0, 255, 0]])


def test_palette_with_transparency_becomes_white(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    for suffix in (".png", ".gif"):
        path = tmp_path / f"pt{suffix}"
        img.save(path, transparency=1)
        opened = Image.open(path)
        assert opened.mode == "P" and opened.info.get("transparency") == 1
        np.testing.assert_array_equal(
            pixels(iio.load_image(path))[0], [[10, 20, 30], [255, 255, 255], [0, 255, 0]]
        )


def test_cmyk_tiff_exact_and_jpeg_close(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    img.paste((0, 255, 255, 0), (0, 0, 8, 16))  # left: red
    img.paste((0, 0, 0, 255), (8, 0, 16, 16))  # right: black
    tif = tmp_path / "c.tif"
    img.save(tif)
    px = pixels(iio.load_image(tif))
    assert tuple(px[3, 3]) == (255, 0, 0) and tuple(px[3, 12]) == (0, 0, 0)

    solid = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    jpg = tmp_path / "c.jpg"
    solid.save(jpg, quality=95)
    assert Image.open(jpg).mode == "CMYK"
    assert np.abs(pixels(iio.load_image(jpg))[8, 8] - [255, 0, 0]).max() <= 8


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # the fixture really is 16-bit
    got = pixels(iio.load_image(path))[0, :, 0]
    assert got[0] == 0 and got[1] == 1 and abs(got[2] - 128) <= 1 and got[3] == 255


def test_16bit_grey_big_endian_and_mode_i_and_f():
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    big = Image.frombytes("I;16B", (3, 1), a.astype(">u2").tobytes())
    np.testing.assert_array_equal(pixels(iio.load_image(big))[0, :, 0], [0, 128, 255])
    mode_i = Image.fromarray(a.astype(np.int32))
    assert mode_i.mode == "I"
    np.testing.assert_array_equal(pixels(iio.load_image(mode_i))[0, :, 0], [0, 128, 255])
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert f01.mode == "F"
    np.testing.assert_array_equal(pixels(iio.load_image(f01))[0, :, 0], [0, 128, 255])
    f255 = Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32))
    np.testing.assert_array_equal(pixels(iio.load_image(f255))[0, :, 0], [0, 100, 255])


def test_16bit_rgb_png(tmp_path):
    px = np.array([[[65535, 32768, 0], [0, 65535, 256]]], dtype=">u2")  # 2x1, 16 bits/channel
    raw = b"\x00" + px.tobytes()
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_bytes(2, 1, 16, 2, raw))
    got = pixels(iio.load_image(path))
    assert np.abs(got - [[[255, 128, 0], [0, 255, 1]]]).max() <= 1


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # fully transparent -> white
    rgba[0, 1] = (255, 0, 0, 128)  # half red over white
    rgba[0, 2] = (0, 0, 255, 255)  # opaque blue
    expect = np.array([[[255, 255, 255], [255, 127, 127], [0, 0, 255]]])
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    for src in (path, rgba, Image.fromarray(rgba), torch.from_numpy(rgba).permute(2, 0, 1)):
        assert np.abs(pixels(iio.load_image(src)) - expect).max() <= 1

    la = Image.fromarray(np.array([[[0, 0], [0, 255], [200, 128]]], dtype=np.uint8), "LA")
    got = pixels(iio.load_image(la))[0, :, 0]
    assert got[0] == 255 and got[1] == 0 and abs(got[2] - (200 * 128 + 255 * 127) / 255) <= 1


def test_bilevel_image(tmp_path):
    img = Image.new("1", (4, 1))
    img.putdata([0, 255, 0, 255])
    path = tmp_path / "b.png"
    img.save(path)
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(pixels(iio.load_image(path))[0], [[0] * 3, [255] * 3] * 2)


# ----------------------------------------------------------------------------------------------
# rejections


@pytest.fixture
def good_png() -> bytes:
    return save_bytes(Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "PNG")


@pytest.fixture
def good_jpg() -> bytes:
    return save_bytes(Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "JPEG")


def _corrupt_png(png: bytes) -> bytes:
    c = bytearray(png)
    i = png.index(b"IDAT")
    c[i + 20 : i + 60] = b"\x00" * 40
    return bytes(c)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no such file"),
        ("directory", "directory"),
        ("empty", "empty"),
        ("text", "not an image"),
        ("truncated_png", "truncated"),
        ("truncated_jpg", "truncated"),
        ("corrupt_png", "corrupt"),
        ("fifo", "not a regular file"),
        ("missing_parent_is_file", "no such file"),
    ],
)
def test_bad_files_are_rejected_with_one_line_naming_them(tmp_path, good_png, good_jpg, case, expected):
    path = tmp_path / f"bad_{case}.img"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello, I am not a picture\n")
    elif case == "truncated_png":
        path.write_bytes(good_png[: len(good_png) // 2])
    elif case == "truncated_jpg":
        path.write_bytes(good_jpg[: len(good_jpg) // 2])
    elif case == "corrupt_png":
        path.write_bytes(_corrupt_png(good_png))
    elif case == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)  # opening it for reading would block: it must be refused before
    elif case == "missing_parent_is_file":
        (tmp_path / "afile").write_bytes(b"x")
        path = tmp_path / "afile" / "x.png"
    with pytest.raises(InputError) as exc:
        iio.load_image(path)
    msg = assert_one_line_naming(exc, str(path))
    assert expected in msg


@pytest.mark.parametrize("case", ["empty", "text", "truncated_png", "truncated_jpg", "corrupt_png"])
def test_bad_bytes_are_rejected(good_png, good_jpg, case):
    data = {
        "empty": b"",
        "text": b"not an image at all",
        "truncated_png": good_png[: len(good_png) // 2],
        "truncated_jpg": good_jpg[: len(good_jpg) // 2],
        "corrupt_png": _corrupt_png(good_png),
    }[case]
    with pytest.raises(InputError) as exc:
        iio.load_image(data)
    assert_one_line_naming(exc, "<bytes>")
    with pytest.raises(InputError) as exc:
        iio.load_image(data, name="upload.png")
    assert_one_line_naming(exc, "upload.png")


def test_good_fixtures_do_load(good_png, good_jpg):
    # the rejection tests above cut these in half: whole, they are fine
    assert iio.load_image(good_png).size == (32, 32)
    assert iio.load_image(good_jpg).size == (32, 32)


def test_loading_never_sets_load_truncated_images(good_png):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(InputError):
        iio.load_image(good_png[:-40])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_unreadable_file_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(loading_mod, "open", refuse, raising=False)  # works even as root
    with pytest.raises(InputError) as exc:
        iio.load_image(path)
    assert "permission denied" in assert_one_line_naming(exc, str(path))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_by_mode_is_rejected(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError) as exc:
            iio.load_image(path)
        assert "permission denied" in assert_one_line_naming(exc, str(path))
    finally:
        path.chmod(0o600)


def test_too_many_pixels_is_rejected_from_the_header_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)  # 9 Mpx of zeros: a few kB on disk
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    with pytest.raises(InputError) as exc:
        iio.load_image(path, max_pixels=1_000_000)
    msg = assert_one_line_naming(exc, "big.png")
    assert "9000000" in msg and "1000000" in msg
    assert decoded == []


def test_pixel_limit_boundary_and_none(tmp_path):
    path = tmp_path / "m.png"
    Image.new("RGB", (200, 100), (5, 6, 7)).save(path)
    assert iio.load_image(path, max_pixels=20_000).size == (200, 100)
    assert iio.load_image(path, max_pixels=None).size == (200, 100)
    with pytest.raises(InputError, match="20000 pixels"):
        iio.load_image(path, max_pixels=19_999)
    with pytest.raises(InputError, match="<array>"):
        iio.load_image(np.zeros((100, 100), np.uint8), max_pixels=9_999)
    with pytest.raises(InputError, match="<image>"):
        iio.load_image(Image.new("RGB", (100, 100)), max_pixels=9_999)


def test_decompression_bomb_header_is_rejected_by_our_check(tmp_path):
    # A PNG whose header claims 20000 x 20000 pixels (400 Mpx, above PIL's own hard limit) with
    # almost no data: our check must fire from the header, before PIL's and before decoding.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(20000, 20000, 8, 0, b"\x00" * 1000))
    with pytest.raises(InputError) as exc:
        iio.load_image(path)
    msg = assert_one_line_naming(exc, "bomb.png")
    assert "400000000" in msg and str(iio.DEFAULT_MAX_PIXELS) in msg
    assert iio.image_size(path) == (20000, 20000)


def test_pil_global_limit_neither_rejects_nor_warns_under_our_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    big = tmp_path / "over_pil_error.png"  # 400 px > 2 * 100: PIL alone would raise
    Image.new("RGB", (20, 20), (1, 2, 3)).save(big)
    warn = tmp_path / "over_pil_warning.png"  # 150 px: PIL alone would warn
    Image.new("RGB", (15, 10), (1, 2, 3)).save(warn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert iio.load_image(big, max_pixels=None).getpixel((0, 0)) == (1, 2, 3)
        assert iio.load_image(big.read_bytes(), max_pixels=1000).size == (20, 20)
        assert iio.load_image(warn).size == (15, 10)
        assert iio.read_png_metadata(big) == {}
    with pytest.raises(InputError, match="more than the limit of 399 pixels"):
        iio.load_image(big, max_pixels=399)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3, 2), np.uint8),
        np.zeros((2, 3, 5), np.uint8),
        np.zeros((1, 2, 3, 3), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((0, 5), np.uint8),
        np.zeros((2, 3), np.int64),
        np.zeros((2, 3), np.complex64),
        np.array([[0.5, np.nan]]),
        torch.zeros(2, 3, 4, 4),
        torch.zeros(5, 4, 4),
        torch.zeros(3, 4, 4, dtype=torch.int32),
        12,
        None,
    ],
    ids=lambda v: type(v).__name__ + str(getattr(v, "shape", "")) + str(getattr(v, "dtype", "")),
)
def test_bad_arrays_and_types_are_rejected(bad):
    with pytest.raises(InputError) as exc:
        iio.load_image(bad)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("<")


# ----------------------------------------------------------------------------------------------
# resizing


def test_scaled_size_arithmetic():
    assert iio.scaled_size(400, 300, longest=100) == (100, 75)
    assert iio.scaled_size(300, 400, longest=100) == (75, 100)
    assert iio.scaled_size(400, 300, longest=800) == (800, 600)
    assert iio.scaled_size(1000, 1, longest=10) == (10, 1)
    assert iio.scaled_size(400, 300, pixels=30_000) == (200, 150)
    assert iio.scaled_size(100, 100, pixels=40_000) == (200, 200)
    w, h = iio.scaled_size(1234, 567, pixels=100_000)
    assert abs(w * h - 100_000) / 100_000 < 0.01 and abs(w / h - 1234 / 567) < 0.01
    assert iio.scaled_size(5000, 2, pixels=4) == (4, 1)  # 1-pixel floor: the budget wins
    assert iio.scaled_size(2, 5000, pixels=4) == (1, 4)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"longest": 10, "pixels": 100}, {"longest": 0}, {"longest": -5}, {"pixels": 0},
     {"longest": 1.5}, {"longest": True}],
)
def test_resize_rejects_bad_options(kwargs):
    with pytest.raises(InputError):
        iio.resize(Image.new("RGB", (10, 10)), **kwargs)


def test_resize_sizes():
    img = Image.new("RGB", (400, 300))
    assert iio.resize(img, longest=100).size == (100, 75)
    assert iio.resize(img, pixels=30_000).size == (200, 150)
    assert iio.resize(Image.new("RGB", (30, 40)), longest=80).size == (60, 80)
    same = iio.resize(img, longest=400)
    assert same.size == (400, 300) and same is not img


def _checkerboard(n: int) -> np.ndarray:
    y, x = np.indices((n, n))
    return (((x + y) % 2) * 255).astype(np.uint8)


def test_resize_is_antialiased():
    board = Image.fromarray(np.stack([_checkerboard(64)] * 3, axis=-1))
    smooth = pixels(iio.resize(board, longest=8))
    assert np.abs(smooth - 127.5).max() <= 10
    aliased = pixels(iio.resize(board, longest=8, resample=Image.Resampling.NEAREST))
    assert np.abs(aliased - 127.5).min() > 100  # the test can tell the difference


def test_resize_tensor_shape_antialias_and_clamp():
    board = torch.from_numpy(_checkerboard(63)).float().div(255)[None, None].repeat(2, 3, 1, 1)
    small = iio.resize_tensor(board, (9, 9))  # a factor of 7: plain bicubic would hit 0s or 1s
    assert small.shape == (2, 3, 9, 9) and small.dtype == torch.float32
    assert (small - 0.5).abs().max() < 0.05
    aliased = torch.nn.functional.interpolate(board, size=(9, 9), mode="bicubic", antialias=False)
    assert (aliased - 0.5).abs().min() > 0.4  # the check above can tell the difference
    assert iio.resize_tensor(board, (9, 21)).shape == (2, 3, 9, 21)  # one side shrinks only

    step = torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0
    up = iio.resize_tensor(step, (16, 16))
    assert up.shape == (1, 3, 16, 16) and up.min() >= 0 and up.max() <= 1
    assert up.max() == 1.0 and up.min() == 0.0
    # a batch outside [0, 1] is not clamped (bicubic overshoot survives)
    up2 = iio.resize_tensor(step * 2, (16, 16))
    assert up2.max() > 2.0

    bf = iio.resize_tensor(board.to(torch.bfloat16), (32, 32))
    assert bf.dtype == torch.bfloat16 and bf.shape == (2, 3, 32, 32)
    assert iio.resize_tensor(board, (63, 63)) is board
    with pytest.raises(ValueError):
        iio.resize_tensor(board[0], (8, 8))


# ----------------------------------------------------------------------------------------------
# tensors


def test_to_tensor_and_back_is_exact_for_all_levels():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    a = np.stack([levels, levels[::-1], levels.T], axis=-1)
    t = iio.to_tensor(Image.fromarray(a))
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert t.min() == 0.0 and t.max() == 1.0
    assert torch.allclose(t[0, 0, 0, :4], torch.tensor([0, 1, 2, 3]) / 255.0)
    np.testing.assert_array_equal(np.asarray(iio.to_pil(t)), a)
    np.testing.assert_array_equal(np.asarray(iio.to_pil(t[0])), a)


def test_to_pil_rounds_to_nearest_and_clamps():
    k = torch.arange(255, dtype=torch.float32)
    below = (k + 0.49) / 255
    above = (k + 0.51) / 255
    t = torch.stack([below, above, k / 255]).reshape(3, 1, 255)
    got = np.asarray(iio.to_pil(t)).astype(int)[0]  # (255, 3)
    np.testing.assert_array_equal(got[:, 0], np.arange(255))
    np.testing.assert_array_equal(got[:, 1], np.arange(1, 256))
    np.testing.assert_array_equal(got[:, 2], np.arange(255))
    odd = torch.tensor([-0.5, 1.7, float("nan")]).reshape(1, 3, 1, 1).expand(1, 3, 1, 1)
    assert iio.to_pil(odd).getpixel((0, 0)) == (0, 255, 0)


def test_to_pil_accepts_bfloat16_and_rejects_bad_shapes():
    t = torch.rand(1, 3, 4, 5)
    bf = t.to(torch.bfloat16)
    np.testing.assert_array_equal(np.asarray(iio.to_pil(bf)), np.asarray(iio.to_pil(bf.float())))
    assert iio.to_pil(bf).size == (5, 4)
    for bad in (torch.rand(2, 3, 4, 4), torch.rand(4, 4, 4), torch.rand(4, 4)):
        with pytest.raises(ValueError):
            iio.to_pil(bad)


def test_to_tensor_converts_non_rgb():
    t = iio.to_tensor(Image.new("RGBA", (2, 2), (0, 0, 0, 0)))
    assert t.shape == (1, 3, 2, 2) and bool((t == 1).all())


# ----------------------------------------------------------------------------------------------
# saving


def _smooth(h: int = 32, w: int = 48) -> np.ndarray:
    y, x = np.indices((h, w))
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def test_save_png_exact_jpeg_and_webp_close(tmp_path):
    a = _smooth()
    t = torch.from_numpy(a).permute(2, 0, 1).float()[None] / 255
    for name, src in (("p.png", Image.fromarray(a)), ("t.PNG", t)):
        out = iio.save_image(src, tmp_path / name)
        assert out == tmp_path / name
        with Image.open(out) as im:
            assert im.format == "PNG"
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), a)
    for name, fmt in (("j.jpg", "JPEG"), ("j2.JPEG", "JPEG"), ("w.webp", "WEBP")):
        out = iio.save_image(t, tmp_path / name, quality=95)
        with Image.open(out) as im:
            assert im.format == fmt
            diff = np.abs(np.asarray(im.convert("RGB")).astype(int) - a)
        assert diff.mean() < 3, name
    small = iio.save_image(t, tmp_path / "low.jpg", quality=10).stat().st_size
    assert small < (tmp_path / "j.jpg").stat().st_size


def test_save_gives_ordinary_file_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = iio.save_image(Image.new("RGB", (2, 2)), tmp_path / "perm.png")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_png_metadata_round_trip(tmp_path):
    meta = {"style": "starry.jpg", "steps": 300, "weights": [1.0, 1e5], "note": "naïve ✓ 東京"}
    out = iio.save_image(Image.new("RGB", (4, 4)), tmp_path / "m.png", metadata=meta)
    back = iio.read_png_metadata(out)
    assert back == {"style": "starry.jpg", "steps": "300", "weights": "[1.0, 100000.0]", "note": "naïve ✓ 東京"}
    assert all(type(v) is str for v in back.values())
    assert iio.read_png_metadata(iio.save_image(Image.new("RGB", (4, 4)), tmp_path / "n.png")) == {}


def test_jpeg_metadata_in_comment(tmp_path):
    meta = {"style": "wave", "steps": 10}
    out = iio.save_image(Image.new("RGB", (8, 8)), tmp_path / "m.jpg", metadata=meta)
    with Image.open(out) as im:
        assert json.loads(im.info["comment"].decode("utf-8")) == meta


def test_read_png_metadata_rejects_non_png_and_missing(tmp_path):
    jpg = iio.save_image(Image.new("RGB", (8, 8)), tmp_path / "x.jpg")
    with pytest.raises(InputError) as exc:
        iio.read_png_metadata(jpg)
    assert "not a PNG" in assert_one_line_naming(exc, "x.jpg")
    with pytest.raises(InputError, match="no such file"):
        iio.read_png_metadata(tmp_path / "nope.png")


@pytest.mark.parametrize("name", ["out.gif", "out.tiff", "out", "out.png.txt"])
def test_unsupported_suffix_is_rejected(tmp_path, name):
    path = tmp_path / name
    for call in (lambda: iio.save_image(Image.new("RGB", (2, 2)), path), lambda: iio.check_output_path(path)):
        with pytest.raises(InputError) as exc:
            call()
        assert_one_line_naming(exc, name)
    assert os.listdir(tmp_path) == []


def test_bad_quality_is_rejected(tmp_path):
    for q in (0, 101, 9.5):
        with pytest.raises(InputError):
            iio.save_image(Image.new("RGB", (2, 2)), tmp_path / "q.jpg", quality=q)


def test_save_creates_missing_folders(tmp_path):
    out = iio.save_image(Image.new("RGB", (2, 2), (9, 8, 7)), tmp_path / "a" / "b" / "c.png")
    assert Image.open(out).getpixel((0, 0)) == (9, 8, 7)


def test_save_into_a_file_as_folder_is_rejected(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(InputError) as exc:
        iio.save_image(Image.new("RGB", (2, 2)), tmp_path / "blocker" / "c.png")
    assert_one_line_naming(exc, "blocker")
    with pytest.raises(InputError):
        iio.check_output_path(tmp_path / "blocker" / "sub" / "c.png")


def _failing_save(written_tmp_names: list, folder: Path, exc: BaseException):
    def save(self, fp, format=None, **params):  # noqa: A002
        fp.write(b"\x89PNG partial data")
        fp.flush()
        written_tmp_names.extend(n for n in os.listdir(folder) if n.endswith(".tmp"))
        raise exc

    return save


@pytest.mark.parametrize("existing", [False, True])
def test_save_is_atomic_on_failure(tmp_path, monkeypatch, existing):
    target = tmp_path / "result.png"
    if existing:
        iio.save_image(Image.new("RGB", (3, 3), (1, 2, 3)), target)
    before = target.read_bytes() if existing else None
    tmp_names: list[str] = []
    monkeypatch.setattr(Image.Image, "save", _failing_save(tmp_names, tmp_path, RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError, match="disk on fire"):
        iio.save_image(Image.new("RGB", (3, 3), (200, 0, 0)), target)
    # the partial data went to a hidden temporary file in the target folder ...
    assert len(tmp_names) == 1 and tmp_names[0].startswith(".result.png.")
    # ... which is gone; the target is absent or unchanged
    assert sorted(os.listdir(tmp_path)) == (["result.png"] if existing else [])
    if existing:
        assert target.read_bytes() == before


def test_save_os_error_becomes_input_error_and_cleans_up(tmp_path, monkeypatch):
    tmp_names: list[str] = []
    monkeypatch.setattr(Image.Image, "save", _failing_save(tmp_names, tmp_path, OSError(28, "No space left on device")))
    with pytest.raises(InputError) as exc:
        iio.save_image(Image.new("RGB", (3, 3)), tmp_path / "full.png")
    assert "No space left" in assert_one_line_naming(exc, "full.png")
    assert tmp_names and os.listdir(tmp_path) == []


def test_check_output_path(tmp_path, monkeypatch):
    assert iio.check_output_path(tmp_path / "o.png") == tmp_path / "o.png"
    assert iio.check_output_path(str(tmp_path / "new" / "deeper" / "o.JPG")) == tmp_path / "new" / "deeper" / "o.JPG"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    d = tmp_path / "looks_like.png"
    d.mkdir()
    with pytest.raises(InputError) as exc:
        iio.check_output_path(d)
    assert "directory" in assert_one_line_naming(exc, "looks_like.png")
    with pytest.raises(InputError):
        iio.save_image(Image.new("RGB", (2, 2)), d)

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(InputError) as exc:
        iio.check_output_path(tmp_path / "sub" / "o.png")
    assert "not writable" in assert_one_line_naming(exc, str(tmp_path))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_by_mode(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError) as exc:
            iio.check_output_path(ro / "o.png")
        assert_one_line_naming(exc, "ro")
        with pytest.raises(InputError) as exc:
            iio.save_image(Image.new("RGB", (2, 2)), ro / "o.png")
        assert_one_line_naming(exc, "ro")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_file_names_of_any_encoding_go_into_the_metadata(tmp_path, suffix):
    # A Latin-1 file name on a UTF-8 system: Python holds the byte 0xE9 as a lone surrogate,
    # which PNG text chunks and JPEG comments cannot encode as such (#13: it crashed).
    name = os.fsdecode(bytes(tmp_path) + b"/caf\xe9" + suffix.encode())
    out = iio.save_image(torch.rand(3, 8, 8), name, metadata={"content": name, "list": [name]})
    assert out.exists() and os.fsencode(out).endswith(b"caf\xe9" + suffix.encode())
    if suffix == ".png":
        meta = iio.read_png_metadata(out)
        assert meta["content"].endswith("caf\\xe9.png")
        assert json.loads(meta["list"]) == [meta["content"]]
    else:
        with Image.open(out) as img:
            comment = json.loads(img.info["comment"].decode("utf-8"))
        assert comment["content"].endswith("caf\\xe9.jpg")
