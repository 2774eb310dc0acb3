"""``impasto classify train|eval|predict``: good runs write and print what they should; every
bad input is exit status 2, one line on stderr, no traceback and no output left behind."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from impasto.classify import evaluate, load_classifier
from impasto.cli import main
from impasto.train import load_checkpoint, save_checkpoint

TINY = ["--image-size", "8", "--width", "4", "--batch-size", "16", "--precision", "fp32",
        "--device", "cpu", "--no-tensorboard", "-q"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    """Digits of classes 0-3 as an npz and as a folder of PNGs (one sub-folder per class), odd
    inputs, and a run trained by the CLI for 6 steps."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("clscli")
    d = load_digits()
    keep = d.target < 4
    images = (d.images[keep] * 255 / 16).round().astype(np.uint8)[:160]
    labels = d.target[keep][:160]
    np.savez(root / "digits.npz", images=images, labels=labels)
    folder = root / "folder"
    for i in range(40):
        sub = folder / f"c{labels[i]}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).resize((24, 24)).save(sub / f"{i:03d}.png")
    loose = root / "loose"
    loose.mkdir()
    for i in range(3):
        Image.fromarray(images[i]).save(loose / f"{i}.png")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image")
    np.savez(root / "unlabelled.npz", images=images)
    run = root / "run"
    rc = main(["classify", "train", str(root / "digits.npz"), "--run", str(run), "--steps", "6",
               "--eval-every", "3", *TINY])
    assert rc == 0
    return SimpleNamespace(root=root, run=run, folder=folder, loose=loose, labels=labels,
                           images=images)


def test_train_writes_a_run(env):
    names = sorted(p.name for p in env.run.iterdir())
    assert names == ["best.json", "best.pt", "ckpt-000000003.pt", "ckpt-000000006.pt",
                     "config.json", "latest.json", "stats.jsonl"]
    config = json.loads((env.run / "config.json").read_text())
    assert (config["image_size"], config["width"], config["batch_size"]) == (8, 4, 16)
    assert load_checkpoint(env.run / "ckpt-000000006.pt")["kind"] == "classify/lenet"


def test_resume_continues_with_the_saved_settings(env, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(env.run, run)
    assert main(["classify", "train", "--resume", str(run), "--steps", "9", "-q"]) == 0
    ckpt = load_checkpoint(run / "ckpt-000000009.pt")
    assert ckpt["step"] == 9 and ckpt["config"]["width"] == 4  # kept from the run
    assert ckpt["config"]["steps"] == 9


def test_eval_prints_tables_and_writes_plot_and_json(env, tmp_path, capsys):
    plot, out = tmp_path / "cm.png", tmp_path / "r.json"
    rc = main(["classify", "eval", str(env.run), str(env.root / "digits.npz"), "--plot", str(plot),
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    expected = evaluate(load_classifier(env.run), str(env.root / "digits.npz"))
    assert text.startswith(f"accuracy {100 * expected.accuracy:.2f}% "
                           f"({int(np.trace(expected.confusion))} of 160)")
    assert "confusion matrix (rows: true class, columns: predicted class)" in text
    assert Image.open(plot).format == "PNG"
    data = json.loads(out.read_text())
    assert data["n"] == 160 and data["accuracy"] == pytest.approx(expected.accuracy)
    assert data["confusion"] == expected.confusion.tolist()
    assert data["model"].endswith("best.pt")


def test_eval_on_a_folder_matches_classes_by_name(env, tmp_path, capsys):
    # the folder's classes are "c0".."c3", the model's "0".."3": no match
    rc = main(["classify", "eval", str(env.run), str(env.folder)])
    err = capsys.readouterr().err
    assert rc == 2 and "class(es) 'c0', 'c1', 'c2', 'c3' unknown to the model" in err


def test_predict_gives_top_k_per_image(env, capsys):
    rc = main(["classify", "predict", str(env.run), str(env.loose), "-k", "3"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(env.loose / "0.png") + ": ")
    assert lines[0].count("(") == 3
    rc = main(["classify", "predict", str(env.run), str(env.loose / "1.png"), "-k", "9",
               "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and len(rows[0]["top"]) == 4  # capped at the 4 classes
    probs = [t["p"] for t in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)


def _fails(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line(env, tmp_path, capsys):
    root, run = env.root, env.run
    out = str(tmp_path / "new")
    gan = tmp_path / "gan.pt"
    save_checkpoint(gan, kind="gan/dcgan", config={}, step=1, images_seen=0, models={},
                    optimizers={})
    cut = tmp_path / "cut.pt"
    blob = (run / "ckpt-000000006.pt").read_bytes()
    cut.write_bytes(blob[: len(blob) // 3])
    cases = [
        (["classify", "train", str(root / "empty"), "--run", out, *TINY],
         "no images in this folder"),
        (["classify", "train", str(root / "loose"), "--run", out, *TINY], "have no labels"),
        (["classify", "train", str(root / "unlabelled.npz"), "--run", out, *TINY], "no labels"),
        (["classify", "train", str(root / "missing"), "--run", out, *TINY],
         "no such file or folder"),
        (["classify", "train", str(root / "digits.npz"), *TINY], "give the run folder with --run"),
        (["classify", "train", str(root / "digits.npz"), "--run", str(run), *TINY],
         "already holds checkpoints"),
        (["classify", "train", str(root / "digits.npz"), "--run", out, "--val-split", "1.5"],
         "must be from 0 to below 1"),
        (["classify", "train", str(root / "digits.npz"), "--run", out, "--arch", "vgg"],
         "invalid choice: 'vgg'"),
        (["classify", "train", str(root / "digits.npz"), "--run", out, "--image-size", "4"],
         "image_size must be a whole number >= 8"),
        (["classify", "train", str(root / "digits.npz"), "--run", out, "--batch-size", "500"],
         "fewer than the batch size 500"),
        (["classify", "train", "--resume", str(gan)], "not a classifier's"),
        (["classify", "train", "--resume", str(tmp_path / "nothing")], "no such checkpoint"),
        (["classify", "eval", str(gan), str(root / "digits.npz")], "not a classifier's"),
        (["classify", "eval", str(cut), str(root / "digits.npz")], "truncated or corrupt"),
        (["classify", "eval", str(root / "empty"), str(root / "digits.npz")],
         "no checkpoint in this folder"),
        (["classify", "eval", str(run), str(root / "unlabelled.npz")], "no labels"),
        (["classify", "eval", str(run), str(root / "digits.npz"), "--plot", str(tmp_path / "a.gif")],
         "unsupported output format"),
        (["classify", "predict", str(run), str(root / "notes.txt")], "notes.txt"),
        (["classify", "predict", str(run), str(root / "empty")], "no images in this folder"),
        (["classify", "predict", str(run), str(root / "nope.png")], "no such file or folder"),
        (["classify", "predict", str(run), str(root / "loose"), "-k", "0"], "must be at least 1"),
    ]
    for argv, message in cases:
        _fails(capsys, argv, message)
    assert not Path(out).exists()
    assert not (tmp_path / "a.gif").exists()
