"""A small runs folder for the studio's tests: a seeded tiny per-style network with a
thumbnail, a seeded tiny conditional DCGAN model file, two small images and a short clip."""

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
