"""Sliced Wasserstein distance between image sets, multi-scale (Karras et al. 2018,
"Progressive Growing of GANs for Improved Quality, Stability, and Variation", appendix D).

Each image is split into a Laplacian pyramid from full resolution down to 16x16. On every level,
128 random 7x7 neighbourhoods per image give ``C*49``-dim descriptors; each set's descriptors are
normalised per channel (mean 0, std 1 over that level and set), and the sliced Wasserstein
distance between the two descriptor sets is estimated with random unit projections. Values are
reported x10^3 per level and averaged. Low-resolution levels compare colour and large
structures, high-resolution ones fine detail.

Because of the per-set normalisation, the distance ignores a global per-channel affine change
(``a * x + b`` with ``a > 0`` for every image alike); it sees changes in the *distribution* of
the descriptors, e.g. colour casts that vary between images, or clipping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.errors import InputError
from impasto.metrics._utils import positive_int

__all__ = [
    "gaussian_pyramid",
    "laplacian_pyramid",
    "reconstruct_laplacian",
    "sliced_wasserstein",
    "swd",
]

MIN_RESOLUTION = 16
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    """Separable 5-tap binomial blur of ``(N, C, H, W)``, mirror (reflect) padding."""
    c = x.shape[1]
    k = (_BINOMIAL * gain**0.5).to(x.dtype).to(x.device)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def _downsample(x: Tensor) -> Tensor:
    return _blur(x)[:, :, ::2, ::2]


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero-insertion then binomial blur (gain 4, to keep the mean), cropped to ``size``."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)[:, :, : size[0], : size[1]]


def _num_levels(h: int, w: int) -> int:
    levels = 1
    while min(h, w) // 2 >= MIN_RESOLUTION:
        h, w = (h + 1) // 2, (w + 1) // 2
        levels += 1
    return levels


def gaussian_pyramid(images: Tensor) -> list[Tensor]:
    """Blur-and-halve levels of ``(N, C, H, W)`` float images, from full size down to the
    smallest level with both sides >= 16 (64x64 gives 64, 32, 16)."""
    levels = [images]
    for _ in range(_num_levels(*images.shape[-2:]) - 1):
        levels.append(_downsample(levels[-1]))
    return levels


def laplacian_pyramid(images: Tensor) -> list[Tensor]:
    """Band-pass levels ``G_i - upsample(G_{i+1})``, finest first; the last (coarsest) level is
    the Gaussian level itself. :func:`reconstruct_laplacian` inverts it."""
    gauss = gaussian_pyramid(images)
    bands = [g - _upsample(nxt, g.shape[-2:]) for g, nxt in zip(gauss[:-1], gauss[1:])]
    return bands + [gauss[-1]]


def reconstruct_laplacian(bands: list[Tensor]) -> Tensor:
    """Collapse a Laplacian pyramid back to the full-size image."""
    x = bands[-1]
    for band in reversed(bands[:-1]):
        x = band + _upsample(x, band.shape[-2:])
    return x


def _as_images(x: Any, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name}: expected an (N, C, H, W) tensor or array, got {type(x).__name__}"
        )
    if x.ndim != 4:
        raise InputError(f"{name}: expected (N, C, H, W) images, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.is_floating_point():
        x = x.float()
    else:
        raise InputError(f"{name}: images must be float in [0, 1] or uint8, got {x.dtype}")
    if x.shape[0] < 1:
        raise InputError(f"{name}: needs at least 1 image, got 0")
    h, w = x.shape[-2:]
    if min(h, w) < MIN_RESOLUTION:
        raise InputError(
            f"{name}: images must be at least {MIN_RESOLUTION}x{MIN_RESOLUTION}, got {h}x{w}"
        )
    if not torch.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return x


def _descriptors(
    images: Tensor, ys: list[Tensor], xs: list[Tensor], patch: int, batch_size: int
) -> list[Tensor]:
    """Per level, ``(N * nhoods, C, patch, patch)`` neighbourhoods at the given corners
    (``ys[level]``, ``xs[level]``: ``(N, nhoods)``), built ``batch_size`` images at a time."""
    out: list[list[Tensor]] = [[] for _ in ys]
    offs = torch.arange(patch)
    for start in range(0, images.shape[0], batch_size):
        for lvl, band in enumerate(laplacian_pyramid(images[start : start + batch_size])):
            n = band.shape[0]
            y = ys[lvl][start : start + n]  # (n, P)
            x = xs[lvl][start : start + n]
            rows = (y[..., None] + offs)[..., :, None]  # (n, P, patch, 1)
            cols = (x[..., None] + offs)[..., None, :]  # (n, P, 1, patch)
            img = torch.arange(n)[:, None, None, None]
            # band[img, :, rows, cols] -> (n, P, patch, patch, C)
            nh = band.permute(0, 2, 3, 1)[img, rows, cols]
            out[lvl].append(nh.permute(0, 1, 4, 2, 3).reshape(-1, band.shape[1], patch, patch))
    return [torch.cat(parts) for parts in out]


def _normalise(desc: Tensor) -> Tensor:
    """Per channel: subtract the mean and divide by the std over all descriptors and pixels;
    flatten to ``(M, C*patch*patch)``."""
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return ((desc - mean) / std).reshape(desc.shape[0], -1)


def sliced_wasserstein(
    a: Any,
    b: Any,
    num_projections: int = 512,
    num_repeats: int = 4,
    rng: np.random.Generator | int | None = None,
    chunk: int = 128,
) -> float:
    """Approximate sliced Wasserstein-1 distance between point sets ``a`` and ``b`` ``(M, D)``
    (same M; arrays or tensors): for ``num_projections`` random unit directions, project,
    sort, take the mean absolute difference; average over ``num_repeats`` draws of directions.
    ``rng`` is a numpy Generator or a seed."""
    a = np.ascontiguousarray(a.numpy() if isinstance(a, Tensor) else a, dtype=np.float32)
    b = np.ascontiguousarray(b.numpy() if isinstance(b, Tensor) else b, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(f"point sets must be (M, D) of one shape: {a.shape} vs {b.shape}")
    rng = np.random.default_rng(rng)
    total = 0.0
    for _ in range(num_repeats):
        acc = 0.0
        for start in range(0, num_projections, chunk):
            dirs = rng.standard_normal((min(chunk, num_projections - start), a.shape[1]))
            dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
            # (p, M): one row per direction, sorted along the contiguous axis.
            pa = np.sort(dirs @ a.T, axis=1)
            pb = np.sort(dirs @ b.T, axis=1)
            acc += float(np.abs(pa - pb).sum(dtype=np.float64)) / a.shape[0]
        total += acc / num_projections
    return total / num_repeats


def swd(
    images1: Any,
    images2: Any,
    num_projections: int = 512,
    num_repeats: int = 4,
    nhoods_per_image: int = 128,
    nhood_size: int = 7,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[int | str, float]:
    """Multi-scale SWD between image sets ``(N1, C, H, W)`` and ``(N2, C, H, W)`` (float in
    [0, 1] or uint8; tensors or numpy arrays; equal size, both sides >= 16).

    Returns ``{level_height: swd * 1e3, ..., "avg": mean over levels}``, finest level first
    (64x64 images give keys 64, 32, 16, "avg"). Neighbourhood positions are drawn once per
    level and image index and shared by the two sets, so identical sets give exactly 0; if N1
    and N2 differ, the larger set's descriptors are subsampled (seeded) to the smaller count.
    ``batch_size`` images are decomposed at a time to bound memory.
    """
    a = _as_images(images1, "images1")
    b = _as_images(images2, "images2")
    if a.shape[1:] != b.shape[1:]:
        (c1, h1, w1), (c2, h2, w2) = a.shape[1:], b.shape[1:]
        raise InputError(
            f"image sets differ in size: images1 are {c1}x{h1}x{w1}, images2 are {c2}x{h2}x{w2}"
        )
    num_projections = positive_int(num_projections, "num_projections")
    num_repeats = positive_int(num_repeats, "num_repeats")
    nhoods = positive_int(nhoods_per_image, "nhoods_per_image")
    patch = positive_int(nhood_size, "nhood_size")
    batch_size = positive_int(batch_size, "batch_size")
    if patch > MIN_RESOLUTION:
        raise InputError(f"nhood_size must be <= {MIN_RESOLUTION}, got {patch}")

    rng = np.random.default_rng(seed)
    n_max = max(a.shape[0], b.shape[0])
    h, w = a.shape[-2:]
    ys, xs, heights = [], [], []
    for _ in range(_num_levels(h, w)):
        ys.append(torch.from_numpy(rng.integers(0, h - patch + 1, (n_max, nhoods))))
        xs.append(torch.from_numpy(rng.integers(0, w - patch + 1, (n_max, nhoods))))
        heights.append(h)
        h, w = (h + 1) // 2, (w + 1) // 2

    desc_a = _descriptors(a, ys, xs, patch, batch_size)
    desc_b = _descriptors(b, ys, xs, patch, batch_size)
    result: dict[int | str, float] = {}
    for height, da, db in zip(heights, desc_a, desc_b):
        m = min(da.shape[0], db.shape[0])
        if da.shape[0] > m:
            da = da[torch.from_numpy(rng.permutation(da.shape[0])[:m])]
        if db.shape[0] > m:
            db = db[torch.from_numpy(rng.permutation(db.shape[0])[:m])]
        value = sliced_wasserstein(
            _normalise(da), _normalise(db), num_projections, num_repeats, rng=rng
        )
        result[height] = value * 1e3
    result["avg"] = float(np.mean([result[hh] for hh in heights]))
    return result
