"""Evaluating and using classifiers: the numbers of a tiny known case, the text tables, the PNG
plot, top-k prediction, the input conversion, and loading checkpoints (or refusing them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.classify import (
    ClassifierNetConfig,
    EvalResult,
    build_classifier,
    confusion_matrix,
    evaluate,
    extract_features,
    format_confusion,
    format_report,
    load_classifier,
    load_images,
    plot_confusion,
    predict_logits,
    predict_topk,
    prepare_images,
)
from impasto.errors import InputError
from impasto.train import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# a known tiny case


def known_case() -> EvalResult:
    """5 images of 3 classes: true 0 0 1 1 2, predicted 0 1 1 1 0."""
    logits = torch.tensor([
        [2.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 3.0, 0.0],
        [0.0, 1.0, 0.5],
        [1.0, 0.0, 0.0],
    ])
    return EvalResult.from_logits(logits, torch.tensor([0, 0, 1, 1, 2]), ["cat", "dog", "owl"])


def test_metrics_of_a_known_case():
    r = known_case()
    assert r.n == 5
    assert r.accuracy == pytest.approx(3 / 5)
    np.testing.assert_array_equal(r.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_allclose(r.per_class, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(r.support, [2, 2, 1])
    expected = -np.mean([
        math.log(math.exp(2) / (math.exp(2) + 2)),
        math.log(1 / (math.e + 2)),
        math.log(math.exp(3) / (math.exp(3) + 2)),
        math.log(math.e / (math.e + 1 + math.exp(0.5))),
        math.log(1 / (math.e + 2)),
    ])
    assert r.loss == pytest.approx(expected, rel=1e-6)
    d = r.to_dict()
    assert d["per_class"]["cat"] == {"accuracy": 0.5, "n": 2}
    assert d["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_confusion_matrix_counts_and_checks():
    cm = confusion_matrix([0, 1, 2, 2, 2], [0, 2, 2, 2, 1], 4)
    assert cm.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    with pytest.raises(InputError, match="3 labels but 2 predictions"):
        confusion_matrix([0, 1, 2], [0, 1], 3)
    with pytest.raises(InputError, match=r"must lie in 0\.\.2"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_text_report():
    text = format_report(known_case())
    lines = text.splitlines()
    assert lines[0] == "accuracy 60.00% (3 of 5), mean loss " + f"{known_case().loss:.4f}"
    assert "cat        2    50.00%" in text
    assert "dog        2   100.00%" in text
    assert "owl        1     0.00%" in text
    assert format_confusion(np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]]),
                            ["cat", "dog", "owl"]).splitlines() == [
        "true\\pred cat dog owl",
        "cat         1   1   0",
        "dog         0   2   0",
        "owl         1   0   0",
    ]
    # a class without images shows "-", not a number
    r = EvalResult.from_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), ["a", "b"])
    assert math.isnan(r.per_class[1]) and r.to_dict()["per_class"]["b"]["accuracy"] is None
    assert format_report(r).splitlines()[4].split() == ["b", "0", "-"]


def test_plot_shades_cells_by_row_share(tmp_path):
    dark, light = (8, 48, 107), (247, 251, 255)
    third = tuple(int(round(lo + (hi - lo) / 3)) for lo, hi in zip(light, dark))
    names = ["a", "b", "c"]
    ident = plot_confusion(np.diag([50, 50, 50]), names, tmp_path / "ident.png")
    uniform = plot_confusion(np.full((3, 3), 7), names, tmp_path / "uniform.png", title="u")

    def count(path, colour) -> int:
        arr = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        return int((arr == np.array(colour)).all(axis=1).sum())

    w, h = Image.open(ident).size
    assert Image.open(ident).format == "PNG" and w > 150 and h > 150
    cell = count(ident, dark) / 3  # three dark diagonal cells (minus their white digits)
    assert cell > 30 * 30
    assert count(ident, third) == 0
    assert count(uniform, dark) == 0
    assert count(uniform, third) > 8 * cell  # nine cells of share 1/3
    with pytest.raises(InputError, match="unsupported output format"):
        plot_confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


# --------------------------------------------------------------------------------------------
# a model whose outputs are known: zero weights, the head's bias sets the logits


def bias_model(bias=(0.0, 2.0, 1.0, -1.0), names=("a", "b", "c", "d"), **kw) -> torch.nn.Module:
    cfg = ClassifierNetConfig("lenet", in_channels=1, image_size=8, num_classes=len(bias),
                              width=2, class_names=tuple(names), **kw)
    model = build_classifier(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.copy_(torch.tensor(bias))
    return model


def test_predict_topk_gives_names_and_probabilities():
    model = bias_model()
    p = torch.softmax(torch.tensor([0.0, 2.0, 1.0, -1.0]), 0).tolist()
    out = predict_topk(model, torch.rand(3, 3, 20, 30), k=2)  # any size and channels
    assert len(out) == 3
    for row in out:
        assert [c for c, _ in row] == ["b", "c"]
        assert [q for _, q in row] == pytest.approx([p[1], p[2]])
    assert len(predict_topk(model, torch.rand(1, 1, 8, 8), k=10)[0]) == 4  # capped
    with pytest.raises(InputError, match="k must be a whole number >= 1"):
        predict_topk(model, torch.rand(1, 1, 8, 8), k=0)


def test_predict_in_batches_equals_one_pass():
    torch.manual_seed(0)
    model = build_classifier(ClassifierNetConfig("lenet", image_size=8, width=2)).eval()
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(predict_logits(model, x, batch_size=3), model(x))
    torch.testing.assert_close(extract_features(model, x, batch_size=2), model.features(x))


def test_prepare_images_converts_channels_crops_and_resizes():
    grey_model = bias_model()
    rgb_model = build_classifier(ClassifierNetConfig("resnet", in_channels=3, image_size=8,
                                                     width=2, blocks=1))
    colour = torch.tensor([0.2, 0.6, 1.0]).reshape(1, 3, 1, 1).expand(2, 3, 16, 16)
    g = prepare_images(grey_model, colour)
    assert g.shape == (2, 1, 8, 8)
    torch.testing.assert_close(g, torch.full_like(g, 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0))
    grey = torch.rand(1, 1, 8, 8)
    rgb = prepare_images(rgb_model, grey)
    assert rgb.shape == (1, 3, 8, 8) and all(torch.equal(rgb[:, i], grey[:, 0]) for i in range(3))
    # a 8x24 image: only its centre square is kept (left and right thirds are dropped)
    wide = torch.zeros(1, 1, 8, 24)
    wide[..., 8:16] = 1.0
    torch.testing.assert_close(prepare_images(grey_model, wide), torch.ones(1, 1, 8, 8))
    # shrinking is antialiased: a 1-pixel checkerboard becomes flat grey
    board = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2
    small = prepare_images(grey_model, board.float()[None, None])
    assert float((small - 0.5).abs().max()) < 0.05
    with pytest.raises(InputError, match=r"expected images \(N, 1 or 3, H, W\)"):
        prepare_images(grey_model, torch.rand(2, 4, 8, 8))
    with pytest.raises(InputError, match="expected float images"):
        prepare_images(grey_model, torch.zeros(1, 1, 8, 8, dtype=torch.uint8))


def test_load_images_reads_files_like_the_training_data(tmp_path):
    from impasto.data import open_dataset

    rng = np.random.default_rng(0)
    (tmp_path / "data" / "x").mkdir(parents=True)
    arr = rng.integers(0, 256, (12, 20, 3), np.uint8)
    Image.fromarray(arr).save(tmp_path / "data" / "x" / "a.png")
    model = bias_model(bias=(0.0, 1.0), names=("x", "y"))
    x = load_images(model, [tmp_path / "data" / "x" / "a.png"])
    ds = open_dataset(tmp_path / "data", resolution=8, channels=1)
    torch.testing.assert_close(x[0], (ds[0][0] + 1) / 2)


def test_evaluate_matches_classes_by_name(tmp_path):
    """A model that always says "b", on a folder with only classes b (3 images) and d (1)."""
    for name, n in (("b", 3), ("d", 1)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "f" / name / f"{i}.png")
    model = bias_model()
    r = evaluate(model, tmp_path / "f")
    assert r.n == 4 and r.accuracy == pytest.approx(0.75)
    assert r.confusion[1, 1] == 3 and r.confusion[3, 1] == 1 and r.confusion.sum() == 4
    assert math.isnan(r.per_class[0]) and r.per_class[3] == 0.0
    (tmp_path / "f" / "z").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "f" / "z" / "0.png")
    with pytest.raises(InputError, match="class.*'z' unknown to the model"):
        evaluate(model, tmp_path / "f")
    np.savez(tmp_path / "unlabelled.npz", images=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(InputError, match="no labels"):
        evaluate(model, tmp_path / "unlabelled.npz")
    # tensors with labels
    r2 = evaluate(model, torch.rand(4, 1, 8, 8), labels=[1, 1, 0, 2])
    assert r2.accuracy == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# loading


def save_model(path, model, *, kind=None, step=1, net=None):
    return save_checkpoint(
        path, kind=kind or f"classifier/{model.config.arch}", config={}, step=step,
        images_seen=0, models={"model": model}, optimizers={},
        extra={"net": net if net is not None else model.config.to_dict()},
    )


def test_load_classifier_from_file_and_run_folder(tmp_path):
    a, b = bias_model(bias=(1.0, 0.0, 0.0, 0.0)), bias_model(bias=(0.0, 0.0, 0.0, 1.0))
    run = tmp_path / "run"
    save_model(run / "best.pt", a)
    save_model(run / "ckpt-000000005.pt", b, step=5)
    x = torch.rand(2, 1, 8, 8)
    best = load_classifier(run)
    latest = load_classifier(run, which="latest")
    assert best.source.endswith("best.pt") and latest.source.endswith("ckpt-000000005.pt")
    assert predict_logits(best, x).argmax(1).tolist() == [0, 0]
    assert predict_logits(latest, x).argmax(1).tolist() == [3, 3]
    assert not best.training and not any(p.requires_grad for p in best.parameters())
    assert (best.in_channels, best.image_size, best.num_classes) == (1, 8, 4)
    assert best.class_names == ["a", "b", "c", "d"]
    (run / "best.pt").unlink()
    assert load_classifier(run).source.endswith("ckpt-000000005.pt")  # no best.pt: the latest


def test_load_classifier_refuses_bad_files(tmp_path):
    model = bias_model()
    good = save_model(tmp_path / "good.pt", model)
    save_checkpoint(tmp_path / "gan.pt", kind="gan/dcgan", config={}, step=1, images_seen=0,
                    models={}, optimizers={})
    save_model(tmp_path / "mixed.pt", model, kind="classifier/resnet")
    other = build_classifier(ClassifierNetConfig("lenet", image_size=8, width=3, num_classes=4))
    save_model(tmp_path / "misfit.pt", other, net=model.config.to_dict())
    blob = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "empty").mkdir()
    cases = [
        ("missing.pt", "missing.pt: no such checkpoint file or run folder"),
        ("gan.pt", "is a 'gan/dcgan' checkpoint, not a classifier's"),
        ("mixed.pt", "'classifier/resnet' checkpoint holding a lenet network"),
        ("misfit.pt", "does not fit the checkpoint"),
        ("cut.pt", "cut.pt: truncated or corrupt"),
        ("text.pt", "not a checkpoint file"),
        ("empty", "no checkpoint in this folder"),
    ]
    for name, message in cases:
        with pytest.raises(InputError, match=message) as exc:
            load_classifier(tmp_path / name)
        assert "\n" not in str(exc.value)
