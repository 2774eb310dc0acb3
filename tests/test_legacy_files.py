"""Files written by the release before issue #12 keep loading (and resuming) with today's code.

The fixtures in ``tests/fixtures/legacy/`` were written once by ``make_fixtures.py`` with the
code of commit f694481: a per-style model file, an AdaIN decoder file, and half-way training
checkpoints (with their run's ``config.json``) of a DCGAN, a PGGAN (mid-fade), a classifier,
a fast-style and an AdaIN run. ``expected.json`` holds what the old loaders computed from them
on seeded inputs, and what the end of each straight run computed. Here the current public
loaders must give the same numbers, and resuming each half-way checkpoint with its run's
settings must reach the straight run's end. Tiny networks, fp32 on the CPU, one thread.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.nets import VGG19Features

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
TINY_WIDTHS = (4, 8, 8, 8, 8)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vgg(layers) -> VGG19Features:
    """The seeded random VGG19 the fixtures were trained with (as make_fixtures.py builds it)."""
    torch.manual_seed(0)
    net = VGG19Features(layers, weights=None, widths=TINY_WIDTHS)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    return net


def encoder() -> VGG19Features:
    return tiny_vgg(("relu1_1", "relu2_1", "relu3_1", "relu4_1"))


def content_input() -> torch.Tensor:
    return torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(7))


def assert_matches(t: torch.Tensor, want: dict, what: str) -> None:
    """``t`` has the summary ``want`` (make_fixtures.py's ``summary``): 8 sampled values to
    2e-6, mean, std and sum of absolute values to a relative 1e-5."""
    t = t.detach().double()
    flat = t.flatten()
    picks = flat[torch.linspace(0, flat.numel() - 1, 8).round().long()]
    np.testing.assert_allclose(picks.numpy(), want["values"], rtol=0, atol=2e-6, err_msg=what)
    got = [float(t.mean()), float(t.std()), float(t.abs().sum())]
    np.testing.assert_allclose(got, [want["mean"], want["std"], want["abs_sum"]], rtol=1e-5,
                               atol=1e-9, err_msg=what)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with np.load(LEGACY / "data.npz") as f:
        return {k: f[k] for k in f.files}


def folder(root: Path, images: np.ndarray) -> str:
    root.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(root / f"{i}.png")
    return str(root)


def run_copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(LEGACY / name, dst)
    return dst


# --------------------------------------------------------------------------------------------
# model files and checkpoints load, and compute what they computed


def test_old_fast_style_model_file_stylises_as_before():
    from impasto.style.fast import FastStyle

    model = FastStyle.load(LEGACY / "fast_style.pt", device="cpu")
    assert_matches(model(content_input(), precision="fp32"), EXPECTED["fast_style"]["output"],
                   "fast-style output")
    assert model.style_name == EXPECTED["fast_style"]["style_name"] == "style.png"
    assert model.thumbnail is not None and model.thumbnail.dtype == torch.uint8
    assert tuple(model.thumbnail.shape) == (3, 40, 40)


def test_old_adain_decoder_file_stylises_as_before():
    from impasto.style.adain import AdaIN

    ada = AdaIN.load(LEGACY / "adain_decoder.pt", encoder=encoder(), device="cpu",
                     precision="fp32")
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    assert_matches(ada(content_input(), style, alpha=0.8), EXPECTED["adain"]["output"],
                   "AdaIN output")


def test_old_gan_checkpoint_samples_as_before():
    from impasto.gan import GanGenerator

    want = EXPECTED["gan_dcgan"]
    run = LEGACY / "gan_dcgan_run"
    for source in (run, run / "ckpt-000000003.pt"):
        gen = GanGenerator.load(source)
        assert (gen.z_dim, gen.resolution, gen.channels, gen.num_classes) == (8, 32, 3, 0)
        assert_matches(gen(4, seed=1), want["ckpt3_ema"], f"G_ema of {source}")
    assert_matches(GanGenerator.load(run, ema=False)(4, seed=1), want["ckpt3_raw"], "G")


def test_old_pggan_checkpoint_samples_as_before():
    from impasto.gan import GanGenerator

    want = EXPECTED["pggan"]
    gen = GanGenerator.load(LEGACY / "pggan_run")
    assert gen.resolution == want["ckpt6_resolution"] == 8
    assert_matches(gen(4, seed=2), want["ckpt6_ema"], "PGGAN mid-fade at 8 px")
    low = GanGenerator.load(LEGACY / "pggan_run", resolution=4)
    assert_matches(low(4, seed=2), want["ckpt6_ema_at4"], "PGGAN at 4 px")


def test_old_classifier_checkpoint_classifies_as_before():
    from impasto.classify import load_classifier

    model = load_classifier(LEGACY / "classifier_run" / "ckpt-000000003.pt")
    assert (model.num_classes, model.image_size, model.in_channels) == (4, 8, 1)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_matches(model(x), EXPECTED["classifier"]["ckpt3_logits"], "classifier logits")


# --------------------------------------------------------------------------------------------
# half-way checkpoints resume to the straight run's end


def _config(cls, run: Path, **paths):
    from impasto.train import load_config

    return dataclasses.replace(load_config(cls, run / "config.json"), run=str(run), **paths)


def test_old_fast_style_checkpoint_resumes_to_the_old_end(data, tmp_path):
    from impasto.style.fast import FastStyle, FastStyleConfig, train_fast_style

    run = run_copy("fast_style_run", tmp_path)
    style = tmp_path / "style.png"
    Image.fromarray(data["styles"][0]).save(style)
    cfg = _config(FastStyleConfig, run, content=folder(tmp_path / "photos", data["photos"]),
                  style=str(style), output=str(tmp_path / "fast.pt"))
    result = train_fast_style(cfg, resume=run, vgg=tiny_vgg(("relu1_2", "relu2_2")))
    assert result.step == 6 and not result.aborted
    model = FastStyle.load(result.output, device="cpu")
    assert_matches(model(content_input(), precision="fp32"), EXPECTED["fast_style"]["output"],
                   "resumed fast-style output")


def test_old_adain_checkpoint_resumes_to_the_old_end(data, tmp_path):
    from impasto.style.adain import AdaIN, AdaINTrainConfig, train

    run = run_copy("adain_run", tmp_path)
    cfg = _config(AdaINTrainConfig, run, content=folder(tmp_path / "c", data["photos"]),
                  styles=folder(tmp_path / "s", data["styles"]))
    result = train(cfg, resume=run, encoder=encoder())
    assert result.step == EXPECTED["adain"]["step"] == 6
    ada = AdaIN.load(result.output, encoder=encoder(), device="cpu", precision="fp32")
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    assert_matches(ada(content_input(), style, alpha=0.8), EXPECTED["adain"]["output"],
                   "resumed AdaIN output")


def test_old_gan_checkpoint_resumes_to_the_old_end(data, tmp_path):
    from impasto.gan import GanGenerator, GanTrainConfig, train

    run = run_copy("gan_dcgan_run", tmp_path)
    np.savez(tmp_path / "gan.npz", images=data["gan"])
    result = train(_config(GanTrainConfig, run, data=str(tmp_path / "gan.npz")), resume=run)
    assert result.step == 6
    assert_matches(GanGenerator.load(run)(4, seed=1), EXPECTED["gan_dcgan"]["step6_ema"],
                   "resumed G_ema")


def test_old_pggan_checkpoint_resumes_to_the_old_end(data, tmp_path):
    from impasto.gan import GanGenerator
    from impasto.gan.progressive import PgganTrainConfig, train

    run = run_copy("pggan_run", tmp_path)
    np.savez(tmp_path / "pg.npz", images=data["pggan"])
    result = train(_config(PgganTrainConfig, run, data=str(tmp_path / "pg.npz")), resume=run)
    assert result.step == EXPECTED["pggan"]["final_step"] == 12
    assert_matches(GanGenerator.load(run)(4, seed=2), EXPECTED["pggan"]["final_ema"],
                   "resumed PGGAN G_ema")


def test_old_classifier_checkpoint_resumes_to_the_old_end(data, tmp_path):
    from impasto.classify import ClassifierTrainConfig, load_classifier, train

    run = run_copy("classifier_run", tmp_path)
    np.savez(tmp_path / "clf.npz", images=data["classifier"], labels=data["classifier_labels"])
    result = train(_config(ClassifierTrainConfig, run, data=str(tmp_path / "clf.npz")),
                   resume=run)
    assert result.step == 6
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        logits = load_classifier(run, which="latest")(x)
    assert_matches(logits, EXPECTED["classifier"]["step6_logits"], "resumed classifier logits")
