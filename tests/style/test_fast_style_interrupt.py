"""Per-style network training stopped early (Ctrl-C in the API and the CLI leaves a model file
of the weights of that moment) and the data order's shards. Training on two processes (ranks
agree, abort on one rank, exact resume, only rank 0 writes) is part of the contract every
family keeps: tests/test_families.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same, tiny_vgg
from PIL import Image

from impasto.cli import main
from impasto.errors import InputError
from impasto.style.fast import (
    FastStyleConfig,
    FastStyleLoss,
    load_fast_style,
    train_fast_style,
)
from impasto.style.fast import training as fast_training
from impasto.train import EpochSampler, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ("relu1_2", "relu2_2")
N_PHOTOS = 9


def photo(i: int, h: int, w: int) -> np.ndarray:
    """A smooth synthetic 'photo', different for each ``i``."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([np.sin(xx * (4 + i) + i), np.cos(yy * (3 + i % 4) - i), xx * yy * (1 + i % 3)],
                   -1)
    return ((rgb - rgb.min()) / np.ptp(rgb) * 255).astype(np.uint8)


def make_data(root: Path) -> tuple[Path, Path]:
    photos = root / "photos"
    photos.mkdir()
    for i in range(N_PHOTOS):
        Image.fromarray(photo(i, 36 + 2 * i, 48 - i)).save(photos / f"p{i}.png")
    style = np.zeros((48, 64, 3), np.uint8)
    style[::4] = (30, 60, 200)
    style[2::4] = (240, 220, 40)
    Image.fromarray(style).save(root / "style.png")
    return photos, root / "style.png"


def config_opts(root: Path, photos: Path, style: Path, name: str, **kw) -> dict:
    opts = dict(
        content=str(photos), style=str(style), output=str(root / f"{name}.pt"),
        run=str(root / f"{name}.run"), size=32, style_size=64, adv_crop=16,
        channels=[4, 8, 8], num_residual=1, batch_size=2, steps=4, lr=1e-2,
        content_layers=["relu2_2"], style_layers=list(LAYERS), style_weight=1e-2, tv_weight=0.0,
        disc_width=8, disc_layers=2, precision="fp32", device="cpu", deterministic=True, seed=1,
        log_every=1, sample_every=0, ckpt_every=0, n_samples=2, tensorboard=False,
    )
    opts.update(kw)
    return opts



def test_shards_are_disjoint_and_one_process_keeps_the_whole_order():
    whole = EpochSampler(9, seed=5, order="derived")
    shards = [EpochSampler(9, seed=5, world_size=2, rank=r, order="derived") for r in (0, 1)]
    for epoch in (0, 3):
        for s in (whole, *shards):
            s.set_epoch(epoch)
        order = list(whole)
        a, b = (list(s) for s in shards)
        assert sorted(order) == list(range(9))
        assert len(a) == len(b) == len(shards[0]) == 4 and not set(a) & set(b)
        assert a + b != order and sorted(a + b) == sorted(order[:8])  # the 9th is left out
    shards[1].skip_next(3)
    assert list(shards[1]) == b[3:]
    with pytest.raises(InputError, match="fewer than the 3 training processes"):
        EpochSampler(2, seed=0, world_size=3, rank=0, order="derived")


# --------------------------------------------------------------------------------------------
# model files of stopped runs (one process)


@pytest.fixture()
def single(tmp_path):
    photos, style = make_data(tmp_path)

    def opts(name: str, **kw) -> dict:
        return config_opts(tmp_path, photos, style, name, **kw)

    return tmp_path, opts


def test_keyboard_interrupt_writes_model_file(single):
    """Ctrl-C in the Python API (a KeyboardInterrupt, here raised after step 2) still leaves a
    model file of the weights of that moment, then propagates."""
    root, opts = single
    cfg = FastStyleConfig(**opts("kbd", steps=10, ckpt_every=1))

    def progress(info):
        if info.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fast_style(cfg, vgg=tiny_vgg(LAYERS), progress=progress)
    net, meta, _ = load_fast_style(cfg.output)
    assert meta["steps"] == 2 and meta["aborted"] is True
    run = cfg.run_folder()
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [
        "ckpt-000000001.pt", "ckpt-000000002.pt"
    ]
    # the weights after step 2, as its checkpoint (written before the interrupt) holds them
    assert_same(net.state_dict(), load_checkpoint(run / "ckpt-000000002.pt")["models"]["net"],
                "interrupted model file")
    assert not list(root.glob(".*.tmp"))  # written atomically


def test_cli_first_ctrl_c_writes_checkpoint_and_model_file(single, monkeypatch, capsys):
    root, opts = single
    monkeypatch.setattr(fast_training, "VGG19Features", lambda layers, **kw: tiny_vgg(tuple(layers)))
    calls = []
    original = FastStyleLoss.g_step

    def g_step(self, content, fake):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during step 2: training stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, content, fake)

    monkeypatch.setattr(FastStyleLoss, "g_step", g_step)
    handler = signal.getsignal(signal.SIGINT)
    out = root / "cli.pt"
    rc = main(["fast-style", "train", str(root / "photos"), "-s", str(root / "style.png"),
               "-o", str(out), "--steps", "10", "--size", "32", "--style-size", "64",
               "--channels", "4,8,8", "--num-residual", "1", "--batch-size", "2",
               "--content-layers", "relu2_2", "--style-layers", "relu1_2,relu2_2",
               "--precision", "fp32", "--device", "cpu", "--no-tensorboard",
               "--sample-every", "0", "--ckpt-every", "0", "-q"])
    assert rc == 130, capsys.readouterr().err
    assert len(calls) == 2
    _, meta, _ = load_fast_style(out)
    assert meta["steps"] == 2 and meta["aborted"] is True
    ckpt = load_checkpoint(root / "cli.run" / "ckpt-000000002.pt")
    net, _, _ = load_fast_style(out)
    assert_same(net.state_dict(), ckpt["models"]["net"], "model file vs checkpoint")
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI put its handler back
