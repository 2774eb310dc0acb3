"""An end-to-end GAN run on scikit-learn's digits, and the loop's guard rails.

The digits (1797 grey 8x8 images, labels 0-9) are upsampled 4x to 32x32 and written to an npz.
The run is tiny (DCGAN, base width 8, batch 8, 12 steps) and the files it leaves are checked:
config.json, stats.jsonl (keys, steps, finite values), TensorBoard events (their scalar tags),
checkpoints (keep_last), the sample grids. Then: a NaN stops training and leaves the last good
checkpoint; bf16 and channels_last runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.gan import GanLoss, GanTrainConfig, train
from impasto.gan.training import sample_grid_inputs
from impasto.nets.gan import build_gan
from impasto.train import NonFiniteLossError, load_checkpoint, load_config, read_stats

Z, WIDTH, BATCH = 16, 8, 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.kron((d.images * (255 / 16)).round().astype(np.uint8), np.ones((1, 4, 4), np.uint8))
    assert images.shape == (1797, 32, 32)
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, images=images, labels=d.target.astype(np.int64))
    return str(path)


def config(digits: str, run: Path, **kw) -> GanTrainConfig:
    opts = dict(
        data=digits, run=str(run), channels=1, z_dim=Z, base_width=WIDTH, batch_size=BATCH,
        steps=12, precision="fp32", device="cpu", deterministic=True, seed=0,
        log_every=4, sample_every=6, ckpt_every=4, keep_last=2, n_samples=16,
    )
    opts.update(kw)
    return GanTrainConfig(**opts)


STAT_KEYS = {
    "step", "time", "d_loss", "g_loss", "d_real", "d_fake", "g_d_fake", "grad_norm_d",
    "grad_norm_g", "lr_g", "lr_d", "images_per_s", "kimg", "epoch",
}


def test_a_short_run_leaves_its_files(digits, tmp_path):
    run = tmp_path / "run"
    seen = []
    result = train(config(digits, run), progress=seen.append)
    assert (result.step, result.total_steps, result.images_seen) == (12, 12, 96)
    assert not result.aborted

    # progress: once before the first step, then after each step, with the losses
    assert [p.step for p in seen] == list(range(13))
    assert seen[0].stats == {} and set(seen[-1].stats) >= {"d_loss", "g_loss"}

    # config.json holds the resolved settings and reads back to the same config
    saved = load_config(GanTrainConfig, run / "config.json")
    assert saved == result.config
    assert (saved.loss, saved.lr_g, saved.betas, saved.d_steps) == (
        "nonsaturating", 2e-4, (0.5, 0.999), 1
    )

    # stats.jsonl: steps 4, 8, 12, every key, finite numbers
    rows = read_stats(run)
    assert [r["step"] for r in rows] == [4, 8, 12]
    for r in rows:
        assert set(r) == STAT_KEYS
        assert all(math.isfinite(v) for v in r.values())
        assert r["lr_g"] == r["lr_d"] == 2e-4 and r["images_per_s"] > 0
        assert r["grad_norm_d"] > 0 and r["grad_norm_g"] > 0
    assert [r["kimg"] for r in rows] == [0.032, 0.064, 0.096]
    # D learns to tell the digits from the generator's noise within these steps
    assert rows[-1]["d_real"] > rows[-1]["d_fake"] + 0.5
    assert rows[-1]["d_real"] > rows[0]["d_real"]

    # TensorBoard: one event file, with the same scalars and the sample images
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(run.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert set(tags["scalars"]) == STAT_KEYS - {"step", "time"}
    assert [e.step for e in acc.Scalars("d_loss")] == [4, 8, 12]
    assert acc.Scalars("g_loss")[-1].value == pytest.approx(rows[-1]["g_loss"])
    assert [e.step for e in acc.Images("samples-ema")] == [6, 12]

    # checkpoints: keep_last=2 of steps 4, 8, 12; latest.json names the last
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [
        "ckpt-000000008.pt", "ckpt-000000012.pt"
    ]
    assert json.loads((run / "latest.json").read_text())["file"] == "ckpt-000000012.pt"
    ckpt = load_checkpoint(run / "ckpt-000000012.pt", kind="gan/dcgan")
    assert (ckpt["step"], ckpt["images_seen"]) == (12, 96)
    assert set(ckpt["models"]) == {"G", "D", "G_ema"} and set(ckpt["optimizers"]) == {"G", "D"}
    assert set(ckpt["rng"]["generators"]) == {"latents", "augment", "loader"}
    assert ckpt["config"] == json.loads((run / "config.json").read_text())
    for name, module in (("G", result.G), ("D", result.D)):
        for k, v in module.state_dict().items():
            assert torch.equal(ckpt["models"][name][k], v), (name, k)
    # the EMA generator (by default a half-life of 5% of the images seen: at the 12th update
    # 4.8 images, beta 0.5 ** (8 / 4.8) = 0.31) follows G: it is near G's last weights, not
    # at the random start (as beta 0.999 would leave it: 1 - 0.999**12 = 1.2% of the way)
    assert (saved.ema_beta, saved.ema_kimg, saved.ema_rampup) == (None, 10.0, None)
    torch.manual_seed(0)
    G0, _ = build_gan(result.G.config)  # the initial weights (same seed as the run)
    for name in ("to_image.weight", "convs.0.weight"):
        start, g = G0.state_dict()[name], result.G.state_dict()[name]
        ema = ckpt["models"]["G_ema"]["model"][name]
        assert 0 < (ema - g).norm() < 0.2 * (g - start).norm(), name

    # sample grids: 16 samples, 4 per row, 32 px + 2 px padding
    grids = sorted((run / "images").glob("samples-*.png"))
    assert [p.name for p in grids] == ["samples-ema-000000006.png", "samples-ema-000000012.png"]
    with Image.open(grids[-1]) as im:
        assert im.size == (4 * 34 + 2, 4 * 34 + 2)
        pixels = np.asarray(im.convert("L"), dtype=np.int64)
    # ... of the EMA generator at the fixed latents: tile k is G_ema(z_k), 8-bit rounded
    z, y = sample_grid_inputs(result.config)
    assert y is None
    with torch.no_grad():
        expected = ((result.G_ema(z) + 1) / 2).clamp(0, 1).mul(255).round().to(torch.int64)
    for k in (0, 5, 15):
        r, c = divmod(k, 4)
        tile = pixels[2 + 34 * r : 34 + 34 * r, 2 + 34 * c : 34 + 34 * c]
        assert np.abs(tile - expected[k, 0].numpy()).max() <= 1
    assert len(np.unique(pixels[2:34, 2:34])) > 3  # not a blank tile


def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path, monkeypatch):
    original = GanLoss.g_step
    calls = []

    def g_step(self, z, y=None):
        stats = original(self, z, y)
        calls.append(1)
        if len(calls) == 3:
            stats["g_loss"] = float("nan")
        return stats

    monkeypatch.setattr(GanLoss, "g_step", g_step)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as e:
        train(config(digits, run, ckpt_every=1, keep_last=5, log_every=1, sample_every=0))
    msg = str(e.value)
    assert msg.startswith("loss 'g_loss' became nan at step 3")
    assert "ckpt-000000002.pt" in msg and "\n" not in msg
    assert e.value.step == 3
    # nothing was saved at or after the bad step
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [
        "ckpt-000000001.pt", "ckpt-000000002.pt"
    ]
    assert json.loads((run / "latest.json").read_text())["step"] == 2
    assert [r["step"] for r in read_stats(run)] == [1, 2]
    ckpt = load_checkpoint(run / "ckpt-000000002.pt", kind="gan/dcgan")
    assert ckpt["step"] == 2
    for state in ckpt["models"]["G"].values(), ckpt["models"]["D"].values():
        assert all(torch.isfinite(v.float()).all() for v in state)


def test_bf16_runs_close_to_fp32(digits, tmp_path):
    common = dict(steps=3, log_every=1, sample_every=0, ckpt_every=0, tensorboard=False)
    fp32 = train(config(digits, tmp_path / "fp32", **common))
    bf16 = train(config(digits, tmp_path / "bf16", precision="bf16", **common))
    assert bf16.config.precision == "bf16"
    a, b = read_stats(tmp_path / "fp32"), read_stats(tmp_path / "bf16")
    for ra, rb in zip(a, b):
        for key in ("d_loss", "g_loss"):
            assert math.isfinite(rb[key])
            assert rb[key] == pytest.approx(ra[key], abs=0.05)
    # bf16 autocast really ran: the losses are not the fp32 ones bit for bit
    assert any(ra["d_loss"] != rb["d_loss"] for ra, rb in zip(a, b))
    # weights and the EMA stay float32
    assert all(p.dtype == torch.float32 for p in bf16.G_ema.parameters())
    assert fp32.step == bf16.step == 3


def test_channels_last_matches_nchw(digits, tmp_path):
    result = train(config(digits, tmp_path / "cl", channels_last=True, steps=2, log_every=1,
                          sample_every=0, ckpt_every=0, tensorboard=False))
    convs = [p for p in result.G.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in result.D.parameters() if p.dim() == 4)
    # One G forward: channels_last weights vs the same weights in NCHW
    G_cl = result.G  # train mode: batch statistics, so the output has its full scale
    G_nchw, _ = build_gan(G_cl.config)
    G_nchw.load_state_dict(G_cl.state_dict())
    assert all(p.is_contiguous() for p in G_nchw.parameters())
    z = torch.randn(6, Z, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_cl, out_nchw = G_cl(z), G_nchw(z)
    assert out_cl.shape == out_nchw.shape == (6, 1, 32, 32)
    torch.testing.assert_close(out_cl, out_nchw, atol=1e-5, rtol=1e-4)
    assert out_cl.std() > 0.03  # (so that atol 1e-5 is a tight tolerance)
