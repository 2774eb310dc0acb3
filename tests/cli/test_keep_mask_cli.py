"""``impasto stylize --keep-mask``: the kept region of the saved image is the photo's, a note
says the mask is resized, and what cannot honour it is one line, exit status 2, no output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from impasto.cli import main
from impasto.io import read_png_metadata

SHALLOW = ["--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _run(capsys, argv) -> tuple[int, str, str]:
    rc = main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48]
    photo = np.stack([x * 5, y * 5, 255 - (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    paths = {"content": tmp_path / "c.png", "style": tmp_path / "s.png",
             "keep": tmp_path / "keep.png", "white": tmp_path / "white.png",
             "black": tmp_path / "black.png", "out": tmp_path / "out.png"}
    Image.fromarray(photo).save(paths["content"])
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(paths["style"])
    keep = np.zeros((24, 24), np.uint8)
    keep[:, :12] = 255  # the left half, at half the output's size
    Image.fromarray(keep).save(paths["keep"])
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(paths["white"])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(paths["black"])
    return paths


def test_the_kept_half_of_the_saved_image_is_the_photo(capsys, files):
    # 20 iterations: L-BFGS's first ~11 here barely move the image (2.3/255 after 10 in fp32
    # on an AVX2 CPU, where auto is fp32), then it moves (38-45/255 after 20, fp32 or bf16)
    rc, _, err = _run(capsys, ["stylize", files["content"], "-s", files["style"], "-o",
                               files["out"], "--size", "48", "--scales", "1", "--iterations",
                               "20", "--keep-mask", files["keep"], "--content-weight", "0.5",
                               *SHALLOW])
    assert rc == 0, err
    assert "note: the keep mask (24x24) is resized to the output (48x48)" in err
    with Image.open(files["out"]) as im, Image.open(files["content"]) as c:
        out, photo = (np.asarray(i.convert("RGB"), dtype=float) for i in (im, c))
    diff = np.abs(out - photo)
    print(f"inside {diff[:, :22].mean():.2f}/255 outside {diff[:, 26:].mean():.1f}/255")
    assert diff[:, :22].mean() < 2 and diff[:, 26:].mean() > 10, (diff[:, :22].mean(),
                                                                  diff[:, 26:].mean())
    assert read_png_metadata(files["out"])["keep_mask"] == "keep.png"
    assert json.loads(read_png_metadata(files["out"])["settings"])["size"] == 48


def test_a_black_keep_mask_says_it_keeps_nothing(capsys, files):
    rc, _, err = _run(capsys, ["stylize", files["content"], "-s", files["style"], "-o",
                               files["out"], "--size", "32", "--iterations", "1",
                               "--keep-mask", files["black"], *SHALLOW])
    assert rc == 0 and "keeps nothing" in err


@pytest.mark.parametrize("extra, message", [
    (["--keep-mask", "{white}"], "white everywhere"),
    (["--keep-mask", "{keep}", "--tileable"], "cannot be honoured with --tileable"),
    (["--keep-mask", "{keep}", "-s", "{style}", "{content}"], "needs one --mask per style"),
    (["--keep-mask", "{white}", "--preset", "3"], "white everywhere"),
])
def test_what_cannot_honour_a_keep_mask_is_refused(capsys, files, extra, message):
    argv = ["stylize", files["content"], "-s", files["style"], "-o", files["out"], "--size",
            "32", *[a.format(**files) for a in extra]]
    if "--preset" in extra:
        argv.remove("-s"), argv.remove(files["style"])

    rc, stdout, err = _run(capsys, argv)
    assert rc == 2 and stdout == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not files["out"].exists()


def test_a_video_with_a_keep_mask_is_refused(capsys, files, tmp_path):
    out = tmp_path / "o.mp4"
    rc, _, err = _run(capsys, ["stylize", tmp_path / "clip.mp4", "-s", files["style"], "-o", out,
                               "--keep-mask", files["keep"]])
    assert rc == 2 and "--keep-mask is for still images" in err and not out.exists()


def test_a_network_output_is_composited_with_the_photo(capsys, files):
    # --preset (an instant style): the network runs, then the photo is composited back
    rc, _, err = _run(capsys, ["stylize", files["content"], "--preset", "3", "--keep-mask",
                               files["keep"], "--device", "cpu", "--precision", "fp32", "-o",
                               files["out"]])
    assert rc == 0, err
    assert "note: the keep mask (24x24) is resized to the output (48x48)" in err
    with Image.open(files["out"]) as im, Image.open(files["content"]) as c:
        out, photo = (np.asarray(i.convert("RGB"), dtype=float) for i in (im, c))
        assert im.text["keep_mask"] == "keep.png"
    diff = np.abs(out - photo)
    print(f"inside {diff[:, :22].mean():.2f}/255 outside {diff[:, 26:].mean():.1f}/255")
    assert diff[:, :22].mean() < 2 and diff[:, 26:].mean() > 10, (diff[:, :22].mean(),
                                                                  diff[:, 26:].mean())


def test_a_folder_with_a_keep_mask_is_refused(capsys, files, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(files["content"]).save(folder / "a.png")
    out = tmp_path / "styled"
    rc, _, err = _run(capsys, ["stylize", folder, "--preset", "3", "--keep-mask", files["keep"],
                               "-o", out])
    assert rc == 2 and "--keep-mask is for one still image, not a folder" in err
    assert not out.exists()


def test_an_export_with_a_keep_mask_is_refused(capsys, files, tmp_path):
    out = tmp_path / "net.onnx"
    rc, _, err = _run(capsys, ["stylize", "--preset", "3", "--export", "onnx", "--keep-mask",
                               files["keep"], "-o", out])
    assert rc == 2 and "--keep-mask is for one still image, not --export" in err
    assert not out.exists()
