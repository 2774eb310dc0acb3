"""Classifier training: it learns scikit-learn's digits to a high held-out accuracy in seconds,
resumes exactly, keeps the checkpoints it should, and refuses bad data and checkpoints.

The digits are 8x8 grey images (values 0..16, scaled to 0..255): 1,400 for training (10% of
each class held out for validation) and the last 397 as a test set the training never sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same, assert_same_checkpoints
from impasto.classify import (
    ClassifierTrainConfig,
    augment_batch,
    evaluate,
    load_classifier,
    lr_factor,
    train,
)
from impasto.classify.training import stratified_split
from impasto.errors import InputError
from impasto.train import derive_seed, load_checkpoint, read_stats, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * 255.0 / 16.0).round().astype(np.uint8), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digits")
    images, labels = digits()
    paths = {"train": root / "train.npz", "test": root / "test.npz", "small": root / "small.npz"}
    np.savez(paths["train"], images=images[:1400], labels=labels[:1400])
    np.savez(paths["test"], images=images[1400:], labels=labels[1400:])
    keep = labels[:200] < 4  # a small 4-class set for the resume test
    np.savez(paths["small"], images=images[:200][keep][:60], labels=labels[:200][keep][:60])
    return paths


def tiny(data: Path, run: Path, **kw) -> ClassifierTrainConfig:
    opts = dict(data=str(data), run=str(run), image_size=8, width=8, batch_size=64,
                precision="fp32", device="cpu", tensorboard=False, log_every=5)
    opts.update(kw)
    return ClassifierTrainConfig(**opts)


# --------------------------------------------------------------------------------------------
# learning


@pytest.fixture(scope="module")
def digits_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "lenet"
    seen = []
    result = train(tiny(data["train"], run, epochs=10, keep_last=2, tensorboard=True),
                   progress=seen.append)
    return run, result, seen


def test_lenet_learns_digits_to_high_held_out_accuracy(data, digits_run):
    run, result, _ = digits_run
    assert result.step == result.total_steps == 10 * (1260 // 64)  # 1,260 images after the split
    assert not result.aborted
    # the held-out test set, never used in training or model selection
    model = load_classifier(run)
    test = evaluate(model, str(data["test"]))
    assert test.n == 397
    assert test.accuracy >= 0.9, test.accuracy
    assert result.best_val_acc >= 0.9
    assert np.nanmin(test.per_class) >= 0.6  # every digit is learned, not just most


def test_run_folder_holds_config_logs_and_checkpoints(digits_run):
    run, result, seen = digits_run
    names = sorted(p.name for p in run.iterdir())
    ckpts = [n for n in names if n.startswith("ckpt-")]
    per_epoch = result.total_steps // 10
    assert ckpts == [f"ckpt-{9 * per_epoch:09d}.pt", f"ckpt-{10 * per_epoch:09d}.pt"]  # keep 2
    assert {"best.pt", "best.json", "latest.json", "config.json", "stats.jsonl"} <= set(names)
    assert any(n.startswith("events.out.tfevents") for n in names)
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "lenet" and config["crop_pad"] == 1 and config["hflip"] is False
    assert config["lr"] == 0.1 and config["warmup"] == 0.25 and config["epochs"] == 10
    rows = read_stats(run)
    vals = [r for r in rows if "val_acc" in r]
    assert [r["step"] for r in vals] == [k * per_epoch for k in range(1, 11)]  # every epoch
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == max(r["val_acc"] for r in vals) == result.best_val_acc
    best_ckpt = load_checkpoint(run / "best.pt", kind="classify/lenet")
    assert best_ckpt["step"] == best["step"]
    assert best_ckpt["extra"]["val"]["val_acc"] == best["value"]
    # the learning rate followed the one-cycle schedule
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert lrs[5] == pytest.approx(0.1 * lr_factor("onecycle", 4, result.total_steps, 0.25))
    assert lrs[result.total_steps] < 0.1 * 1e-2
    # the progress callback saw every step, and the evaluations
    assert [p.step for p in seen] == list(range(result.total_steps + 1))
    assert sum(p.val is not None for p in seen) == 10


def test_network_normalises_with_the_training_images_statistics(data, digits_run):
    run, result, _ = digits_run
    images, labels = digits()
    train_idx, val_idx = stratified_split(labels[:1400], 0.1, _split_seed(0))
    assert len(val_idx) == 140 and len(set(train_idx) & set(val_idx)) == 0
    x = images[:1400][train_idx].astype(np.float64) / 255.0
    model = load_classifier(run)
    assert float(model.mean.flatten()[0]) == pytest.approx(x.mean(), abs=1e-5)
    assert float(model.std.flatten()[0]) == pytest.approx(x.std(), abs=1e-5)
    assert model.class_names == [str(i) for i in range(10)]


def _split_seed(seed: int) -> int:
    from impasto.classify.training import _STREAM_SPLIT

    return derive_seed(seed, _STREAM_SPLIT)


def test_stratified_split_holds_out_a_share_of_every_class():
    labels = np.repeat(np.arange(3), [10, 20, 3])
    tr, va = stratified_split(labels, 0.2, seed=5)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(33))
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 4, 1]
    tr2, va2 = stratified_split(labels, 0.2, seed=5)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(labels, 0.2, seed=6)[1])
    assert stratified_split(labels, 0.0, seed=5)[1].size == 0


# --------------------------------------------------------------------------------------------
# the pieces of a step


def test_lr_schedules():
    total = 100
    assert lr_factor("onecycle", 0, total, 0.25) == pytest.approx(1 / 25)
    assert lr_factor("onecycle", 25, total, 0.25) == pytest.approx(1.0)
    assert lr_factor("onecycle", 100, total, 0.25) == pytest.approx(1e-4)
    assert lr_factor("onecycle", 62, total, 0.25) == pytest.approx(
        1e-4 + (1 - 1e-4) * 0.5 * (1 + np.cos(np.pi * 0.37 / 0.75)))
    assert lr_factor("cosine", 0, total, 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 50, total, 0.0) == pytest.approx(0.5)
    assert lr_factor("cosine", 4, total, 0.1) == pytest.approx(0.5)  # warm-up (4+1)/10
    assert lr_factor("constant", 70, total, 0.1) == 1.0


def test_augment_shifts_within_the_padding_and_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g) + 0.5  # no zeros, so padding is recognisable
    assert torch.equal(augment_batch(x, 0, False, g), x)
    out = augment_batch(x, 2, False, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(64):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])]
        assert len(hits) == 1
        shifts.add(hits[0])
    assert len(shifts) > 15  # many of the 25 offsets are used
    flipped = augment_batch(x, 0, True, torch.Generator().manual_seed(2))
    is_flip = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(64)]
    assert all(f or torch.equal(flipped[i], x[i]) for i, f in enumerate(is_flip))
    assert 20 <= sum(is_flip) <= 44


# --------------------------------------------------------------------------------------------
# resume


def test_interrupted_and_resumed_run_equals_a_straight_run(data, tmp_path):
    """60 images of 4 classes, 20% held out: 48 to train, 6 batches of 8 per epoch. The run is
    stopped by ``abort`` after step 4 (mid-epoch), resumed, and must end bit-identical to a
    straight run: weights, BN statistics, SGD momentum, every RNG, the data position."""
    opts = dict(batch_size=8, steps=14, deterministic=True, eval_every=3, dropout=0.3,
                hflip=True, crop_pad=1, val_split=0.2, seed=7, width=4)
    straight = train(tiny(data["small"], tmp_path / "a", **opts))
    calls = []

    def abort() -> bool:
        calls.append(1)
        return len(calls) == 4

    first = train(tiny(data["small"], tmp_path / "b", **opts), abort=abort)
    assert first.aborted and first.step == 4
    assert load_checkpoint(first.checkpoint)["extra"]["pos"] == 32  # mid-epoch
    resumed = train(tiny(data["small"], tmp_path / "b", **opts), resume=tmp_path / "b")
    assert resumed.step == straight.step == 14
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    assert a["step"] == b["step"] == 14
    assert_same_checkpoints(a, b, ("models", "optimizers", "rng", "images_seen"))
    for key in ("epoch", "pos", "net", "val"):
        assert_same(a["extra"][key], b["extra"][key], key)
    # the stats log has each step once, in order (the interrupted tail was replaced)
    steps = [r["step"] for r in read_stats(tmp_path / "b") if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 14


def test_resume_refuses_other_settings_and_other_checkpoints(data, tmp_path):
    run = tmp_path / "run"
    train(tiny(data["small"], run, batch_size=8, steps=2, width=4))
    with pytest.raises(InputError, match="already holds checkpoints; continue it with --resume"):
        train(tiny(data["small"], run, batch_size=8, steps=2, width=4))
    with pytest.raises(InputError, match="trained with width 4, not 8"):
        train(tiny(data["small"], run, batch_size=8, steps=4, width=8), resume=run)
    with pytest.raises(InputError, match="trained on the classes 0, 1, 2, 3, not 0, 1, 2, 3, 4"):
        train(tiny(data["train"], run, batch_size=8, steps=4, width=4), resume=run)
    with pytest.raises(InputError, match="a .classify/lenet. checkpoint, not .classify/resnet."):
        train(tiny(data["small"], run, arch="resnet", steps=4), resume=run)
    gan = tmp_path / "gan.pt"
    save_checkpoint(gan, kind="gan/dcgan", config={}, step=1, images_seen=1, models={},
                    optimizers={})
    with pytest.raises(InputError, match="gan/dcgan"):
        train(tiny(data["small"], tmp_path / "other", batch_size=8, steps=4), resume=gan)
    cut = tmp_path / "cut.pt"
    blob = (run / "ckpt-000000002.pt").read_bytes()
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="cut.pt"):
        train(tiny(data["small"], tmp_path / "other", batch_size=8, steps=4), resume=cut)
    assert not (tmp_path / "other").exists()


def test_bad_data_is_refused_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 8, 8), np.uint8)
    np.savez(tmp_path / "unlabelled.npz", images=imgs)
    np.savez(tmp_path / "one.npz", images=imgs, labels=np.zeros(20, np.int64))
    np.savez(tmp_path / "few.npz", images=imgs, labels=np.arange(20) % 2)
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    cases = [
        ("unlabelled.npz", {}, "no labels; a classifier needs labelled data"),
        ("one.npz", {}, "only one class"),
        ("few.npz", {"batch_size": 64}, "fewer than the batch size 64"),
        ("empty", {}, "no images in this folder"),
        ("missing.npz", {}, "no such file"),
    ]
    for name, kw, message in cases:
        with pytest.raises(InputError, match=message):
            train(tiny(tmp_path / name, run, **kw))
    assert not run.exists()
    for kw, message in [
        ({"val_split": 1.0}, "val_split must be a number >= 0 and below 1"),
        ({"arch": "vgg"}, "unknown classifier architecture 'vgg'"),
        ({"image_size": 4}, "image_size must be a whole number >= 8"),
        ({"epochs": 2, "steps": 3}, "epochs or as steps, not both"),
        ({"schedule": "step"}, "unknown schedule 'step'"),
        ({"val_labels": "x.npy"}, "val_labels needs val_data"),
    ]:
        with pytest.raises(InputError, match=message):
            tiny(tmp_path / "few.npz", run, **kw)


def test_validation_set_given_separately(data, tmp_path):
    images, labels = digits()
    sel = np.isin(labels[1400:], [1, 3])
    np.savez(tmp_path / "val.npz", images=images[1400:][sel], labels=labels[1400:][sel])
    r = train(tiny(data["small"], tmp_path / "r", batch_size=8, steps=3, width=4,
                   val_data=str(tmp_path / "val.npz"), channels_last=False))
    # the reported validation accuracy is the final model's accuracy on that set
    final = load_classifier(tmp_path / "r", which="latest")
    check = evaluate(final, str(tmp_path / "val.npz"))
    assert check.n == int(sel.sum())
    assert r.val["val_acc"] == pytest.approx(check.accuracy)
    assert r.val["val_loss"] == pytest.approx(check.loss, rel=1e-5)
    # class names are matched: a "7" is unknown to a model trained on 0..3
    sel = np.isin(labels[1400:], [3, 7])
    np.savez(tmp_path / "val7.npz", images=images[1400:][sel], labels=labels[1400:][sel])
    with pytest.raises(InputError, match="class.*'7'.* unknown to the model"):
        train(tiny(data["small"], tmp_path / "r7", batch_size=8, steps=2, width=4,
                   val_data=str(tmp_path / "val7.npz")))
    assert not (tmp_path / "r7").exists()


def test_resnet_learns_colour_with_flips_and_adamw(tmp_path):
    """Two classes told apart by colour only (reddish or bluish noise, 16x16): a tiny ResNet
    with its defaults for colour (random flips) and AdamW separates them within 30 steps."""
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 2
    images = rng.integers(0, 150, (96, 16, 16, 3)).astype(np.uint8)
    images[labels == 0, ..., 0] += 100
    images[labels == 1, ..., 2] += 100
    np.savez(tmp_path / "colour.npz", images=images, labels=labels)
    r = train(ClassifierTrainConfig(
        data=str(tmp_path / "colour.npz"), run=str(tmp_path / "run"), arch="resnet",
        image_size=16, width=4, blocks=1, batch_size=16, steps=30, optimizer="adamw",
        val_split=0.25, eval_every=0, precision="fp32", device="cpu", tensorboard=False,
        log_every=0))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["hflip"] is True and config["channels"] == 3 and config["crop_pad"] == 2
    assert config["lr"] == 2e-3 and config["weight_decay"] == 0.05
    assert r.val["val_acc"] >= 0.95
    model = load_classifier(tmp_path / "run")
    assert (model.in_channels, model.image_size, model.feature_dim) == (3, 16, 16)


def test_thin_strided_shortcuts_train_in_nchw_on_a_cpu(caplog):
    # PyTorch 2.14's oneDNN corrupts the heap in the NHWC backward pass of a 1x1 stride-2
    # convolution on fewer than 8 channels on AVX2 CPUs (a width-4 ResNet's shortcut)
    from impasto.device import nhwc_trainable
    from impasto.nets.classifier import build_classifier

    def resnet(width):
        return build_classifier({"arch": "resnet", "image_size": 16, "width": width,
                                 "blocks": 1, "num_classes": 2, "in_channels": 3})

    cpu = torch.device("cpu")
    with caplog.at_level("INFO", logger="impasto.device"):
        assert not nhwc_trainable(cpu, resnet(4))
    assert "1x1 convolution of stride (2, 2) on 4 channels" in caplog.text
    assert nhwc_trainable(cpu, resnet(8))
    assert nhwc_trainable(cpu, torch.nn.Conv2d(4, 8, 3, 2), torch.nn.Conv2d(4, 8, 1, 1))
    assert not nhwc_trainable(cpu, torch.nn.Conv2d(8, 8, 3), torch.nn.Conv2d(7, 8, 1, 2))
    assert nhwc_trainable(torch.device("cuda"), resnet(4))
