"""``impasto gan train|sample|interpolate``: good runs write what they should; every bad input is
exit status 2, one line on stderr, no traceback and no output left behind."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error
from impasto.cli import main
from impasto.gan import GanGenerator, GanLoss
from impasto.train import save_checkpoint

TINY = ["--base-width", "8", "--z-dim", "16", "--batch-size", "8", "--samples", "4",
        "--precision", "fp32", "--device", "cpu", "--log-every", "2", "--no-tensorboard", "-q"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    """A folder of 16 PNGs, an empty folder, a folder without images, and a run trained by the
    CLI for 4 steps (unconditional DCGAN)."""
    root = tmp_path_factory.mktemp("gancli")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[..., i % 3] = 200
        top, left = rng.integers(0, 20, 2)
        arr[top : top + 12, left : left + 12] = rng.integers(0, 256, 3)
        Image.fromarray(arr).save(images / f"{i:02d}.png")
    (root / "empty").mkdir()
    (root / "texts").mkdir()
    (root / "texts" / "readme.txt").write_text("no images here")
    np.savez(root / "unlabelled.npz", images=rng.integers(0, 256, (16, 32, 32, 3), np.uint8))
    run = root / "run"
    rc = main(["gan", "train", str(images), "--run", str(run), "--steps", "4", "--ckpt-every",
               "2", *TINY])
    assert rc == 0
    ckpt = run / "ckpt-000000004.pt"
    cut = root / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    other = save_checkpoint(root / "classifier.pt", kind="classifier/resnet", config={}, step=1,
                            images_seen=1, models={"net": torch.nn.Linear(2, 2)}, optimizers={})
    return SimpleNamespace(root=root, images=images, run=run, ckpt=ckpt, cut=cut, other=other,
                           empty=root / "empty", texts=root / "texts",
                           unlabelled=root / "unlabelled.npz")


def test_the_trained_run(env):
    assert sorted(p.name for p in env.run.glob("ckpt-*.pt")) == [
        "ckpt-000000002.pt", "ckpt-000000004.pt"
    ]
    config = json.loads((env.run / "config.json").read_text())
    assert (config["base_width"], config["steps"], config["data"]) == (8, 4, str(env.images))
    assert [json.loads(x)["step"] for x in (env.run / "stats.jsonl").read_text().splitlines()] == [
        2, 4
    ]


def test_sample_grid(env, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["gan", "sample", str(env.run), "-n", "6", "--seed", "7", "--grid", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {out}"
    with Image.open(out) as im:
        assert im.size == (3 * 34 + 2, 2 * 34 + 2)  # 3 per row, 32 px + 2 px padding
        grid = np.asarray(im.convert("RGB"), dtype=np.int64)
    images = GanGenerator.load(env.run)(6, seed=7)
    for k in (0, 4):
        r, c = divmod(k, 3)
        tile = grid[2 + 34 * r : 34 + 34 * r, 2 + 34 * c : 34 + 34 * c]
        want = images[k].permute(1, 2, 0).mul(255).round().to(torch.int64).numpy()
        assert np.abs(tile - want).max() <= 1
    # --nrow
    out2 = tmp_path / "row.png"
    assert main(["gan", "sample", str(env.ckpt), "-n", "6", "--grid", str(out2), "--nrow", "6",
                 "-q"]) == 0
    with Image.open(out2) as im:
        assert im.size == (6 * 34 + 2, 34 + 2)


def test_sample_out_dir(env, tmp_path):
    out = tmp_path / "samples"
    assert main(["gan", "sample", str(env.run), "-n", "5", "--seed", "1", "--out-dir", str(out),
                 "--truncation", "0.7", "-q"]) == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"seed1-{i:05d}.png" for i in range(5)]
    with Image.open(files[2]) as im:
        assert im.size == (32, 32)
        got = np.asarray(im.convert("RGB"), dtype=np.int64)
    want = GanGenerator.load(env.run)(5, seed=1, truncation=0.7)[2]
    assert np.abs(got - want.permute(1, 2, 0).mul(255).round().numpy()).max() <= 1


def test_interpolate_gif(env, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    old = os.umask(0o022)
    try:
        assert main(["gan", "interpolate", str(env.run), "--seeds", "1,2,3", "--frames", "7",
                     "-o", str(out), "--scale", "2"]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # as every other output, not mkstemp's 0600
    assert "7 frames" in capsys.readouterr().err
    with Image.open(out) as im:
        assert im.n_frames == 7
        assert im.size == (64, 64)
        im.seek(3)
        middle = np.asarray(im.convert("RGB"), dtype=np.int64)[::2, ::2]
    # frame 3 of 7 through seeds 1, 2, 3 is seed 2's image (GIF palette: within a few levels)
    want = GanGenerator.load(env.run)(1, seed=2)[0].permute(1, 2, 0).mul(255).numpy()
    assert np.abs(middle - want).mean() < 8
    assert not list(tmp_path.glob(".walk.gif.*"))  # no temporary file left


def test_interpolate_mp4(env, tmp_path):
    imageio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "walk.mp4"
    old = os.umask(0o027)
    try:
        assert main(["gan", "interpolate", str(env.run), "--seeds", "1,2,3", "--frames", "9",
                     "-o", str(out), "--scale", "2", "--fps", "6", "-q"]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640  # 0666 & ~umask
    frames = imageio.imread(out, plugin="FFMPEG")
    assert frames.shape[0] == 9 and frames.shape[1:3] == (64, 64)
    meta = imageio.immeta(out, plugin="FFMPEG")
    assert meta["fps"] == pytest.approx(6, abs=0.01)
    # frame 4 of 9 through seeds 1, 2, 3 is seed 2's image (lossy H.264: close, not exact)
    want = GanGenerator.load(env.run)(1, seed=2)[0].permute(1, 2, 0).mul(255).numpy()
    middle = frames[4].astype(np.float64)
    if middle.ndim == 3 and want.shape[-1] == 1:
        middle = middle.mean(-1, keepdims=True)
    small = middle.reshape(32, 2, 32, 2, -1).mean((1, 3))
    assert np.abs(small - want).mean() < 4
    assert not list(tmp_path.glob(".walk.mp4.*"))


def test_resume_from_the_cli(env, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(env.run, run)
    assert main(["gan", "train", "--resume", str(run), "--steps", "6", "-q"]) == 0
    assert (run / "ckpt-000000006.pt").is_file()
    config = json.loads((run / "config.json").read_text())
    assert (config["steps"], config["base_width"], config["z_dim"]) == (6, 8, 16)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert (config["ema_beta"], config["ema_kimg"]) == (None, 10.0)  # the default half-life
    # an EMA setting given on resume replaces the saved one it cannot go with
    assert main(["gan", "train", "--resume", str(run), "--steps", "7", "--ema-beta", "0.99",
                 "-q"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["ema_beta"], config["ema_kimg"], config["ema_rampup"]) == (0.99, None, None)
    assert main(["gan", "train", "--resume", str(run), "--steps", "8", "--ema-kimg", "2",
                 "-q"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["ema_beta"], config["ema_kimg"], config["ema_rampup"]) == (None, 2.0, None)


def test_a_nan_is_exit_status_1_and_one_line(env, tmp_path, capsys, monkeypatch):
    original = GanLoss.d_step

    def d_step(self, *a, **kw):
        stats = original(self, *a, **kw)
        stats["d_loss"] = float("inf")
        return stats

    monkeypatch.setattr(GanLoss, "d_step", d_step)
    rc = main(["gan", "train", str(env.images), "--run", str(tmp_path / "run"), "--steps", "3",
               *TINY])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines() == [
        "impasto: error: loss 'd_loss' became inf at step 1; no checkpoint had been written yet"
    ]
    assert not list((tmp_path / "run").glob("ckpt-*.pt"))


def test_no_subcommand_shows_help(capsys):
    assert main(["gan"]) == 2
    assert "train" in capsys.readouterr().err


# every bad input: (argv with {placeholders}, the message's distinctive part)
BAD_TRAIN = [
    (["{empty}"], "no images in this folder"),
    (["{texts}"], "no images in this folder"),
    (["{root}/nowhere"], "no such file or folder"),
    (["{images}", "--resolution", "48"], "resolution 48 is not supported by dcgan; choose from"),
    (["{images}", "--arch", "sngan", "--resolution", "16"], "not supported by sngan"),
    (["{unlabelled}", "--conditional"], "no labels; a conditional GAN needs labelled data"),
    (["{images}", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["{images}", "--batch-size", "32"], "fewer than the batch size 32"),
    (["{images}", "--kimg", "-1"], "argument --kimg: must be positive"),
    (["{images}", "--lr-g", "abc"], "argument --lr-g: not a number"),
    (["{images}", "--steps", "2", "--kimg", "1"], "not allowed with argument"),
    (["{images}", "--seed", "-1"], "argument --seed: must not be negative"),
    (["{images}", "--ema-beta", "1.5"], "ema_beta must be a number >= 0 below 1"),
    (["{images}", "--betas", "0.5"], "give two numbers"),
    (["{images}", "--diffaugment", "blur"], "unknown DiffAugment policy 'blur'"),
    (["{images}", "--resume", "{root}/missing.pt"], "no such checkpoint file or run folder"),
    (["{images}", "--resume", "{cut}"], "truncated or corrupt checkpoint"),
    (["{images}", "--resume", "{run}", "--arch", "sngan"],
     "is a 'gan/dcgan' checkpoint, not 'gan/sngan'"),
    (["{images}", "--resume", "{other}"], "'classifier/resnet' checkpoint, not a GAN's"),
]


@pytest.mark.parametrize("argv,expect", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input(env, tmp_path, capsys, argv, expect):
    out = tmp_path / "out"
    args = [a.format(**vars(env)) for a in argv]
    one_line_error(capsys, ["gan", "train", *args, "--run", str(out), "--steps", "2"], expect, out)


def test_train_needs_out_and_refuses_a_used_run_folder(env, capsys):
    one_line_error(capsys, ["gan", "train", str(env.images)], "give the run folder with --run")
    one_line_error(capsys, ["gan", "train", "--run", str(env.root / "x")], "give the training DATA",
                   env.root / "x")
    before = sorted(p.name for p in env.run.iterdir())
    one_line_error(capsys, ["gan", "train", str(env.images), "--run", str(env.run)],
                   "already holds checkpoints; continue it with --resume")
    assert sorted(p.name for p in env.run.iterdir()) == before


BAD_SAMPLE = [
    (["{root}/missing.pt"], "no such checkpoint file or run folder"),
    (["{empty}"], "no checkpoint in this folder"),
    (["{cut}"], "truncated or corrupt checkpoint"),
    (["{other}"], "is a 'classifier/resnet' checkpoint, not a GAN's"),
    (["{run}", "--class", "1"], "this generator is unconditional"),
    (["{run}", "-n", "0"], "argument -n: must be at least 1"),
    (["{run}", "-n", "many"], "argument -n: not a whole number"),
    (["{run}", "--truncation", "0"], "argument --truncation: must be positive"),
    (["{run}", "--truncation", "nan"], "not a finite number"),
    (["{run}", "--seed", "-3"], "must not be negative"),
]


@pytest.mark.parametrize("argv,expect", BAD_SAMPLE, ids=[" ".join(a) for a, _ in BAD_SAMPLE])
def test_bad_sample_input(env, tmp_path, capsys, argv, expect):
    args = [a.format(**vars(env)) for a in argv]
    grid = tmp_path / "grid.png"
    one_line_error(capsys, ["gan", "sample", *args, "--grid", str(grid)], expect, grid)
    folder = tmp_path / "many"
    one_line_error(capsys, ["gan", "sample", *args, "--out-dir", str(folder)], expect, folder)


def test_bad_sample_outputs(env, tmp_path, capsys):
    one_line_error(capsys, ["gan", "sample", str(env.run), "--grid", str(tmp_path / "g.txt")],
                   "unsupported output format", tmp_path / "g.txt")
    one_line_error(capsys, ["gan", "sample", str(env.run)],
                   "one of the arguments --grid --out-dir is required")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["gan", "sample", str(env.run), "--out-dir", str(tmp_path / "file")],
                   "is a file, not a folder")


BAD_INTERPOLATE = [
    (["{run}", "--seeds", "1,2", "--frames", "1"], "--frames must be from 2"),
    (["{run}", "--seeds", "1,x", "--frames", "5"], "not a comma-separated list of whole numbers"),
    (["{run}", "--seeds", "5", "--frames", "5"], "needs at least two seeds"),
    (["{run}", "--seeds", "1,2", "--frames", "5", "--class", "0"], "unconditional"),
    (["{cut}", "--seeds", "1,2", "--frames", "5"], "truncated or corrupt"),
    (["{run}", "--seeds", "1,2", "--frames", "5", "--fps", "0"], "must be positive"),
]


@pytest.mark.parametrize("argv,expect", BAD_INTERPOLATE,
                         ids=[" ".join(a) for a, _ in BAD_INTERPOLATE])
def test_bad_interpolate_input(env, tmp_path, capsys, argv, expect):
    out = tmp_path / "walk.gif"
    args = [a.format(**vars(env)) for a in argv]
    one_line_error(capsys, ["gan", "interpolate", *args, "-o", str(out)], expect, out)


def test_bad_interpolate_outputs(env, tmp_path, capsys):
    base = ["gan", "interpolate", str(env.run), "--seeds", "1,2", "--frames", "4", "-o"]
    one_line_error(capsys, [*base, str(tmp_path / "walk.avi")], "unsupported animation format",
                   tmp_path / "walk.avi")
    one_line_error(capsys, [*base, str(tmp_path / "no" / "walk.gif")], "does not exist",
                   tmp_path / "no")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        one_line_error(capsys, [*base, str(tmp_path / "walk.mp4")],
                       "pip install imageio imageio-ffmpeg", tmp_path / "walk.mp4")


# Options for some generators or outputs only: (option, the generator's file, expected).
# The generator's kind is known once its file is read; each refusal names what takes it.
MODEL_SPECIFIC = [
    (["--class", "1"], "run", "this generator is unconditional; a class needs a "
     "class-conditional model"),
    (["--resolution", "16"], "run", "--resolution applies to progressive GANs (pggan)"),
    (["--no-ema"], "model", "a model file holds only the generator's moving average"),
]


@pytest.mark.parametrize("command", ["sample", "interpolate"])
@pytest.mark.parametrize("option, source, expect", MODEL_SPECIFIC,
                         ids=[a[0] for a, _, _ in MODEL_SPECIFIC])
def test_options_of_other_generators_are_refused(env, tmp_path, capsys, command, option,
                                                 source, expect):
    from impasto.gan import export_model

    src = env.run if source == "run" else export_model(env.run, tmp_path / "g.pt")
    out = tmp_path / ("grid.png" if command == "sample" else "walk.gif")
    where = ["--grid", str(out)] if command == "sample" else \
        ["--seeds", "1,2", "--frames", "3", "-o", str(out)]
    one_line_error(capsys, ["gan", command, str(src), *where, *option], expect, out)


def test_nrow_applies_to_a_grid(env, tmp_path, capsys):
    from impasto.cli.gan import SAMPLE_OPTIONS

    folder = tmp_path / "many"
    one_line_error(capsys, ["gan", "sample", str(env.run), "--out-dir", str(folder), "--nrow",
                            "2"], "gan sample: --nrow applies to one grid image (--grid), not "
                   "to one file per image (--out-dir)", folder)
    assert {flag for flag, _ in SAMPLE_OPTIONS.only.values()} == {"--nrow"}


def test_prepare_writes_a_cache_that_trains_like_the_source(env, tmp_path, capsys):
    from impasto.data import open_dataset

    cache = tmp_path / "cache.pt"
    assert main(["gan", "prepare", str(env.images), "-o", str(cache), "--resolution", "32",
                 "--channels", "3"]) == 0
    assert "wrote" in capsys.readouterr().err
    src = open_dataset(str(env.images), resolution=32, channels=3)
    got = open_dataset(str(cache), resolution=32, channels=3)
    assert len(got) == len(src)
    for i in (0, len(src) // 2, len(src) - 1):
        assert torch.equal(got.image_u8(i), src.image_u8(i))
        assert got.label(i) == src.label(i)


def test_bad_prepare_input(env, tmp_path, capsys):
    base = ["gan", "prepare", str(env.images), "--resolution", "32", "-o"]
    one_line_error(capsys, [*base, str(tmp_path / "c.npz")], "must end in .pt", tmp_path / "c.npz")
    one_line_error(capsys, [*base, str(tmp_path / "no" / "c.pt")], "does not exist",
                   tmp_path / "no")
    one_line_error(capsys, ["gan", "prepare", str(env.empty), "--resolution", "32",
                            "-o", str(tmp_path / "c.pt")], "empty", tmp_path / "c.pt")
