"""A small runs folder for the studio's tests: a seeded tiny per-style network with a
thumbnail, a seeded tiny conditional DCGAN model file, two small images and a short clip; and
run folders of every family (real checkpoints, logs and samples written by the real logger),
a damaged run and a partial one, for the Runs tab."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A smooth RGB test photo: gradients and a disc (not noise, so styles show)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2, 220.0, 40.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def painting(size: int = 64, seed: int = 1) -> Image.Image:
    """A stripy 'painting'."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.stack([128 + 120 * np.sin(x / 3), 128 + 120 * np.sin((x + y) / 5),
                    128 + 120 * np.cos(y / 4)], -1)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_runs(root: Path) -> Path:
    """``root`` with ``styles/stripes.pt`` (a per-style network) and ``gans/squares.pt``."""
    from impasto.nets.gan import GanNetConfig, build_gan
    from impasto.nets.transformer import TransformerConfig, TransformerNet
    from impasto.style.fast import save_fast_style
    from impasto.train import save_model

    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(channels=(4, 8, 8), num_residual=1)).eval()
    save_fast_style(net, root / "styles" / "stripes.pt", {"style": {"name": "stripes"}},
                    thumbnail=painting())
    torch.manual_seed(0)
    config = GanNetConfig(arch="dcgan", resolution=32, z_dim=16, base_width=8, num_classes=2)
    G, _ = build_gan(config)
    save_model(root / "gans" / "squares.pt", kind="gan/dcgan", config=config.to_dict(),
               state_dict=G.state_dict(), extra={"classes": ["red", "blue"]})
    (root / "notes.txt").write_text("not a model")
    photo().save(root / "photo.png")
    painting().save(root / "painting.png")
    clip(root / "clip.mp4")
    return root


LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
#: The run folders of tests/fixtures/legacy (real checkpoints and config.json of an earlier
#: release, a few steps each) by the family they are shown as.
LEGACY_RUNS = {"gan": "gan_dcgan_run", "pggan": "pggan_run", "classify": "classifier_run",
               "fast-style": "fast_style_run", "adain": "adain_run"}
#: The scalars each family logs (a subset), and its sample tag.
SCALARS = {"gan": ("d_loss", "g_loss", "lr_g", "kimg"), "pggan": ("d_loss", "g_loss", "gp"),
           "classify": ("loss", "acc", "lr"), "fast-style": ("loss", "content", "style"),
           "adain": ("loss", "content", "style")}


def blobs(n: int, seed: int, size: int = 24) -> torch.Tensor:
    """``n`` smooth colour fields ``(n, 3, size, size)`` in ``[0, 1]`` (fake samples)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 3, size), torch.linspace(0, 3, size),
                            indexing="ij")
    a, b, p = (torch.rand(3, n, 3, 1, 1, generator=g) * torch.tensor([3.0, 3.0, 6.0])
               .view(3, 1, 1, 1, 1))
    return 0.5 + 0.5 * torch.sin(a * xx + p) * torch.cos(b * yy - p)


def loss_at(step: int, k: int) -> float:
    """The fake runs' scalar ``k`` at ``step``: falls from ``k + 2`` towards ``k``."""
    return k + 2.0 / step


def make_training_runs(root: Path, steps: int = 6) -> Path:
    """Run folders of every family under ``root/<family>``: the real checkpoints and
    ``config.json`` of tests/fixtures/legacy's runs, with a ``stats.jsonl`` of ``steps``
    steps and sample grids at steps 2, 4, ... written by the real :class:`RunLogger` (the gan
    run also logs ``metric/swd`` every 2 steps; the classify run ``val_acc``, with its
    ``best.json``); plus ``broken`` (a corrupt config.json and a bad line in the middle of
    stats.jsonl) and ``partial`` (config.json only: nothing logged yet). Milliseconds."""
    import json
    import shutil

    from impasto.train.runlog import RunLogger

    for family, legacy in LEGACY_RUNS.items():
        run = root / family
        shutil.copytree(LEGACY / legacy, run)
        with RunLogger(run, tensorboard=False) as logger:
            for step in range(1, steps + 1):
                row = {name: loss_at(step, k) for k, name in enumerate(SCALARS[family])}
                if family == "gan" and step % 2 == 0:
                    row["metric/swd"] = 100.0 / step
                if family == "classify" and step % 2 == 0:
                    row["val_acc"] = step / 10
                logger.scalars(step, row)
                if step % 2 == 0 and family in ("gan", "pggan", "fast-style"):
                    logger.images(step, "samples-ema", blobs(4, step), nrow=2,
                                  save_png=True)
        if family == "classify":
            (run / "best.json").write_text(json.dumps(
                {"metric": "val_acc", "mode": "max", "value": 0.6, "step": 6,
                 "file": "best.pt"}))
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"steps": 10,')
    (broken / "stats.jsonl").write_text('{"step": 1, "loss": 2.0}\nnot json\n'
                                        '{"step": 2, "loss": 1.0}\n')
    (root / "partial").mkdir()
    (root / "partial" / "config.json").write_text('{"steps": 100}')
    return root


def clip(path: Path, n: int = 8, fps: float = 12.0) -> Path:
    """A small video (48 x 32, ``n`` frames of a moving gradient)."""
    from impasto.io.video import VideoWriter

    y = torch.linspace(0, 1, 32)[:, None].expand(32, 48)
    x = torch.linspace(0, 1, 48)[None, :].expand(32, 48)
    frames = torch.stack([torch.stack([x, y, (x + y + i / n) % 1]) for i in range(n)])
    with VideoWriter(path, (48, 32), fps) as writer:
        writer.write(frames)
    return path


if __name__ == "__main__":
    make_runs(Path(sys.argv[1]))
