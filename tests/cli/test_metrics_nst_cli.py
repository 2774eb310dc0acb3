"""``impasto metrics nst``: one output (the figures of impasto.metrics.nst_score, printed and
as JSON), a set (per-image scores, the ArtFID-style figure, deterministic), one-line errors.

Real VGG19 weights at 32-64 px; the stylised image is conftest.nst_stylised (see
its docstring for how it is made).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import one_line_error, run_cli
from PIL import Image

from impasto.metrics import nst_score

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def pair(shared_data):
    folder = shared_data / "styletransfer"
    return folder / "content" / "tubingen.jpg", folder / "style" / "starry_night.jpg"


def _noise(h: int, w: int, seed: int, colour) -> Image.Image:
    x = np.random.default_rng(seed).normal(colour, 40.0, size=(h, w, 3))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("nst_set")
    for d in "ocs":
        (root / d).mkdir()
    for i, c in enumerate(("a", "b")):
        _noise(24, 32, i, (60 + 80 * i, 120, 160)).save(root / "c" / f"{c}.png")
        for j, s in enumerate(("x", "y")):
            _noise(24, 32, 10 + 2 * i + j, (200, 60 + 90 * j, 90)).save(root / "o" / f"{c}_{s}.png")
    for j, s in enumerate(("x", "y")):
        _noise(40, 30, 20 + j, (220, 40 + 90 * j, 80)).save(root / "s" / f"{s}.png")
    return root


def test_one_output_prints_and_writes_the_library_figures(capsys, tmp_path, pair,
                                                         nst_stylised):
    content, style = pair
    out_json = tmp_path / "nst.json"
    rc, out, err = run_cli(capsys, "metrics", "nst", nst_stylised, content, style, "--size", "64",
                           "--device", "cpu", "--json", out_json)
    assert rc == 0, err
    want = nst_score(nst_stylised, content, style, size=64, device="cpu")
    lines = out.splitlines()
    assert lines[0].startswith("gatys-vgg19-v1 at 64 px") and "scored at 64x48" in lines[0]
    printed = {}
    for ln in lines[1:]:
        label, rest = ln.strip().split("  ", 1)
        printed[label] = float(rest.split()[0])
    assert printed["content loss"] == pytest.approx(want.content_loss, rel=1e-5)
    assert printed["style loss"] == pytest.approx(want.style_loss, rel=1e-5)
    assert printed["total"] == pytest.approx(want.total, rel=1e-5)
    assert printed["content distance"] == pytest.approx(want.content_distance, rel=1e-5)
    report = json.loads(out_json.read_text())
    assert report["objective"]["name"] == "gatys-vgg19-v1"
    assert report["resize"]["size"] == 64 and report["resize"]["filter"].startswith("bicubic")
    assert report["size"] == [48, 64]
    assert report["style_loss"] == pytest.approx(want.style_loss, rel=1e-6)
    assert report["style_images"] == [str(style)]
    assert f"wrote {out_json}" in err


def test_the_content_itself_has_content_loss_zero(capsys, pair):
    content, style = pair
    rc, out, err = run_cli(capsys, "metrics", "nst", content, content, style, "--size", "32",
                           "--device", "cpu")
    assert rc == 0, err
    assert re.search(r"^  content loss +0  \(relu4_2\)$", out, re.M), out
    assert re.search(r"^  content distance +0  \(vgg19-cos-v1\)$", out, re.M), out


def test_a_set_gives_a_deterministic_artfid_style_figure(capsys, tmp_path, image_set):
    r = image_set
    reports = []
    for k in range(2):
        out_json = tmp_path / f"set{k}.json"
        rc, out, err = run_cli(capsys, "metrics", "nst", r / "o", r / "c", r / "s", "--size",
                               "32", "--extractor", "vgg19:32", "--device", "cpu", "-q",
                               "--json", out_json)
        assert rc == 0 and err == "", err
        reports.append(json.loads(out_json.read_text()))
    a, b = reports
    assert a == b
    assert a["matched"] == {"contents": "by name", "styles": "by name"}
    art = a["artfid_style"]
    assert art["extractor"]["name"] == "vgg19:32" and art["comparable_with_paper"] is False
    d = a["mean"]["content_distance"]
    assert art["value"] == pytest.approx((1 + d) * (1 + art["fid"]))
    assert 0 < d < 1 and art["fid"] > 0
    assert "ArtFID-style" in out and "NOT comparable" in out
    assert "styles by name" in out.splitlines()[0]


def test_a_set_with_one_style_image_notes_that_it_has_no_figure(capsys, image_set):
    r = image_set
    rc, out, err = run_cli(capsys, "metrics", "nst", r / "c", r / "c", r / "s" / "x.png",
                           "--size", "32", "--device", "cpu")
    assert rc == 0, err
    assert "impasto: note: no ArtFID-style figure" in err
    assert "at least 2 outputs and 2 style images (got 2 and 1)" in err
    assert "mean content loss" in out and "ArtFID" not in out


@pytest.mark.parametrize("argv, expect", [
    (["missing.png", "c.png", "s.png"], "output not found: missing.png"),
    (["{o}/a_x.png", "{c}", "{s}/x.png"], "is a folder: OUTPUT is one image"),
    (["{o}/a_x.png", "{c}/a.png", "{s}/x.png", "--extractor", "vgg19"],
     "--extractor applies to sets"),
    (["{o}/a_x.png", "{c}/a.png", "{s}/x.png", "--size", "8"], "must be at least 32"),
    (["{o}/a_x.png", "{c}/a.png", "{s}/x.png", "--size", "5000"], "from 32 to 4096"),
    (["{o}/a_x.png", "{s}/x.png", "{s}/y.png", "--size", "32"], "differ in aspect ratio"),
    (["{o}", "{c}", "{s}", "--extractor", "nope"], "unknown feature extractor 'nope'"),
    (["{o}", "{s}", "{s}"], "matches no content by name"),
    (["{o}/a_x.png", "{c}/a.png", "{s}/x.png", "--json", "{o}"], "is a folder, not a file"),
    (["{o}/a_x.png", "{c}/a.png", "{s}/x.png", "--vgg-weights", "{s}/y.png"],
     "checksum does not match"),
])
def test_bad_input_is_one_line_and_status_2(capsys, image_set, argv, expect):
    r = image_set
    argv = [a.format(o=r / "o", c=r / "c", s=r / "s") for a in argv]
    one_line_error(capsys, ["metrics", "nst", *argv, "--device", "cpu"], expect)
