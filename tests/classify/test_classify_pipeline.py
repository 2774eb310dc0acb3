"""The classifier as a pipeline: ``Classifier.from_file`` reads run folders, checkpoints (old
and new kinds) and model files alike and gives the same numbers from each; ``__call__`` takes
tensors, PIL images and file names and returns labels or probabilities; ``export_model`` and
``ClassifierTrainConfig.output`` write model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import impasto
from impasto.classify import (
    Classifier,
    ClassifierNetConfig,
    ClassifierTrainConfig,
    build_classifier,
    export_model,
    load_classifier,
    train,
)
from impasto.errors import InputError
from impasto.train import load_model, save_checkpoint, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy" / "classifier_run"


def bias_model(bias=(0.0, 2.0, 1.0, -1.0)) -> torch.nn.Module:
    """A LeNet that ignores its input: the logits are ``bias``, so class "b" always wins."""
    cfg = ClassifierNetConfig("lenet", in_channels=1, image_size=8, num_classes=len(bias),
                              width=2, class_names=("a", "b", "c", "d"))
    model = build_classifier(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.copy_(torch.tensor(bias))
    return model


def test_call_takes_tensors_images_and_files_and_returns_labels_or_probabilities(tmp_path):
    clf = Classifier(bias_model())
    want = torch.softmax(torch.tensor([0.0, 2.0, 1.0, -1.0]), 0)
    x = torch.rand(3, 3, 20, 30, generator=torch.Generator().manual_seed(0))  # any size, RGB
    assert clf(x) == ["b", "b", "b"]
    probs = clf(x, output="tensor")
    assert probs.shape == (3, 4) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, want.expand(3, 4))
    assert clf(x[0]) == "b"  # one image in, one label out
    torch.testing.assert_close(clf(x[0], output="tensor"), want)
    assert torch.equal(clf(x, seed=5, output="tensor"), probs)  # no randomness to seed
    img = Image.fromarray(np.full((12, 12, 3), 90, np.uint8))
    img.save(tmp_path / "a.png")
    assert clf(img) == clf(tmp_path / "a.png") == clf(str(tmp_path / "a.png")) == "b"
    assert clf([img, tmp_path / "a.png"]) == ["b", "b"]
    for bad, message in [
        ((x, None, "pil"), "output must be one of labels, tensor, not 'pil'"),
        ((x, 1.5), "seed must be a whole number or None"),
        (([],), "no images given"),
        ((42,), "expected images as a tensor, a PIL image, a file name or a list"),
        ((torch.zeros(2, 1, 8, 8, dtype=torch.uint8),), "expected float images"),
        ((tmp_path / "missing.png",), "missing.png"),
    ]:
        with pytest.raises(InputError, match=message):
            clf(*bad)
    assert impasto.Classifier is Classifier


def test_a_run_its_model_file_and_an_exported_file_classify_alike(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 2  # dark or bright 8x8 squares
    images = (rng.integers(0, 60, (48, 8, 8)) + 150 * labels[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "two.npz", images=images, labels=labels)
    run, out = tmp_path / "run", tmp_path / "model.pt"
    result = train(ClassifierTrainConfig(
        data=str(tmp_path / "two.npz"), run=str(run), output=str(out), image_size=8, width=4,
        batch_size=8, steps=8, eval_every=4, val_split=0.25, precision="fp32", device="cpu",
        tensorboard=False, log_every=0))
    assert result.output == out and result.best_checkpoint == run / "best.pt"
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    from_run = Classifier.from_file(run)
    assert from_run.source == str(run / "best.pt") and from_run.device.type == "cpu"
    with torch.no_grad():
        want = load_classifier(run)(x).softmax(1)
    torch.testing.assert_close(from_run(x, output="tensor"), want, rtol=0, atol=0)
    file = load_model(out)
    assert file.kind == "classify/lenet" and file.legacy is None
    assert file.extra["classes"] == ["0", "1"]
    assert file.extra["val"] == torch.load(run / "best.pt", weights_only=True)["extra"]["val"]
    for path in (out, export_model(run, tmp_path / "m.safetensors")):
        clf = Classifier.from_file(path, device="cpu")
        torch.testing.assert_close(clf(x, output="tensor"), want, rtol=0, atol=0)
        assert clf(x) == [["0", "1"][k] for k in want.argmax(1).tolist()]
    latest = export_model(run, tmp_path / "latest.pt", which="latest")
    assert load_model(latest).extra["step"] == 8


def test_old_checkpoint_exports_to_a_model_file_with_the_same_logits(tmp_path):
    old = LEGACY / "ckpt-000000003.pt"
    out = export_model(old, tmp_path / "old.pt")
    file = load_model(out)
    assert file.kind == "classify/lenet" and file.legacy is None and file.extra["step"] == 3
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        want = load_classifier(old)(x)
        got = load_classifier(out)(x)
    assert torch.equal(got, want)
    torch.testing.assert_close(Classifier.from_file(out)(x, output="tensor"), want.softmax(1))


def test_files_without_a_classifier_are_refused_in_one_line(tmp_path):
    save_checkpoint(tmp_path / "gan.pt", kind="gan/dcgan", config={}, step=1, images_seen=0,
                    models={}, optimizers={})
    save_model(tmp_path / "g.pt", kind="gan/dcgan", config={}, state_dict={})
    for name, message in [
        ("gan.pt", "is a 'gan/dcgan' checkpoint, not a classifier's"),
        ("g.pt", "is a 'gan/dcgan' model file, not a classifier's"),
        ("none.pt", "no such checkpoint file or run folder"),
    ]:
        with pytest.raises(InputError, match=message) as err:
            Classifier.from_file(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="gan.pt: cannot create the folder"):
        export_model(LEGACY, tmp_path / "gan.pt" / "x.pt")


def test_output_setting_is_checked_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="the run folder and the model file are the same path"):
        ClassifierTrainConfig(data="d.npz", run=str(tmp_path / "r"), output=str(tmp_path / "r"))
    with pytest.raises(InputError, match="output must be a model file name"):
        ClassifierTrainConfig(data="d.npz", output="")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="is a folder; give a file name for the model file"):
        train(ClassifierTrainConfig(data=str(tmp_path / "d.npz"), run=str(tmp_path / "r"),
                                    output=str(tmp_path / "folder"), device="cpu"))
    assert not (tmp_path / "r").exists()
