"""``impasto adain train --resume RUN`` is a real resume: the run's saved settings are kept
(content, styles and the decoder file too), only the options given change them, each change
listed in one line, and the run continues bit-exactly. Training runs for real on a tiny seeded
encoder (VGG19Features replaced in the training module), a few 32 px steps on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_vgg
from impasto.cli import main
from impasto.cli._run import changed_settings
from impasto.style.adain import AdaINTrainConfig, load_decoder
from impasto.train import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_encoder(monkeypatch):
    import impasto.style.adain.training as training

    monkeypatch.setattr(training, "VGG19Features", lambda layers, **kw: tiny_vgg(layers))


def folders(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    c, s = root / "content", root / "styles"
    c.mkdir()
    s.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(c / f"{i}.png")
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (44, 40, 3), dtype=np.uint8)).save(s / f"s{i}.png")
    return c, s


def run(capsys, *argv) -> tuple[int, list[str]]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


SETTINGS = ["--batch-size", "2", "--image-size", "32", "--load-size", "40", "--ckpt-every", "3",
            "--lr", "0.001", "--device", "cpu", "--precision", "fp32", "--deterministic",
            "--no-tensorboard", "-q"]


def test_resume_keeps_the_runs_settings_and_continues_exactly(tmp_path, capsys, tiny_encoder):
    c, s = folders(tmp_path)
    out = tmp_path / "dec.pt"
    rc, err = run(capsys, "adain", "train", "--content", c, "--styles", s, "-o", out,
                  "--steps", "4", *SETTINGS)
    assert (rc, err) == (0, [])
    saved = json.loads((tmp_path / "dec.run" / "config.json").read_text())
    assert load_decoder(out)[1]["step"] == 4

    # no --content, --styles, -o or settings: only the new length
    rc, err = run(capsys, "adain", "train", "--resume", tmp_path / "dec.run", "--steps", "6",
                  "-q")
    assert rc == 0, err
    assert len(err) == 1 and err[0].endswith("with changed settings: steps 4 -> 6"), err
    assert "ckpt-000000004.pt (step 4)" in err[0]
    config = json.loads((tmp_path / "dec.run" / "config.json").read_text())
    assert config == {**saved, "steps": 6}
    assert (config["batch_size"], config["image_size"], config["load_size"],
            config["ckpt_every"], config["keep_last"]) == (2, 32, 40, 3, 2)
    assert (config["content"], config["styles"], config["output"]) == (str(c), str(s), str(out))
    decoder, meta = load_decoder(out)  # the run's decoder file, written again at its end
    assert meta["step"] == 6 and meta["training"]["batch_size"] == 2

    # the same as six steps straight, bit for bit
    straight = tmp_path / "straight.pt"
    rc, err = run(capsys, "adain", "train", "--content", c, "--styles", s, "-o", straight,
                  "--steps", "6", *SETTINGS)
    assert (rc, err) == (0, [])
    for name, value in load_decoder(straight)[0].state_dict().items():
        assert torch.equal(value, decoder.state_dict()[name]), name
    a = load_checkpoint(tmp_path / "dec.run" / "ckpt-000000006.pt")
    b = load_checkpoint(tmp_path / "straight.run" / "ckpt-000000006.pt")
    assert a["images_seen"] == b["images_seen"] == 12
    for x, y in zip(a["optimizers"]["decoder"]["state"].values(),
                    b["optimizers"]["decoder"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert a["extra"]["content"] == b["extra"]["content"]
    assert a["extra"]["style"] == b["extra"]["style"]

    # an option given on resume overrides the saved one, and is listed with the rest
    rc, err = run(capsys, "adain", "train", "--resume", tmp_path / "dec.run", "--steps", "7",
                  "--log-every", "1", "-q")
    assert rc == 0 and err[0].endswith("changed settings: log_every 50 -> 1, steps 6 -> 7")
    assert json.loads((tmp_path / "dec.run" / "config.json").read_text())["log_every"] == 1


def test_adain_train_refusals(tmp_path, capsys):
    rc, err = run(capsys, "adain", "train", "--content", tmp_path, "--steps", "2")
    assert (rc, err) == (2, ["impasto: error: adain train: give --styles, -o/--output (or "
                             "--resume RUN)"])
    rc, err = run(capsys, "adain", "train", "--resume", tmp_path, "-o", tmp_path / "dec")
    assert rc == 2 and len(err) == 1 and "give the decoder file a name" in err[0]
    gan = save_checkpoint(tmp_path / "gan.pt", kind="gan/dcgan", config={}, step=0,
                          images_seen=0, models={}, optimizers={})
    rc, err = run(capsys, "adain", "train", "--resume", gan)
    assert rc == 2 and err == [f"impasto: error: {gan} is a 'gan/dcgan' file, not an AdaIN "
                               "training checkpoint"]
    assert not (tmp_path / "gan.run").exists()


def test_changed_settings_lists_what_differs_in_field_order():
    saved = {"content": "c", "styles": "s", "run": "old", "steps": 4, "lr": 0.001,
             "style_layers": ["relu1_1", "relu4_1"], "vgg_weights": None}
    config = AdaINTrainConfig(content="c", styles="s", run="moved", steps=4, lr=0.0005,
                              style_layers=("relu1_1", "relu4_1"), vgg_weights="w.pth")
    assert changed_settings(saved, config) == "lr 0.001 -> 0.0005, vgg_weights none -> w.pth"
    assert changed_settings({**saved, "lr": 0.0005, "vgg_weights": "w.pth"}, config) == ""
