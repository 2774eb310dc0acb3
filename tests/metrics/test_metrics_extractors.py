"""Feature extractors: the registry, batched encoding with running statistics, and the three
extractors (inception with a reference-shaped random file, vgg19 with a tiny random VGG,
classifier:PATH with a tiny LeNet trained through impasto.classify)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_vgg

from impasto.errors import InputError, WeightsNotFoundError
from impasto.metrics.extractors import (
    EXTRACTORS,
    FeatureExtractor,
    RunningStats,
    VGG19Extractor,
    build_extractor,
    encode,
    parse_extractor_name,
)
from impasto.metrics.fid import FeatureStats
from impasto.nets.inception import FID_INCEPTION

pytestmark = pytest.mark.usefixtures("one_thread")


class PixelStats(FeatureExtractor):
    """Per-channel means and stds of a 4x4 average pool (2 * 3 * 16 = 96-d), and 3 logits."""

    def __init__(self) -> None:
        self.name = self.fingerprint = "pixelstats"
        self.feature_dim, self.num_classes = 96, 3
        self.description = "toy"
        self.calls = 0

    def prepare(self, x):
        return F.adaptive_avg_pool2d(x.float(), 4)

    def features(self, x):
        self.calls += 1
        f = torch.cat([x.flatten(1), (x - x.mean(dim=(2, 3), keepdim=True)).flatten(1)], 1)
        return f, x.mean(dim=(2, 3)) * 5


def test_registry_names_and_parsing():
    assert set(EXTRACTORS) == {"inception", "vgg19", "classifier"}
    assert parse_extractor_name("inception") == ("inception", None)
    assert parse_extractor_name("vgg19") == ("vgg19", None)
    assert parse_extractor_name("vgg19:64") == ("vgg19", "64")
    assert parse_extractor_name("classifier:runs/a:b.pt") == ("classifier", "runs/a:b.pt")
    with pytest.raises(InputError, match="unknown feature extractor 'clip'; choose from "
                       r"inception, vgg19\[:SIZE\], classifier:PATH"):
        parse_extractor_name("clip")
    with pytest.raises(InputError, match="needs an argument: classifier:PATH"):
        parse_extractor_name("classifier")
    with pytest.raises(InputError, match="takes no ':' argument"):
        parse_extractor_name("inception:big")
    with pytest.raises(InputError, match="whole number"):
        build_extractor("vgg19:big")
    with pytest.raises(InputError, match="from 32 to 1024"):
        build_extractor("vgg19:8")


def test_running_stats_match_two_pass_statistics_despite_a_large_offset():
    rng = np.random.default_rng(0)
    # A mean 1e7 times the spread: the naive sum-of-squares formula loses most digits here.
    x = rng.normal(size=(203, 7)) * 0.01 + 1e5
    x[:, 1] = x[:, 0] * 0.5 + rng.normal(size=203) * 0.001  # a correlated pair
    acc = RunningStats()
    for start, size in ((0, 1), (1, 64), (65, 100), (165, 38)):  # uneven batches
        acc.add(x[start : start + size])
    got = acc.stats()
    assert got.n == 203
    np.testing.assert_allclose(got.mu, x.mean(0), rtol=1e-14)
    cov = np.cov(x, rowvar=False)
    assert np.abs(got.sigma - cov).max() < 1e-8 * np.abs(cov).max()
    naive = (x.T @ x - 203 * np.outer(x.mean(0), x.mean(0))) / 202
    assert np.abs(naive - cov).max() > 0.01 * np.abs(cov).max()  # the trap is real
    with pytest.raises(InputError, match="at least 2 samples"):
        RunningStats().stats()


def test_encode_in_batches_equals_encoding_at_once():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((37, 3, 12, 12))).float()
    ex = PixelStats()
    enc = encode(ex, images.split(8), total=37, meta={"source": "test"})
    assert ex.calls == 5
    feats, logits = ex(images)
    np.testing.assert_allclose(enc.features, feats.numpy(), rtol=1e-6)
    np.testing.assert_allclose(enc.logits, logits.numpy(), rtol=1e-6)
    ref = FeatureStats.from_features(feats.double())
    np.testing.assert_allclose(enc.stats.mu, ref.mu, rtol=1e-6)
    np.testing.assert_allclose(enc.stats.sigma, ref.sigma, rtol=1e-4, atol=1e-9)
    assert enc.stats.meta["extractor"] == "pixelstats" and enc.stats.meta["source"] == "test"
    assert enc.n == 37 and enc.fingerprint == "pixelstats"
    # Statistics only: nothing per image is kept.
    lean = encode(ex, images.split(8), keep_features=False, keep_logits=False)
    assert lean.features is None and lean.logits is None
    np.testing.assert_allclose(lean.stats.sigma, enc.stats.sigma, rtol=1e-12)


def test_encode_rejects_non_finite_features():
    class Broken(PixelStats):
        def features(self, x):
            f, lg = super().features(x)
            f[0, 0] = float("nan")
            return f, lg

    with pytest.raises(InputError, match="NaN or infinite"):
        encode(Broken(), [torch.rand(4, 3, 8, 8)])


def test_vgg19_extractor_is_the_spatial_mean_of_relu5_4():
    vgg = tiny_vgg(["relu5_4"])
    ex = VGG19Extractor(vgg, 32, torch.device("cpu"), "caffe")
    assert ex.name == "vgg19:32" and ex.feature_dim == 8 and ex.num_classes == 0
    x = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    feats, logits = ex(x)
    assert logits is None
    resized = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False,
                            antialias=True)
    torch.testing.assert_close(feats, vgg(resized)["relu5_4"].mean(dim=(2, 3)))
    grey = x[:, :1]
    torch.testing.assert_close(ex(grey)[0], ex(grey.expand(-1, 3, -1, -1))[0])


def test_real_vgg19_is_offline_and_512_d():
    ex = build_extractor("vgg19:32")
    assert ex.feature_dim == 512 and ex.fingerprint == "vgg19-caffe:32:relu5_4-mean"
    f, _ = ex(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 512) and (f >= 0).all()


def test_inception_extractor_from_env_or_weights(tmp_path, monkeypatch):
    from impasto.nets.inception import FIDInceptionV3

    monkeypatch.delenv(FID_INCEPTION.env_var, raising=False)
    with pytest.raises(WeightsNotFoundError, match="pytorch-fid/releases/download"):
        build_extractor("inception")
    with pytest.raises(WeightsNotFoundError, match="not found: .*missing.pth"):
        build_extractor("inception", weights=tmp_path / "missing.pth")
    path = tmp_path / FID_INCEPTION.filename
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), path)  # the reference's keys: test_nets_inception
    monkeypatch.setenv(FID_INCEPTION.env_var, str(path))
    ex = build_extractor("inception")
    assert ex.feature_dim == 2048 and ex.num_classes == 1008
    assert ex.fingerprint.startswith("inception-2015-12-05:") and ex.fingerprint.endswith(":pool3")
    x = torch.rand(2, 1, 20, 20)
    feats, logits = ex(x)
    pool, _ = ex.net(x)
    torch.testing.assert_close(feats, pool)
    # IS logits: pool3 @ W^T without the bias, as the original Inception Score code.
    torch.testing.assert_close(logits, pool @ ex.net.fc.weight.T)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    classify = pytest.importorskip("impasto.classify")
    root = tmp_path_factory.mktemp("lenet")
    rng = np.random.default_rng(0)
    np.savez(root / "toy.npz", images=(rng.random((32, 12, 12)) * 255).astype(np.uint8),
             labels=np.arange(32) % 4)
    cfg = classify.ClassifierTrainConfig(
        data=str(root / "toy.npz"), run=str(root / "run"), arch="lenet", image_size=12,
        steps=2, batch_size=8, precision="fp32", device="cpu", tensorboard=False,
        log_every=0, val_split=0.25,
    )
    classify.train(cfg)
    return root / "run"


def test_classifier_extractor_gives_penultimate_features_and_logits(lenet_run):
    from impasto.classify import load_classifier, prepare_images

    ex = build_extractor(f"classifier:{lenet_run}")
    model = load_classifier(lenet_run)
    assert ex.num_classes == 4 and ex.feature_dim == model.feature_dim
    x = torch.rand(5, 3, 20, 20, generator=torch.Generator().manual_seed(0))  # RGB, other size
    feats, logits = ex(x)
    prepared = prepare_images(model, x)
    assert prepared.shape == (5, 1, 12, 12)
    torch.testing.assert_close(feats, model.features(prepared))
    torch.testing.assert_close(logits, model(prepared))
    # The fingerprint follows the checkpoint file, not the spelling of its path.
    again = build_extractor(f"classifier:{lenet_run / 'best.pt'}")
    assert again.fingerprint == ex.fingerprint
    with pytest.raises(InputError, match="not found: .*nothere"):
        build_extractor(f"classifier:{lenet_run / 'nothere'}")
    with pytest.raises(InputError, match="--weights does not apply"):
        build_extractor(f"classifier:{lenet_run}", weights="x.pth")
