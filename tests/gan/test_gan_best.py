"""The tracked metric: SWD of G_ema against fixed real images, logged, and ``best.pt`` kept
at its lowest value; measuring does not disturb the run's random streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_same
from impasto.gan import GanTrainConfig, train
from impasto.train import load_checkpoint, read_stats

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.kron((d.images * (255 / 16)).round().astype(np.uint8), np.ones((1, 4, 4), np.uint8))
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, images=images[:256])
    return str(path)


def config(digits, run, **kw) -> GanTrainConfig:
    opts = dict(
        data=digits, run=str(run), channels=1, z_dim=16, base_width=8, batch_size=8, steps=12,
        precision="fp32", device="cpu", deterministic=True, seed=0, log_every=0,
        sample_every=0, ckpt_every=0, keep_last=1, n_samples=4, tensorboard=False,
    )
    opts.update(kw)
    return GanTrainConfig(**opts)


def test_best_checkpoint_holds_the_lowest_swd(digits, tmp_path):
    run = tmp_path / "run"
    train(config(digits, run, metric="swd", metric_every=4, metric_samples=32))
    rows = [r for r in read_stats(run) if "metric/swd" in r]
    assert [r["step"] for r in rows] == [4, 8, 12]
    values = [r["metric/swd"] for r in rows]
    assert all(v > 0 and np.isfinite(v) for v in values)
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "swd" and best["value"] == pytest.approx(min(values))
    assert best["step"] == rows[int(np.argmin(values))]["step"]
    ckpt = load_checkpoint(run / "best.pt", kind="gan/dcgan")
    assert ckpt["step"] == best["step"]
    assert ckpt["extra"]["best_value"] == pytest.approx(min(values))


def test_the_logged_value_is_the_swd_of_the_saved_generator(digits, tmp_path):
    """Recompute the metric from best.pt's G_ema by hand: the same number."""
    from impasto.gan.common import metric_reference, tracked_metric
    from impasto.data import open_dataset
    from impasto.nets.gan import build_gan

    run = tmp_path / "run"
    cfg = config(digits, run, steps=4, metric="swd", metric_samples=32)
    train(cfg)
    logged = [r["metric/swd"] for r in read_stats(run) if "metric/swd" in r]
    assert len(logged) == 1
    ckpt = load_checkpoint(run / "best.pt", kind="gan/dcgan")
    cfg = cfg.resolved()
    G, _ = build_gan(cfg.net_config())
    G.load_state_dict(ckpt["models"]["G_ema"]["model"])
    data = open_dataset(digits, resolution=32, channels=1)
    real = metric_reference(data, 32, 0)
    assert real.dtype == torch.uint8 and real.shape == (32, 1, 32, 32)
    again = tracked_metric(G.eval(), real, cfg, 0, torch.device("cpu"), None)
    assert again == pytest.approx(logged[0], rel=1e-6)


def test_measuring_does_not_change_the_training(digits, tmp_path):
    a = train(config(digits, tmp_path / "a"))
    b = train(config(digits, tmp_path / "b", metric="swd", metric_every=3, metric_samples=16))
    assert_same(a.G.state_dict(), b.G.state_dict(), "G")


def test_unknown_metric_is_refused(digits, tmp_path):
    from impasto.cli import main

    run = tmp_path / "r"
    assert main(["gan", "train", digits, "--run", str(run), "--metric", "fid"]) == 2
    assert not run.exists()


def test_an_aborted_run_measures_before_it_stops(digits, tmp_path):
    run = tmp_path / "run"
    calls = []
    result = train(config(digits, run, metric="swd", metric_every=4, metric_samples=16),
                   abort=lambda: calls.append(1) or len(calls) == 5)
    assert result.aborted and result.step == 5
    rows = [r for r in read_stats(run) if "metric/swd" in r]
    assert [r["step"] for r in rows] == [4, 5]
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == pytest.approx(min(r["metric/swd"] for r in rows))
