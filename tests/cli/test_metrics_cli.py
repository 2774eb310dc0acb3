"""``impasto metrics``: sources (folders, arrays, statistics files, generators), the numbers it
reports against the library functions, cached statistics, and one-line errors (exit 2).

Most runs use a toy extractor registered for the test (pixel statistics, with logits); one run
uses the real offline VGG19. Images are built here: 32x32 noise around a per-set colour.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.cli import main
from impasto.metrics import fid, inception_score, kid, precision_recall, swd
from impasto.metrics.extractors import EXTRACTORS, ExtractorInfo, FeatureExtractor
from impasto.nets.inception import FID_INCEPTION

pytestmark = pytest.mark.usefixtures("one_thread")

N = 30


class PixelStats(FeatureExtractor):
    """4x4 average-pooled pixels and their deviation from the image mean (96-d); 3 logits."""

    def __init__(self, name: str = "pixelstats", logits: bool = True) -> None:
        self.name = name
        self.fingerprint = name
        self.feature_dim, self.num_classes = 96, (3 if logits else 0)
        self.description = "toy pixel statistics"
        self.logits = logits

    def prepare(self, x):
        return F.adaptive_avg_pool2d(x.float(), 4)

    def features(self, x):
        f = torch.cat([x.flatten(1), (x - x.mean(dim=(2, 3), keepdim=True)).flatten(1)], 1)
        return f, (x.mean(dim=(2, 3)) * 8 if self.logits else None)


@pytest.fixture(autouse=True)
def toy_extractors(monkeypatch):
    toys = (("pixelstats", True), ("pixelstats2", True), ("nologits", False))
    for name, logits in toys:
        EXTRACTORS.register(name, ExtractorInfo(
            lambda arg, w, d, name=name, logits=logits: PixelStats(name, logits), "toy"))
    monkeypatch.delenv(FID_INCEPTION.env_var, raising=False)
    yield
    for name, _ in toys:
        EXTRACTORS.unregister(name)


def _images(n: int, colour, seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.asarray(colour, dtype=np.float64)[None, None, None, :]
    tint = rng.normal(0, 25, (n, 1, 1, 3))  # images differ in colour, not only in noise
    x = base + tint + rng.normal(0, 30, (n, size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def _folder(root: Path, name: str, images: np.ndarray) -> Path:
    d = root / name
    d.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(d / f"{i:03d}.png")
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("metrics_cli")
    a = _images(N, (120, 100, 90), 0)
    a2 = _images(N, (120, 100, 90), 1)
    c = _images(N, (150, 90, 60), 2)
    ns = SimpleNamespace(root=root, a_images=a, c_images=c)
    ns.a, ns.a2, ns.c = _folder(root, "a", a), _folder(root, "a2", a2), _folder(root, "c", c)
    ns.few = _folder(root, "few", a[:3])
    ns.one = _folder(root, "one", a[:1])
    ns.big = _folder(root, "big", _images(6, (120, 100, 90), 3, size=48))
    ns.small = _folder(root, "small", _images(6, (120, 100, 90), 3, size=8))
    ns.mixed = _folder(root, "mixed", a[:4])
    Image.fromarray(_images(1, (0, 0, 0), 4, size=48)[0]).save(ns.mixed / "zz_big.png")
    ns.empty = root / "empty"
    ns.empty.mkdir()
    (ns.empty / "notes.txt").write_text("no images here")
    ns.a_nhwc = root / "a_nhwc.npz"
    np.savez(ns.a_nhwc, images=a)
    ns.a_nchw = root / "a_nchw.npz"
    np.savez(ns.a_nchw, x=a.transpose(0, 3, 1, 2))
    return ns


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, data):
    from impasto.gan import GanTrainConfig, train

    root = tmp_path_factory.mktemp("metrics_gan")
    cfg = GanTrainConfig(
        data=str(data.a_nhwc), run=str(root / "run"), z_dim=8, base_width=4, batch_size=8,
        steps=1, precision="fp32", device="cpu", log_every=0, sample_every=0, ckpt_every=1,
        n_samples=4, tensorboard=False,
    )
    train(cfg)
    return root / "run"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["metrics", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, tmp_path, *argv) -> dict:
    out_file = tmp_path / f"out{len(list(tmp_path.iterdir()))}.json"
    code, out, err = run(capsys, *argv, "--json", out_file, "-q", "--device", "cpu")
    assert code == 0, err
    assert err == ""  # -q: no progress, no notes
    return json.loads(out_file.read_text())


def feats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    ex = PixelStats()
    f, lg = ex(x)
    return f.double().numpy(), lg.double().numpy()


# --------------------------------------------------------------------------------------------
# numbers


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift(capsys, tmp_path, data):
    same = run_json(capsys, tmp_path, "fid", data.a, data.a, "--extractor", "pixelstats")
    twin = run_json(capsys, tmp_path, "fid", data.a, data.a2, "--extractor", "pixelstats")
    shifted = run_json(capsys, tmp_path, "fid", data.a, data.c, "--extractor", "pixelstats")
    assert same["metrics"]["fid"] < 1e-6
    assert 0 < twin["metrics"]["fid"] < shifted["metrics"]["fid"] / 5
    fa, _ = feats(data.a_images)
    fc, _ = feats(data.c_images)
    assert shifted["metrics"]["fid"] == pytest.approx(fid(fa, fc), rel=1e-5)
    assert shifted["sets"]["real"] == {"kind": "folder", "path": str(data.a), "n": N,
                                       "available": N}
    assert shifted["extractor"]["fingerprint"] == "pixelstats"


def test_all_prints_a_table_and_matches_the_library(capsys, tmp_path, data):
    out_file = tmp_path / "all.json"
    code, out, err = run(capsys, "all", data.a, data.c, "--extractor", "pixelstats",
                         "--splits", "3", "--json", out_file, "--device", "cpu")
    assert code == 0, err
    assert "real features" in err and "fake features" in err  # the progress bars
    report = json.loads(out_file.read_text())
    m = report["metrics"]
    fa, la = feats(data.a_images)
    fc, lc = feats(data.c_images)
    assert m["fid"] == pytest.approx(fid(fa, fc), rel=1e-5)
    kid_mean, kid_std = kid(fa, fc, seed=0)
    assert m["kid"]["mean"] == pytest.approx(kid_mean, rel=1e-4) and m["kid"]["mean"] > 0
    assert m["kid"]["std"] == pytest.approx(kid_std, abs=1e-9)
    assert m["is"]["mean"] == pytest.approx(inception_score(lc, 3, logits=True)[0], rel=1e-5)
    assert m["is_real"]["mean"] == pytest.approx(inception_score(la, 3, logits=True)[0],
                                                 rel=1e-5)
    pr = precision_recall(fa, fc)
    assert (m["precision"], m["recall"]) == pytest.approx((pr["precision"], pr["recall"]))
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)  # noqa: E731
    ref = swd(to_t(data.a_images), to_t(data.c_images), seed=0, batch_size=32)
    assert m["swd"] == pytest.approx({str(k): v for k, v in ref.items()}, rel=1e-6)
    assert set(m["swd"]) == {"32", "16", "avg"}
    lines = out.splitlines()
    for label, value in (("FID", m["fid"]), ("KID", m["kid"]["mean"]),
                         ("IS (FAKE)", m["is"]["mean"]), ("IS (REAL)", m["is_real"]["mean"]),
                         ("precision", m["precision"]), ("recall", m["recall"]),
                         ("SWD 32px x1e3", m["swd"]["32"]), ("SWD avg x1e3", m["swd"]["avg"])):
        row = [ln for ln in lines if ln.startswith(label + " ")]
        assert len(row) == 1, label
        assert float(row[0][len(label):].split()[0]) == pytest.approx(value, rel=1e-3, abs=1e-4)
    assert report["skipped"] == {}


def test_arrays_nhwc_and_nchw_equal_the_folder(capsys, tmp_path, data):
    values = [
        run_json(capsys, tmp_path, "kid", src, data.c, "--extractor", "pixelstats")["metrics"]
        for src in (data.a, data.a_nhwc, data.a_nchw)
    ]
    assert values[0] == values[1] == values[2]


def test_n_takes_a_seeded_subset_of_a_folder(capsys, tmp_path, data):
    r1 = run_json(capsys, tmp_path, "fid", data.a, data.c, "-n", 10, "--extractor", "pixelstats")
    r2 = run_json(capsys, tmp_path, "fid", data.a, data.c, "-n", 10, "--extractor", "pixelstats")
    r3 = run_json(capsys, tmp_path, "fid", data.a, data.c, "-n", 10, "--seed", 5,
                  "--extractor", "pixelstats")
    assert r1["sets"]["real"]["n"] == 10 and r1["sets"]["real"]["available"] == N
    assert r1["metrics"] == r2["metrics"] != r3["metrics"]


def test_saved_statistics_stand_in_for_the_set(capsys, tmp_path, data):
    stats = tmp_path / "a_stats.npz"
    run_json(capsys, tmp_path, "kid", data.a, data.c, "--extractor", "pixelstats",
             "--save-stats", stats)
    with np.load(stats) as z:
        assert {"mu", "sigma", "n", "meta", "features", "logits"} <= set(z.files)
        assert int(z["n"]) == N and z["features"].shape == (N, 96)
    cached = run_json(capsys, tmp_path, "all", stats, data.c, "--extractor", "pixelstats",
                      "--splits", "3")
    fa, la = feats(data.a_images)
    fc, _ = feats(data.c_images)
    m = cached["metrics"]
    assert m["fid"] == pytest.approx(fid(fa, fc), rel=1e-5)
    assert m["kid"]["mean"] == pytest.approx(kid(fa, fc, seed=0)[0], rel=1e-4)
    assert m["is_real"]["mean"] == pytest.approx(inception_score(la, 3, logits=True)[0],
                                                 rel=1e-5)
    assert m["precision"] == precision_recall(fa, fc)["precision"]
    assert "swd" not in m and "swd needs images" in cached["skipped"]["swd"]
    assert cached["sets"]["real"]["kind"] == "stats"
    full = cached

    lean = tmp_path / "a_lean.npz"
    run_json(capsys, tmp_path, "fid", data.a, data.c, "--extractor", "pixelstats",
             "--save-stats", lean, "--stats-only")
    with np.load(lean) as z:
        assert set(z.files) == {"mu", "sigma", "n", "meta"}
    again = run_json(capsys, tmp_path, "fid", lean, data.c, "--extractor", "pixelstats")
    assert again["metrics"]["fid"] == pytest.approx(full["metrics"]["fid"], rel=1e-9)
    code, out, err = run(capsys, "all", lean, data.c, "--extractor", "pixelstats")
    assert code == 0 and "impasto: note: kid skipped" in err and "FID" in out

    # A pytorch-fid style file: mu and sigma only.
    plain = tmp_path / "plain.npz"
    with np.load(stats) as z:
        np.savez(plain, mu=z["mu"], sigma=z["sigma"])
    other = run_json(capsys, tmp_path, "fid", plain, data.c, "--extractor", "pixelstats")
    assert other["metrics"]["fid"] == pytest.approx(full["metrics"]["fid"], rel=1e-9)


def test_all_skips_swd_of_images_it_cannot_compare_with_a_note(capsys, tmp_path, data):
    """`metrics all` gives what the inputs allow: images of another size (48 px against 32 px,
    or a folder of mixed sizes) or too small (8 px) skip SWD with a note, as a statistics file
    does; `metrics swd` alone refuses them (BAD below)."""
    for real, fake, why in ((data.a, data.big, "swd needs images of one size"),
                            (data.mixed, data.c, "images differ in size"),
                            (data.small, data.small, "at least 16x16")):
        report = run_json(capsys, tmp_path, "all", real, fake, "--extractor", "pixelstats",
                          "--splits", "2")
        assert "swd" not in report["metrics"] and why in report["skipped"]["swd"]
        assert {"fid", "kid", "precision"} <= set(report["metrics"])
    code, out, err = run(capsys, "all", data.a, data.big, "--extractor", "pixelstats",
                         "--splits", "2", "--device", "cpu")
    assert code == 0 and "FID" in out and "SWD" not in out
    assert "impasto: note: swd skipped: swd needs images of one size" in err


def test_generator_samples_are_drawn_with_a_seed(capsys, tmp_path, data, gan_run):
    args = ("kid", gan_run, data.a, "-n", 12, "--extractor", "pixelstats")
    r1 = run_json(capsys, tmp_path, *args, "--seed", 3)
    r2 = run_json(capsys, tmp_path, *args, "--seed", 3)
    r3 = run_json(capsys, tmp_path, *args, "--seed", 4)
    assert r1["metrics"] == r2["metrics"] != r3["metrics"]
    real = r1["sets"]["real"]
    assert (real["kind"], real["n"], real["seed"]) == ("generator", 12, 4)  # REAL: seed + 1
    assert real["path"].endswith(".pt")
    s = run_json(capsys, tmp_path, "swd", data.a, gan_run / "ckpt-000000001.pt", "-n", 8)
    assert s["sets"]["fake"]["n"] == 8 and s["metrics"]["swd"]["avg"] > 0


# --------------------------------------------------------------------------------------------
# bad inputs: exit 2, one line


BAD = [
    ("empty folder", ["fid", "{empty}", "{a}"], r"empty: empty folder: no image files"),
    ("missing path", ["fid", "{root}/nothere", "{a}"], r"nothere: no such file or folder"),
    ("too few for pr", ["pr", "{few}", "{a}"],
     r"REAL \(.*few\): pr needs at least 4 samples \(more than k=3 neighbours\), got 3"),
    ("too few for is", ["is", "{few}"], r"is needs at least 10 samples .*, got 3"),
    ("too few for kid", ["kid", "{a}", "{one}"], r"FAKE \(.*one\): kid needs at least 2 "
     r"samples"),
    ("swd sizes", ["swd", "{a}", "{big}"],
     r"swd needs images of one size: REAL \(.*a\) has 32x32, FAKE \(.*big\) has 48x48"),
    ("mixed folder", ["swd", "{mixed}", "{a}"],
     r"mixed: images differ in size \(000.png is 32x32, zz_big.png is 48x48\); swd needs one"),
    ("swd too small", ["swd", "{small}", "{small}"], r"at least 16x16"),
    ("weights file", ["fid", "{a}", "{c}", "--extractor", "inception", "--weights",
                      "{root}/nothere.pth"],
     r"FID Inception weight file not found: .*nothere.pth; download "
     r"pt_inception-2015-12-05-6726825d.pth from https://github.com/mseitzer/pytorch-fid/"),
    ("no weights", ["kid", "{a}", "{c}"],
     r"no FID Inception weight file given; .*--weights or .*IMPASTO_INCEPTION_WEIGHTS"),
    ("one set", ["fid", "{a}"], r"fid compares two sets: give REAL and FAKE, got 1"),
    ("unknown extractor", ["fid", "{a}", "{c}", "--extractor", "clip"],
     r"unknown feature extractor 'clip'"),
    ("is without logits", ["is", "{a}", "--extractor", "nologits"],
     r"extractor nologits gives no class logits"),
    ("stats only", ["fid", "{a}", "{c}", "--stats-only"], r"--stats-only applies to"),
    ("bad n", ["fid", "{a}", "{c}", "-n", "0"], r"argument -n: must be at least 1, not 0"),
    ("save-stats name", ["fid", "{a}", "{c}", "--save-stats", "{root}/s.txt"],
     r"must end in .npz"),
]


@pytest.mark.parametrize("argv,pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inputs_fail_with_one_line(capsys, tmp_path, data, argv, pattern):
    argv = [a.format(**vars(data)) for a in argv]
    if "--extractor" not in argv:
        argv += ["--extractor", "pixelstats"] if argv[0] not in ("kid", "swd") else []
    out_json = tmp_path / "never.json"
    code, out, err = run(capsys, *argv, "--json", out_json, "--device", "cpu")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("impasto"), err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not out_json.exists() and out == ""


def test_statistics_of_another_extractor_or_without_features_are_refused(capsys, tmp_path,
                                                                        data):
    lean = tmp_path / "lean.npz"
    run_json(capsys, tmp_path, "fid", data.a, data.c, "--extractor", "pixelstats",
             "--save-stats", lean, "--stats-only")
    cases = [
        (["fid", lean, data.c, "--extractor", "pixelstats2"],
         "holds features of extractor 'pixelstats', but --extractor pixelstats2 gives "
         "'pixelstats2'; encode it again"),
        (["kid", lean, data.c, "--extractor", "pixelstats"],
         "holds statistics only; kid needs the features"),
        (["swd", lean, data.c], "is a statistics file; swd needs images"),
        (["fid", lean, data.c, "--extractor", "pixelstats", "--save-stats", tmp_path / "x.npz"],
         "is already a statistics file"),
    ]
    for argv, fragment in cases:
        code, out, err = run(capsys, *argv, "--device", "cpu")
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
