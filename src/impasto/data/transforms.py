"""Per-image preparation for GAN training: centre square, resize, grey, flips, ``[-1, 1]``.

Every source (folder, zip, IDX, numpy) first yields an 8-bit image as a numpy array
``(H, W, C)`` with ``C`` in 1, 3; :func:`prepare` turns it into a ``uint8`` tensor
``(channels, R, R)``, and :func:`to_signed` into the float32 ``[-1, 1]`` the networks see.
Keeping the prepared image in 8 bits is what makes a cache file serve exactly the same values.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["flip_mask", "prepare", "to_grey", "to_signed"]


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 1)`` uint8 luma (ITU-R 601-2, as PIL's ``convert("L")``).

    ``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``, i.e. ``0.299 R + 0.587 G + 0.114 B``
    rounded; a grey pixel (R = G = B) keeps its value exactly.
    """
    c = rgb.astype(np.uint32)
    luma = (c[..., 0] * 19595 + c[..., 1] * 38470 + c[..., 2] * 7471 + 32768) >> 16
    return luma.astype(np.uint8)[..., None]


def prepare(img: np.ndarray, resolution: int, channels: int) -> torch.Tensor:
    """An 8-bit image ``(H, W, C)`` (``C`` 1 or 3) -> uint8 tensor ``(channels, R, R)``.

    The centred square of side ``min(H, W)`` is cut out (offsets rounded down) and resized to
    ``R x R`` (bilinear, antialiased when shrinking, rounded to 8 bits): the same as resizing the
    shorter side to ``R`` and centre-cropping, without rounding the longer side. An image whose
    shorter side is already ``R`` keeps its pixels exactly. ``channels=1`` converts RGB with
    :func:`to_grey`; ``channels=3`` repeats a grey image into three equal channels.
    """
    h, w, c = img.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    if channels == 1 and c == 3:
        img = to_grey(img)
    # A writable copy, owned by the tensor (sources may hand out read-only / mmap views).
    t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    if side != resolution:
        f = t.unsqueeze(0).to(torch.float32)
        f = F.interpolate(
            f, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
        t = f.round_().clamp_(0, 255).to(torch.uint8)[0]
    if channels == 3 and t.shape[0] == 1:
        t = t.expand(3, resolution, resolution)
    return t.contiguous()


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``0..255`` -> float32 ``[-1, 1]`` (``v / 127.5 - 1``; 0 -> -1, 255 -> 1 exactly)."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed mixing ``seed`` and ``epoch`` (no overlap between (s, e+1) and (s+1, e))."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


def flip_mask(n: int, seed: int, epoch: int = 0) -> torch.Tensor:
    """Which of ``n`` items are mirrored in ``epoch``: a bool tensor ``(n,)``, about half True.

    ``torch.rand(n, generator=g) < 0.5`` with ``g`` a :class:`torch.Generator` seeded from
    ``(seed, epoch)``: the same for every process and worker, whatever order items are read in.
    """
    g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    return torch.rand(n, generator=g) < 0.5
