"""Differentiable augmentation for data-efficient GAN training (DiffAugment, Zhao et al. 2020).

The same random, differentiable transformations are applied to every image the discriminator
sees, real and generated, in both the D and the G phase, so D cannot tell the two apart by the
augmentation and G still receives gradients through it. Images are ``(N, C, H, W)`` in
``[-1, 1]``; every random parameter is drawn independently per sample.

Policies (applied in the order given in the policy string):

``color``
    brightness: add ``U(-0.5, 0.5)``; saturation: scale each pixel's deviation from its mean over
    the channels by ``U(0, 2)`` (a no-op for one channel, skipped there); contrast: scale the
    deviation from the image's mean over channels and pixels by ``U(0.5, 1.5)``.
``translation``
    shift by whole pixels, independently in y and x, by an integer drawn uniformly from
    ``[-r, r]`` with ``r = round(size / 8)``; pixels shifted in are 0.
``cutout``
    set a ``round(H/2) x round(W/2)`` rectangle to 0. Unlike the paper's reference code, the
    rectangle always lies wholly inside the image (its top-left corner is uniform over the valid
    positions), so exactly that many pixels are cut in every image.

Zero, used for translation padding and cutout, is mid-grey in the ``[-1, 1]`` convention.
Colour changes are not clamped (as in the paper), so augmented images may leave ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError

__all__ = ["DIFFAUGMENT_POLICIES", "DiffAugment"]

DIFFAUGMENT_POLICIES: tuple[str, ...] = ("color", "translation", "cutout")


def _parse_policy(policy: str) -> tuple[str, ...]:
    if not isinstance(policy, str):
        raise InputError(f"DiffAugment policy must be a string, got {type(policy).__name__}")
    ops = tuple(p.strip() for p in policy.split(",") if p.strip())
    for op in ops:
        if op not in DIFFAUGMENT_POLICIES:
            raise InputError(
                f"unknown DiffAugment policy {op!r}; choose from {', '.join(DIFFAUGMENT_POLICIES)}"
            )
    return ops


class DiffAugment(nn.Module):
    """DiffAugment as a module (no parameters; it augments in train and eval mode alike).

    Args:
        policy: comma-separated operations from ``color``, ``translation``, ``cutout``; an empty
            string gives the identity.
        generator: a ``torch.Generator`` for reproducible augmentation; the random numbers are
            drawn on its device and moved to the input's device. ``None`` uses the global RNG
            of the input's device. Two modules whose generators carry the same seed produce the
            same augmentations call by call.
        translation_ratio, cutout_ratio: the paper's 1/8 and 1/2.
    """

    def __init__(
        self,
        policy: str = "color,translation,cutout",
        generator: torch.Generator | None = None,
        *,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.ops = _parse_policy(policy)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError("generator must be a torch.Generator or None")
        if not 0.0 <= translation_ratio <= 0.5:
            raise InputError(f"translation_ratio must lie in [0, 0.5], got {translation_ratio}")
        if not 0.0 <= cutout_ratio <= 1.0:
            raise InputError(f"cutout_ratio must lie in [0, 1], got {cutout_ratio}")
        self.generator = generator
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    @property
    def policy(self) -> str:
        return ",".join(self.ops)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

    # -- random numbers --------------------------------------------------------------------

    def _draw_device(self, x: Tensor) -> torch.device:
        return self.generator.device if self.generator is not None else x.device

    def _uniform(self, x: Tensor) -> Tensor:
        """``U(0, 1)`` of shape ``(N, 1, 1, 1)`` in ``x``'s dtype and device."""
        u = torch.rand(x.shape[0], 1, 1, 1, generator=self.generator, device=self._draw_device(x))
        return u.to(device=x.device, dtype=x.dtype)

    def _randint(self, low: int, high: int, x: Tensor) -> Tensor:
        """Integers in ``[low, high)``, shape ``(N,)``, on ``x``'s device."""
        r = torch.randint(low, high, (x.shape[0],), generator=self.generator,
                          device=self._draw_device(x))
        return r.to(x.device)

    # -- operations ------------------------------------------------------------------------

    def color(self, x: Tensor) -> Tensor:
        x = x + (self._uniform(x) - 0.5)
        if x.shape[1] > 1:
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (self._uniform(x) * 2.0) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (self._uniform(x) + 0.5) + mean

    def translation(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        ry = int(h * self.translation_ratio + 0.5)
        rx = int(w * self.translation_ratio + 0.5)
        if ry == 0 and rx == 0:
            return x
        ty = self._randint(-ry, ry + 1, x)
        tx = self._randint(-rx, rx + 1, x)
        padded = F.pad(x, (rx, rx, ry, ry))
        # out[i, j] = x[i - ty, j - tx]: a pixel moves by (+ty, +tx); outside rows read padding.
        rows = torch.arange(h, device=x.device)[None, :] + ry - ty[:, None]  # (N, H)
        cols = torch.arange(w, device=x.device)[None, :] + rx - tx[:, None]  # (N, W)
        out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
        return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))

    def cutout(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        ch = int(h * self.cutout_ratio + 0.5)
        cw = int(w * self.cutout_ratio + 0.5)
        if ch == 0 or cw == 0:
            return x
        top = self._randint(0, h - ch + 1, x)
        left = self._randint(0, w - cw + 1, x)
        ys = torch.arange(h, device=x.device)[None, :]
        xs = torch.arange(w, device=x.device)[None, :]
        in_rows = (ys >= top[:, None]) & (ys < top[:, None] + ch)  # (N, H)
        in_cols = (xs >= left[:, None]) & (xs < left[:, None] + cw)  # (N, W)
        cut = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
        return x * (~cut)[:, None].to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or not x.dtype.is_floating_point:
            raise InputError(
                f"DiffAugment expects a float (N, C, H, W) batch, got {x.dtype} {tuple(x.shape)}"
            )
        for op in self.ops:
            x = getattr(self, op)(x)
        return x
