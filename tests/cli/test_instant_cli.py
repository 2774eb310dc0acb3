"""``impasto stylize --preset / --method instant`` and ``impasto presets``: results at the
photo's own size with their settings in the PNG, the same pixels as the Python pipeline, and
one-line refusals (exit 2, no file) for bad presets, blend weights, styles and weight files."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from impasto.cli import main
from impasto.style.instant import InstantStyle, preset_sheet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    root = shared_data / "styletransfer"
    d = tmp_path_factory.mktemp("instant")
    photo = Image.open(root / "content" / "golden_gate.jpg").convert("RGB")
    photo.thumbnail((64, 64))
    photo.crop((0, 0, 61, 41)).save(d / "photo.png")
    Image.open(root / "style" / "starry_night.jpg").convert("RGB").resize((80, 64)).save(
        d / "starry.png")
    Image.open(root / "style" / "the_scream.jpg").convert("RGB").resize((64, 80)).save(
        d / "scream.png")
    return d


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _px(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32)


def test_a_preset_at_the_photos_size_as_the_pipeline(files, tmp_path):
    out = tmp_path / "p.png"
    rc, _, err = _run(["stylize", files / "photo.png", "--preset", "starry-blue",
                       "--precision", "fp32", "--device", "cpu", "-o", out, "-q"])
    assert rc == 0, err
    img = Image.open(out)
    assert img.size == (61, 41)
    settings = json.loads(img.text["settings"])
    assert settings["method"] == "instant" and settings["precision"] == "fp32"
    assert img.text["preset"] == "19 starry-blue"
    ref = InstantStyle.from_file(device="cpu", precision="fp32")(files / "photo.png", preset=19)
    assert np.abs(_px(out) - np.asarray(ref, np.float32)).max() <= 1
    assert np.abs(_px(out) - _px(files / "photo.png")).mean() > 10  # restyled


def test_a_blend_of_presets_differs_from_each(files, tmp_path):
    paths = {}
    for spec in ("3", "12", "3:0.5,12:0.5"):
        paths[spec] = tmp_path / f"{spec.replace(':', '_').replace(',', '-')}.png"
        rc, _, err = _run(["stylize", files / "photo.png", "--preset", spec, "--precision",
                           "fp32", "--device", "cpu", "-o", paths[spec], "-q"])
        assert rc == 0, err
    a, b, mix = (_px(paths[s]) for s in ("3", "12", "3:0.5,12:0.5"))
    assert np.abs(mix - a).mean() > 3 and np.abs(mix - b).mean() > 3
    assert Image.open(paths["3:0.5,12:0.5"]).text["preset"] == "3:0.5,12:0.5"


def test_paintings_blend_weights_and_strength(files, tmp_path):
    def run(*extra):
        out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.png"
        rc, _, err = _run(["stylize", files / "photo.png", "--method", "instant", "--precision",
                           "fp32", "--device", "cpu", "-o", out, "-q", *extra])
        assert rc == 0, err
        return out

    starry = run("-s", files / "starry.png")
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    ref = inst(files / "photo.png", files / "starry.png")
    assert np.abs(_px(starry) - np.asarray(ref, np.float32)).max() <= 1
    assert Image.open(starry).size == (61, 41)
    # weights 1,0 are the first painting alone; strength 0.5 lies between photo-own and full
    only = run("-s", files / "starry.png", files / "scream.png", "--style-blend-weights", "1,0")
    assert np.abs(_px(only) - _px(starry)).max() <= 1
    half = run("-s", files / "starry.png", "--strength", "0.5")
    ref = inst(files / "photo.png", files / "starry.png", strength=0.5)
    assert np.abs(_px(half) - np.asarray(ref, np.float32)).max() <= 1
    assert np.abs(_px(half) - _px(starry)).mean() > 2
    meta = json.loads(Image.open(half).text["settings"])
    assert meta["strength"] == 0.5 and "alpha" not in meta
    assert json.loads(Image.open(only).text["style"]) == ["starry.png", "scream.png"]


def test_a_folder_of_photos(files, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        Image.open(files / "photo.png").rotate(180 * k).save(src / f"{k}.png")
    rc, _, err = _run(["stylize", src, "--preset", "7", "--precision", "fp32", "--device", "cpu",
                       "-o", tmp_path / "out", "-q"])
    assert rc == 0, err
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["0.png", "1.png"]
    assert Image.open(tmp_path / "out" / "1.png").size == (61, 41)


@pytest.mark.parametrize("extra, message", [
    (["--preset", "26"], "preset 26 does not exist"),
    (["--preset", "no-such-style"], "unknown preset 'no-such-style'"),
    (["--preset", "3:x"], "does not parse"),
    (["--preset", "3:0,12:0"], "sum to something positive"),
    (["--method", "instant", "-s", "STARRY", "STARRY", "--style-blend-weights", "0,0"],
     "positive sum"),
    (["--method", "instant", "-s", "STARRY", "--style-blend-weights", "1,2"],
     "2 style blend weights for 1 style image"),
    (["--method", "instant", "-s", "NOTES"], "notes.txt"),
    (["--method", "instant"], "needs a style image (-s/--style) or --preset"),
    (["--preset", "3", "-s", "STARRY"], "takes no -s/--style"),
    (["--preset", "3", "--method", "adain"], "takes no --method adain"),
    (["--preset", "3", "--alpha", "0.5"], "--alpha applies to AdaIN"),
])
def test_bad_input_is_one_line(files, tmp_path, extra, message):
    (tmp_path / "notes.txt").write_text("not an image")
    subst = {"STARRY": files / "starry.png", "NOTES": tmp_path / "notes.txt"}
    out = tmp_path / "o.png"
    rc, _, stderr = _run(["stylize", files / "photo.png", "--device", "cpu", "-o", out,
                               *[subst.get(a, a) for a in extra]])
    line = stderr.strip()
    assert rc == 2 and "\n" not in line and "Traceback" not in stderr, stderr
    assert message in line
    assert not out.exists()


def test_altered_weights_are_one_line(files, tmp_path, monkeypatch):
    from impasto.nets.magenta_onnx import locate_magenta_file

    bad = tmp_path / "multistyle26.onnx"
    bad.write_bytes(locate_magenta_file("multistyle").read_bytes()[:-1] + b"x")
    monkeypatch.setenv("IMPASTO_MAGENTA_MULTISTYLE", str(bad))
    out = tmp_path / "o.png"
    rc, _, stderr = _run(["stylize", files / "photo.png", "--preset", "1", "-o", out])
    assert rc == 2 and "\n" not in stderr.strip() and "Traceback" not in stderr
    assert "multistyle26.onnx" in stderr and not out.exists()
    monkeypatch.setenv("IMPASTO_MAGENTA_MULTISTYLE", str(tmp_path / "gone.onnx"))
    rc, _, stderr = _run(["stylize", files / "photo.png", "--preset", "1", "-o", out])
    assert rc == 2 and "\n" not in stderr.strip() and not out.exists()


def test_presets_list_and_sheet(files, tmp_path):
    rc, stdout, _ = _run(["presets", "list"])
    lines = stdout.splitlines()
    assert rc == 0 and len(lines) == 26
    assert lines[19].split()[:2] == ["19", "starry-blue"]
    out = tmp_path / "sheet.png"
    rc, _, err = _run(["presets", "sheet", files / "photo.png", "--size", "64", "--device",
                       "cpu", "-o", out, "-q"])
    assert rc == 0, err
    sheet = Image.open(out)
    # 27 tiles (the photo and 26 presets) of 64x43, 6 columns, 5 rows with 14 px captions
    assert sheet.size == (6 * 64, 5 * (43 + 14))
    a = np.asarray(sheet.convert("RGB"), np.float32)
    tiles = [a[r * 57:r * 57 + 43, c * 64:(c + 1) * 64] for r in range(5) for c in range(6)]
    assert all(np.abs(tiles[k] - tiles[k + 1]).mean() > 3 for k in range(26))
    assert tiles[27].min() == 255  # the empty cells stay white
    rc, _, _ = _run(["presets", "sheet", tmp_path / "missing.jpg", "-o",
                          tmp_path / "s2.png"])
    assert rc == 2 and not (tmp_path / "s2.png").exists()


def test_preset_sheet_tiles_are_the_presets(files):
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    photo = Image.open(files / "photo.png")
    sheet = np.asarray(preset_sheet(inst, photo, size=61), np.float32)
    one = np.asarray(inst(photo, preset=7), np.float32)
    row, col = divmod(8, 6)  # preset 7 is the 8th tile after the photo
    tile = sheet[row * 55:row * 55 + 41, col * 61:(col + 1) * 61]
    assert np.abs(tile - one).max() <= 1


def _halves(path, size, left: bool) -> None:
    w, h = size
    a = np.zeros((h, w), np.uint8)
    if left:
        a[:, : w // 2] = 255
    else:
        a[:, w // 2:] = 255
    Image.fromarray(a).save(path)


def test_masks_place_the_styles(files, tmp_path):
    # --mask: one per style image, or one per --preset; the same file format as Gatys/AdaIN
    ma, mb = tmp_path / "a.png", tmp_path / "b.png"
    _halves(ma, (30, 20), True)  # another size than the photo: resized, with a note
    _halves(mb, (30, 20), False)
    out = tmp_path / "m.png"
    rc, _, err = _run(["stylize", files / "photo.png", "--method", "instant", "-s",
                       files / "starry.png", files / "scream.png", "--mask", ma, mb,
                       "--precision", "fp32", "--device", "cpu", "-o", out])
    assert rc == 0, err
    assert "note: the masks (30x20) are resized to the output (61x41)" in err
    img = Image.open(out)
    assert json.loads(img.text["settings"])["mask"] == ["a.png", "b.png"]
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    want = inst(files / "photo.png", [files / "starry.png", files / "scream.png"],
                masks=[ma, mb])
    assert np.abs(_px(out) - np.asarray(want, np.float32)).max() <= 1
    out2 = tmp_path / "p.png"
    rc, _, err = _run(["stylize", files / "photo.png", "--preset", "3", "--preset", "12",
                       "--mask", ma, mb, "--precision", "fp32", "--device", "cpu", "-o", out2,
                       "-q"])
    assert rc == 0 and err == "", err
    assert json.loads(Image.open(out2).text["preset"]) == ["3 abstract-swirl",
                                                          "12 lavender-haze"]
    want = inst(files / "photo.png", preset=[3, 12], masks=[ma, mb])
    assert np.abs(_px(out2) - np.asarray(want, np.float32)).max() <= 1


def test_histogram_colours(files, tmp_path):
    out = tmp_path / "h.png"
    rc, _, err = _run(["stylize", files / "photo.png", "--method", "instant", "-s",
                       files / "starry.png", "--preserve-color", "histogram",
                       "--precision", "fp32", "--device", "cpu", "-o", out, "-q"])
    assert rc == 0, err
    assert json.loads(Image.open(out).text["settings"])["preserve_color"] == "histogram"
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    want = inst(files / "photo.png", files / "starry.png", preserve_color="histogram")
    assert np.abs(_px(out) - np.asarray(want, np.float32)).max() <= 1
    plain = np.asarray(inst(files / "photo.png", files / "starry.png"), np.float32)
    photo = _px(files / "photo.png")
    gap = lambda a: np.abs(a.mean((0, 1)) - photo.mean((0, 1))).sum()  # noqa: E731
    assert gap(_px(out)) < 0.5 * gap(plain)


@pytest.mark.parametrize("extra, message", [
    (["-s", "STARRY", "SCREAM", "--mask", "MA"], "1 masks for 2 style image(s)"),
    (["-s", "STARRY", "SCREAM", "--mask", "MA", "BLACK"], "mask 2 is black everywhere"),
    (["-s", "STARRY", "SCREAM", "--mask", "MA", "MB", "--style-blend-weights", "1,2"],
     "blend weights do not apply with masks"),
    (["--preset", "3", "--preset", "4"], "give one --mask per preset"),
    (["--preset", "3", "--preset", "4", "--mask", "MA"], "1 masks for 2 style image(s)"),
    (["--preset", "3", "--preserve-color", "histogram"], "a preset has none"),
])
def test_bad_masks_are_one_line(files, tmp_path, extra, message):
    _halves(tmp_path / "a.png", (61, 41), True)
    _halves(tmp_path / "b.png", (61, 41), False)
    Image.new("L", (61, 41)).save(tmp_path / "black.png")
    subst = {"STARRY": files / "starry.png", "SCREAM": files / "scream.png",
             "MA": tmp_path / "a.png", "MB": tmp_path / "b.png", "BLACK": tmp_path / "black.png"}
    out = tmp_path / "o.png"
    argv = ["stylize", files / "photo.png", "--device", "cpu", "-o", out]
    if extra[0] == "-s":
        argv += ["--method", "instant"]
    rc, _, stderr = _run(argv + [subst.get(a, a) for a in extra])
    line = stderr.strip()
    assert rc == 2 and "\n" not in line and "Traceback" not in stderr, stderr
    assert message in line
    assert not out.exists()


def test_int8_when_asked(files, tmp_path):
    from impasto.nets.int8 import int8_supported

    if not int8_supported("cpu"):
        pytest.skip("int8 needs a CPU with VNNI")
    outs = {}
    for p in ("fp32", "int8"):
        outs[p] = tmp_path / f"{p}.png"
        rc, _, err = _run(["stylize", files / "photo.png", "--method", "instant", "-s",
                           files / "starry.png", "--precision", p, "--device", "cpu", "-o",
                           outs[p], "-q"])
        assert rc == 0, err
    assert json.loads(Image.open(outs["int8"]).text["settings"])["precision"] == "int8"
    diff = np.abs(_px(outs["int8"]) - _px(outs["fp32"]))
    assert 0 < diff.mean() < 8  # close to fp32, but int8 (measured 33-35 dB at 512 px)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_export_a_preset_and_a_painting(files, tmp_path):
    # --export writes the transformer with the style fixed; it runs at any size and gives
    # the pipeline's pixels (TorchScript here; ONNX in tests/style/test_instant_export.py)
    import torch

    from impasto.io import load_image, to_tensor

    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    x = to_tensor(load_image(files / "photo.png"))  # 61 x 41: not a multiple of 4
    for extra, want in (
        (["--preset", "3:0.5,12:0.5", "--strength", "0.8"],
         inst(x, preset="3:0.5,12:0.5", strength=0.8)),
        (["--method", "instant", "-s", files / "starry.png", files / "scream.png",
          "--style-blend-weights", "3,1"],
         inst(x, [files / "starry.png", files / "scream.png"], weights=[3, 1])),
    ):
        out = tmp_path / "net.pt"
        rc, stdout, err = _run(["stylize", *extra, "--export", "torchscript", "-o", out,
                                "--device", "cpu"])
        assert rc == 0, err
        assert "max abs difference to the eager model" in stdout
        with torch.inference_mode():
            got = torch.jit.load(str(out))(x)
        assert got.shape == x.shape and float((got - want).abs().max()) < 1e-4


@pytest.mark.parametrize("extra, message", [
    (["--method", "instant", "-s", "STARRY", "--strength", "0.5"], "export at strength 1"),
    (["--method", "instant", "-s", "STARRY", "--mask", "STARRY"], "cannot be exported"),
    (["--preset", "3", "--preserve-color", "luminance"], "cannot be exported"),
    (["--preset", "3"], "a torchscript file should end in"),
])
def test_bad_exports_are_one_line(files, tmp_path, extra, message):
    out = tmp_path / ("net.onnx" if extra == ["--preset", "3"] else "net.pt")
    rc, _, stderr = _run(["stylize", *[files / "starry.png" if a == "STARRY" else a
                                       for a in extra],
                          "--export", "torchscript", "-o", out, "--device", "cpu"])
    assert rc == 2 and "\n" not in stderr.strip() and "Traceback" not in stderr, stderr
    assert message in stderr and not out.exists()


def test_adain_refuses_a_black_mask_as_the_others_do(files, tmp_path):
    # the masks are checked by one function for Gatys, AdaIN and the instant styles
    Image.new("L", (61, 41), 255).save(tmp_path / "white.png")
    Image.new("L", (61, 41)).save(tmp_path / "black.png")
    out = tmp_path / "o.png"
    rc, _, stderr = _run(["stylize", files / "photo.png", "--method", "adain", "--decoder",
                          tmp_path / "no-decoder.pt", "-s", files / "starry.png",
                          files / "scream.png", "--mask", tmp_path / "white.png",
                          tmp_path / "black.png", "-o", out])
    assert rc == 2 and "mask 2 is black everywhere" in stderr and not out.exists()
    assert "\n" not in stderr.strip()
