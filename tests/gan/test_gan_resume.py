"""Resuming GAN training is exact: N steps + resume for N more == 2N steps straight, bit for bit.

Deterministic mode on CPU, tiny networks on a synthetic npz of structured 32x32 images. The
dataset has 52 images, so an epoch is 6 batches of 8 (4 images dropped) and every resume point
below lies in the middle of an epoch (checked), where the loader must skip the batches already
used. Everything in the final checkpoints is compared with ``torch.equal``: G, D (batch-norm
statistics and spectral-norm power-iteration vectors included), the EMA generator, both Adam
states, every RNG state, the step, the image count and the data position.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same, assert_same_checkpoints
from impasto.errors import InputError
from impasto.gan import GanTrainConfig, train
from impasto.train import EpochSampler, load_checkpoint, save_checkpoint

N_IMAGES = 52
BATCH = 8
PER_EPOCH = (N_IMAGES // BATCH) * BATCH  # indices used per epoch (drop_last)


pytestmark = pytest.mark.usefixtures("one_thread")


def structured_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB 32x32 uint8 images: a random blob on a random colour gradient, plus noise;
    label = the quadrant of the blob (4 classes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31.0
    images, labels = [], []
    for _ in range(n):
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(0.01, 0.03)))
        img = img * (1 - blob[..., None]) + rng.uniform(0, 1, 3) * blob[..., None]
        img += rng.normal(0, 0.03, img.shape)
        images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
        labels.append(int(cy > 0.5) * 2 + int(cx > 0.5))
    return np.stack(images), np.array(labels, dtype=np.int64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "synthetic.npz"
    images, labels = structured_images(N_IMAGES)
    np.savez(path, images=images, labels=labels)
    return str(path)


def config(data: str, run: Path, steps: int, **kw) -> GanTrainConfig:
    opts = dict(
        data=data, run=str(run), resolution=32, z_dim=16, base_width=8, batch_size=BATCH,
        steps=steps, deterministic=True, precision="fp32", device="cpu", seed=3,
        log_every=1, sample_every=0, ckpt_every=0, n_samples=4, tensorboard=False,
    )
    opts.update(kw)
    return GanTrainConfig(**opts)


CASES = {
    # name: (options, N)
    "dcgan-nchw": (dict(arch="dcgan", channels_last=False), 3),
    "sngan-hinge-conditional": (dict(arch="sngan", conditional=True), 2),  # 5 D steps
    "dcgan-wgan-gp-diffaugment": (
        dict(arch="dcgan", loss="wgan-gp", diffaugment="color,translation,cutout"), 2
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_is_bit_identical(case, data, tmp_path):
    opts, n = CASES[case]
    straight = train(config(data, tmp_path / "straight", 2 * n, **opts))
    first = train(config(data, tmp_path / "resumed", n, **opts))
    half = load_checkpoint(first.checkpoint)
    assert half["step"] == n
    assert 0 < half["extra"]["pos"] < PER_EPOCH, "the resume point must lie inside an epoch"
    assert half["images_seen"] < straight.images_seen
    resumed = train(config(data, tmp_path / "resumed", 2 * n, **opts), resume=tmp_path / "resumed")
    assert resumed.step == straight.step == 2 * n
    assert_same_checkpoints(straight.checkpoint, resumed.checkpoint)
    # The modules returned are the same too (spot check: the whole state dicts).
    for name in ("G", "D", "G_ema"):
        assert_same(getattr(straight, name).state_dict(), getattr(resumed, name).state_dict(), name)
    # and the logs of the resumed run continue the first half's without duplicates
    lines = (tmp_path / "resumed" / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 2 * n


def test_abort_saves_a_checkpoint_that_resumes_exactly(data, tmp_path):
    opts = dict(arch="dcgan", diffaugment="translation", hflip=True)
    straight = train(config(data, tmp_path / "a", 4, **opts))
    calls = []

    def abort() -> bool:
        calls.append(1)
        return len(calls) == 3  # polled after each step: stop after step 3

    stopped = train(config(data, tmp_path / "b", 4, **opts), abort=abort)
    assert stopped.aborted and stopped.step == 3
    assert stopped.checkpoint.name == "ckpt-000000003.pt"
    resumed = train(config(data, tmp_path / "b", 4, **opts), resume=stopped.checkpoint)
    assert not resumed.aborted
    assert_same_checkpoints(straight.checkpoint, resumed.checkpoint)


def test_the_comparison_notices_a_wrong_data_order(data, tmp_path, monkeypatch):
    # Control: a resume that forgets to skip the used batches of the epoch is caught.
    straight = train(config(data, tmp_path / "a", 4))
    train(config(data, tmp_path / "b", 2))
    monkeypatch.setattr(EpochSampler, "skip_next", lambda self, count: None)
    resumed = train(config(data, tmp_path / "b", 4), resume=tmp_path / "b")
    with pytest.raises(AssertionError, match="tensors differ"):
        assert_same_checkpoints(straight.checkpoint, resumed.checkpoint)


def test_bad_resume_sources_are_one_line_input_errors(data, tmp_path):
    run = tmp_path / "run"
    first = train(config(data, run, 1))
    ckpt = first.checkpoint

    def fails(match: str, cfg: GanTrainConfig, resume) -> str:
        with pytest.raises(InputError, match=match) as e:
            train(cfg, resume=resume)
        assert "\n" not in str(e.value)
        return str(e.value)

    # another architecture
    fails("is a 'gan/dcgan' checkpoint, not 'gan/sngan'", config(data, run, 2, arch="sngan"), ckpt)
    # other network settings
    fails("base width 8, not 16", config(data, run, 2, base_width=16), ckpt)
    fails("classes", config(data, run, 2, conditional=True), ckpt)
    # missing file / run folder without checkpoints
    fails("no such checkpoint", config(data, run, 2), tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    fails("no checkpoint in this folder", config(data, run, 2), tmp_path / "empty")
    # truncated and corrupt files
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    fails("truncated or corrupt", config(data, run, 2), cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    fails("not a checkpoint", config(data, run, 2), junk)
    # a checkpoint of another kind of model
    other = save_checkpoint(
        tmp_path / "clf.pt", kind="classifier/resnet", config={}, step=1, images_seen=1,
        models={"net": torch.nn.Linear(2, 2)}, optimizers={},
    )
    fails("'classifier/resnet' checkpoint, not 'gan/dcgan'", config(data, run, 2), other)
    # starting afresh in a folder that holds checkpoints is refused, not mixed in
    with pytest.raises(InputError, match="already holds checkpoints; continue it with --resume"):
        train(config(data, run, 2))
    # and nothing above changed the run folder
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == ["ckpt-000000001.pt"]
    shutil.rmtree(run)


def test_a_checkpoint_whose_generators_ran_on_another_device_resumes(data, tmp_path, caplog):
    # What a run written on a GPU hands a CPU (the latent and augmentation streams are CUDA
    # generators there): the streams are reseeded from the step, the data start the next
    # epoch, and the run goes on to its end.
    from impasto.train.checkpoint import tensor_digest

    first = train(config(data, tmp_path / "run", 2))
    raw = torch.load(first.checkpoint, weights_only=True)
    for name in ("latents", "augment"):
        raw["rng"]["generators"][name] = torch.zeros(16, dtype=torch.uint8)
    raw["digest"] = {"sha256": tensor_digest(
        {k: raw[k] for k in ("models", "optimizers", "rng", "extra")})}
    torch.save(raw, first.checkpoint)
    with caplog.at_level("WARNING"):
        resumed = train(config(data, tmp_path / "run", 4), resume=tmp_path / "run")
    assert "another kind of device" in caplog.text
    assert resumed.step == 4 and not resumed.aborted
    assert all(np.isfinite(v) for v in resumed.stats.values())
    assert load_checkpoint(resumed.checkpoint)["extra"]["epoch"] >= 1
